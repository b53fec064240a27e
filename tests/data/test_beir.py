"""Reading BEIR input: every kind of bad input gets a clear error naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedtune.data.beir import read_corpus, read_dataset, read_qrels, write_corpus
from embedtune.errors import InputError
from embedtune.io import atomic_directory
from tests.conftest import write_beir

GOOD_DOC = {"_id": "d1", "title": "t", "text": "some text"}
GOOD_QUERY = {"_id": "q1", "text": "a question"}


def _dataset(tmp_path: Path, corpus=None, queries=None, qrels=None) -> Path:
    return write_beir(
        tmp_path / "ds",
        corpus if corpus is not None else [GOOD_DOC],
        queries if queries is not None else [GOOD_QUERY],
        qrels if qrels is not None else {"train": [("q1", "d1", 1)]},
    )


def test_reads_a_valid_dataset(small_beir: Path) -> None:
    ds = read_dataset(small_beir)
    assert set(ds.corpus) == {"d1", "d2", "d3", "d4"}
    assert ds.qrels["test"] == {"q3": {"d3": 1}}
    assert ds.corpus["d1"].full_text.startswith("Aspirin Aspirin reduces")


@pytest.mark.parametrize(
    ("corpus", "line", "field", "fragment"),
    [
        ([GOOD_DOC, '{"_id": "d2", "text": "unterminated'], 2, None, "malformed JSON"),
        ([GOOD_DOC, {"title": "x", "text": "no id"}], 2, "_id", "missing"),
        ([GOOD_DOC, {"_id": "d2", "title": "x"}], 2, "text", "missing"),
        ([GOOD_DOC, {"_id": "d2", "text": 5}], 2, "text", "must be a string"),
        ([GOOD_DOC, GOOD_DOC], 2, "_id", "duplicate id 'd1' (first seen on line 1)"),
        ([GOOD_DOC, b'{"_id": "d2", "text": "caf\xe9"}'], 2, None, "not valid UTF-8"),
        ([GOOD_DOC, "[1, 2]"], 2, None, "expected a JSON object"),
    ],
)
def test_bad_corpus_lines(tmp_path: Path, corpus, line, field, fragment) -> None:
    root = _dataset(tmp_path, corpus=corpus)
    with pytest.raises(InputError) as info:
        read_dataset(root)
    err = info.value
    assert err.path.endswith("corpus.jsonl") and err.line == line and err.field == field
    assert fragment in str(err)
    assert str(err).startswith(f"{err.path}:{line}: ")


def test_malformed_json_names_the_column_on_its_own_line(tmp_path: Path) -> None:
    line = '{"_id": "d2", "title": "x", "text": "no closing brace"'
    root = _dataset(tmp_path, corpus=[GOOD_DOC, line])
    with pytest.raises(InputError, match=rf"corpus.jsonl:2: malformed JSON at column {len(line) + 1}: Expecting"):
        read_dataset(root)


def test_empty_query_text_is_an_error(tmp_path: Path) -> None:
    root = _dataset(tmp_path, queries=[GOOD_QUERY, {"_id": "q2", "text": "   "}])
    with pytest.raises(InputError, match=r"queries.jsonl:2: field 'text': is empty"):
        read_dataset(root)


def test_duplicate_query_ids(tmp_path: Path) -> None:
    root = _dataset(tmp_path, queries=[GOOD_QUERY, GOOD_QUERY])
    with pytest.raises(InputError, match=r"queries.jsonl:2: field '_id': duplicate id 'q1'"):
        read_dataset(root)


@pytest.mark.parametrize(
    ("rows", "field", "fragment"),
    [
        ([("q1", "d1", 1), ("q1", "nope", 1)], "corpus-id", "unknown document id 'nope'"),
        ([("q1", "d1", 1), ("qx", "d1", 1)], "query-id", "unknown query id 'qx'"),
        ([("q1", "d1", 1), ("q1", "d1", "high")], "score", "must be a relevance grade"),
    ],
)
def test_bad_qrels(tmp_path: Path, rows, field, fragment) -> None:
    root = _dataset(tmp_path, qrels={"train": rows})
    with pytest.raises(InputError) as info:
        read_dataset(root)
    assert info.value.path.endswith("train.tsv") and info.value.line == 3 and info.value.field == field
    assert fragment in str(info.value)


def test_qrels_with_wrong_column_count(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1 d1 1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"q.tsv:2: expected 3 tab-separated columns"):
        read_qrels(path)


def test_missing_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="missing corpus.jsonl"):
        read_dataset(tmp_path / "empty")
    root = _dataset(tmp_path)
    for f in (root / "qrels").iterdir():
        f.unlink()
    with pytest.raises(InputError, match="no relevance judgements"):
        read_dataset(root)


def test_integer_ids_and_bom_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_bytes('\ufeff{"_id": 7, "text": "x"}\n\n'.encode("utf-8"))
    assert list(read_corpus(path)) == ["7"]


def test_atomic_directory_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "half.txt").write_text("partial")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_replaces_previous_output(tmp_path: Path, small_beir: Path) -> None:
    target = tmp_path / "out"
    corpus = read_dataset(small_beir).corpus
    for _ in range(2):
        with atomic_directory(target) as staging:
            write_corpus(staging / "corpus.jsonl", corpus)
    assert read_corpus(target / "corpus.jsonl") == corpus


def test_atomic_directory_removes_what_a_killed_run_left_and_keeps_a_running_ones(tmp_path: Path) -> None:
    import os

    dead = tmp_path / ".out.4194305.k1ll3d"  # above Linux's largest pid: no such process
    alive = tmp_path / f".out.{os.getpid()}.runn1n"
    other = tmp_path / ".outer.4194305.abc"  # another output's staging: not ours to judge
    for directory in (dead, alive, other):
        directory.mkdir()
        (directory / "model.safetensors").write_bytes(b"weights")
    with atomic_directory(tmp_path / "out") as staging:
        assert staging.name.startswith(f".out.{os.getpid()}.")
        (staging / "done").write_text("yes")
    assert not dead.exists() and alive.exists() and other.exists()
    assert (tmp_path / "out" / "done").read_text() == "yes"


def test_a_stage_stopped_with_sigterm_keeps_nothing_half_built(tmp_path: Path) -> None:
    """`kill` (or a CI timeout) unwinds the stage: its staging directory goes, the old output stays, and the stage
    says so with exit status 143."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("complete")
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from embedtune.io import atomic_directory\n"
        "from embedtune.runtime import run_stage\n"
        "def main():\n"
        f"    with atomic_directory(Path({str(tmp_path / 'out')!r})) as staging:\n"
        "        (staging / 'half').write_text('partial')\n"
        "        print(staging, flush=True)\n"
        "        time.sleep(60)\n"
        "run_stage(main)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    staging = Path(proc.stdout.readline().strip())
    assert (staging / "half").exists()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "terminated (SIGTERM)" in stderr
    assert not staging.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / "old").read_text() == "complete"
