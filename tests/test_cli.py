"""The command line: user errors are one line and exit status 1; the database commands work on a fresh database."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from embedtune.cli import app
from embedtune.serving.db import SCHEMA_VERSION

runner = CliRunner()


@pytest.fixture
def database(empty_db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EMBEDTUNE_DATABASE_URL", empty_db_url)
    return empty_db_url


def test_reading_commands_on_a_database_without_an_index_say_what_to_run(database: str) -> None:
    for command in (["versions"], ["search", "vitamin D"], ["ab", "report", "default"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, (command, result.output)
        assert "holds no embedtune index yet: run `dvc repro`" in result.output
        assert "Traceback" not in result.output


def test_migrate_applies_the_schema_once_then_versions_lists_none(database: str) -> None:
    first = runner.invoke(app, ["migrate"])
    assert first.exit_code == 0 and f"embedtune schema at version {SCHEMA_VERSION}" in first.output
    assert runner.invoke(app, ["migrate"]).exit_code == 0  # a second run changes nothing
    result = runner.invoke(app, ["versions"])
    assert result.exit_code == 0 and "no index versions yet" in result.output
    result = runner.invoke(app, ["rollback"])
    assert result.exit_code == 1 and "nothing to roll back to" in result.output


def test_an_empty_query_and_a_bad_weight_are_refused_before_anything_loads(database: str) -> None:
    assert "the query is empty" in runner.invoke(app, ["search", "  "]).output
    result = runner.invoke(app, ["search", "vitamin D", "--lexical-weight", "-1"])
    assert result.exit_code == 1 and "lexical weight" in result.output


def test_promote_refuses_an_empty_name_and_an_ambiguous_prefix_listing_the_candidates(database: str) -> None:
    """Two models whose fingerprints begin alike: `promote ""` used to promote the newest, and a shared prefix
    picked one silently. Both are one-line errors naming the versions; an unambiguous prefix still works."""
    import numpy as np

    from embedtune.serving.db import connect
    from embedtune.serving.versions import load_version

    vectors = np.eye(4, dtype=np.float32)
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    with connect(database) as conn:
        loaded = {fp: load_version(conn, fingerprint=fp, model_path=f"/models/{fp}", ids=list("abcd"), vectors=vectors,
                                   titles=list("abcd"), texts=list("abcd")).version for fp in ("abc111", "abc222")}
    for name, wanted in (("", "no version named: give one of"), ("abc", "begins the fingerprints of 2 models")):
        result = runner.invoke(app, ["promote", name])
        assert result.exit_code == 1 and wanted in result.output and "Traceback" not in result.output, result.output
        assert all(version in result.output for version in loaded.values())
    result = runner.invoke(app, ["promote", "abc2"])
    assert result.exit_code == 0, result.output
    assert "*" in next(line for line in runner.invoke(app, ["versions"]).output.splitlines()
                       if loaded["abc222"] in line)


@pytest.mark.parametrize(("url", "secrets"), [
    ("host=127.0.0.1 port=1 user=u password=hunter2", ["hunter2"]),
    ("host=127.0.0.1 port=1 user=u password='hunter 2'", ["hunter 2", "hunter"]),
    ("postgresql://u:hunter2@127.0.0.1:1/db", ["hunter2"]),
    ("postgresql://u@127.0.0.1:1/db?password=hunter2&connect_timeout=2", ["hunter2"]),
    ("postgresql://u:hun@ter2@127.0.0.1:1/db", ["hun@", "ter2"]),  # libpq splits at the first "@"
    ("postgresql://u:hunter%402@127.0.0.1:1/db", ["hunter", "%40"]),
])
def test_a_database_password_never_reaches_a_message(monkeypatch: pytest.MonkeyPatch, url: str, secrets) -> None:
    """A database that cannot be reached is one line naming it, with its password shown as ***, in every DSN form."""
    monkeypatch.setenv("EMBEDTUNE_DATABASE_URL", url)
    result = runner.invoke(app, ["versions"])
    assert result.exit_code == 1 and "cannot connect to PostgreSQL" in result.output
    assert "***" in result.output and "Traceback" not in result.output
    for secret in secrets:
        assert secret not in result.output, result.output


def test_the_embedded_server_stops_after_a_killed_command(tmp_path) -> None:
    """kill -9 of a command that started the embedded PostgreSQL left its pid among the server's holders, so the
    server never stopped; the next command prunes it and, as the last live holder, stops the server on exit."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if k != "EMBEDTUNE_DATABASE_URL"}
    env["PYTHONPATH"] = str(REPO / "src")
    killed = ("import os, signal; from embedtune.serving.db import database_url; database_url(); "
              "os.kill(os.getpid(), signal.SIGKILL)")
    first = subprocess.run([sys.executable, "-c", killed], cwd=tmp_path, env=env, timeout=120, check=False)
    assert first.returncode == -signal.SIGKILL
    assert (tmp_path / ".pgdata" / "postmaster.pid").exists()  # the server runs on, held by a dead process
    cli = [sys.executable, "-c", "from embedtune.cli import app; app()", "migrate"]
    result = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / ".pgdata" / "postmaster.pid").exists(), "the embedded server still runs"


SLOW_COMMAND = """
import sys, time
import typer
from embedtune.cli import command
from embedtune.serving.db import database_url
app = typer.Typer()
@command(app, "wait")
def wait() -> None:
    database_url()
    print("started", flush=True)
    time.sleep(60)
@command(app, "other")
def other() -> None:
    pass
app()
"""


def test_a_command_stopped_with_sigterm_stops_the_embedded_server(tmp_path) -> None:
    """`timeout 30 embedtune ...` sends SIGTERM: the command exits with 143 through its exit handlers, so the
    embedded PostgreSQL it started stops instead of running on."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if k != "EMBEDTUNE_DATABASE_URL"}
    env["PYTHONPATH"] = str(REPO / "src")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_COMMAND, "wait"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    assert (tmp_path / ".pgdata" / "postmaster.pid").exists()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert not (tmp_path / ".pgdata" / "postmaster.pid").exists(), "the embedded server still runs"
