"""Benchmark the whole pipeline on this machine: a full `dvc repro` from a clean state, then a no-op one.

Copies the repository (tracked files, no outputs) into a temporary directory beside `../shared`, runs the
pipeline there with the committed params (or Hydra overrides given with -S), and prints per stage: wall time,
and for the corpus encode its ratio to this machine's arithmetic floor, measured in the same run (the
matrix-multiply peak of the model's largest layer shape, fp32 and bf16). Writes
`reports/benchmarks/pipeline.json`. Usage:

    python benchmarks/pipeline.py [-S encode.precision=bf16 ...] [--output reports/benchmarks/pipeline.json]
    python benchmarks/pipeline.py --in-place   # `dvc repro --force` in this checkout: updates dvc.lock, metrics/

Floor: all-MiniLM-L6-v2 costs about 21 MFLOP per token forward (about 3x that for a training step).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOP_PER_TOKEN = 21e6
FRESH = ("data/", "metrics/", "reports/", "models/", "dvc.lock", ".pgdata")


def _copy_repo(top: Path) -> Path:
    (top / "shared").symlink_to(REPO.parent / "shared")
    root = top / "main"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, files):
        if name.startswith(FRESH):
            continue
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    return root


def matmul_peak() -> dict[str, float]:
    """This machine's matrix-multiply throughput (FLOP/s) in fp32 and bf16, on the shape of the model's
    feed-forward layer (16,384 tokens x 384 -> 1,536)."""
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(16384, 384, dtype=dtype), torch.randn(384, 1536, dtype=dtype)
        for _ in range(3):
            a @ b
        started, n = time.perf_counter(), 20
        for _ in range(n):
            a @ b
        out[name] = 2 * 16384 * 384 * 1536 * n / (time.perf_counter() - started)
    return out


def count_tokens(model, texts: list[str], max_seq_length: int) -> int:
    """Tokens the model actually reads (special tokens included, truncated at ``max_seq_length``)."""
    encoded = model.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_seq_length)
    return sum(len(ids) for ids in encoded["input_ids"])


def _cpu() -> dict[str, object]:
    """The CPU the figures came from: the same code runs at different speeds on different kinds."""
    import platform

    info = {"model": platform.processor() or platform.machine(), "cores": os.cpu_count(), "bf16_matmul": None}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    names = re.findall(r"^model name\s*:\s*(.+)$", text, flags=re.MULTILINE)
    flags = set((re.findall(r"^flags\s*:\s*(.+)$", text, flags=re.MULTILINE) or [""])[0].split())
    info["model"] = names[0] if names else info["model"]
    info["bf16_matmul"] = "amx_bf16" if "amx_bf16" in flags else ("avx512_bf16" if "avx512_bf16" in flags else None)
    return info


def _stage_times(output: str) -> dict[str, float]:
    times, current = {}, None
    for line in output.splitlines():
        if m := re.search(r"Running stage '([^']+)'", line):
            current = m.group(1)
        elif (m := re.search(r"stage finished in ([\d.]+) s", line)) and current:
            times[current] = float(m.group(1))
    return times


def _corpus_tokens(root: Path, model_spec: str, max_len: int, tail_tokens: int) -> tuple[int, int]:
    """Tokens one corpus pass reads: the documents' own (truncated at ``max_len``) and their tail views'."""
    from embedtune.data.beir import read_corpus
    from embedtune.embed.views import tail_views
    from embedtune.models import load_model

    model = load_model(model_spec, max_seq_length=max_len)
    docs = list(read_corpus(root / "data/prepared/corpus.jsonl").values())
    _, views = tail_views([d.title for d in docs], [d.text for d in docs], model.tokenizer, max_seq_length=max_len,
                          tail_tokens=tail_tokens)
    return count_tokens(model, [d.full_text for d in docs], max_len), count_tokens(model, views, max_len)


def _train_step_vs_probe(train: dict) -> dict[str, float]:
    """A soup run's time per step in the training loop (``seconds_per_step``: runs side by side share the wall
    clock) against the step the train stage timed alone at the chosen precision with the same threads (the step its
    budget was planned on); empty where no step was timed."""
    probe_step = (train.get("step_plan") or {}).get("step_seconds")
    if not probe_step:
        return {}
    run_step = train["seconds_per_step"]
    return {"train_run_step_s": run_step, "train_probe_step_s": probe_step,
            "train_run_step_vs_probe": round(run_step / probe_step, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-S", dest="overrides", action="append", default=[], help="Hydra override (repeatable)")
    parser.add_argument("--output", type=Path, default=REPO / "reports" / "benchmarks" / "pipeline.json")
    parser.add_argument("--in-place", action="store_true",
                        help="run `dvc repro --force` (every stage recomputed) in this checkout instead of a copy")
    args = parser.parse_args()
    if args.in_place and args.overrides:
        parser.error("-S overrides need a copy; edit conf/ and run `python -m embedtune.config` instead")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}
    peak = matmul_peak()
    with contextlib.ExitStack() as stack:
        if args.in_place:
            root = REPO
        else:
            root = _copy_repo(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="embedtune-bench-"))))
            if args.overrides:
                subprocess.run([sys.executable, "-m", "embedtune.config", *args.overrides], cwd=root, env=env,
                               check=True)
            subprocess.run(["git", "init", "-q"], cwd=root, check=True)
            subprocess.run(["git", "add", "-A"], cwd=root, check=True)
            subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm",
                            "benchmark copy"], cwd=root, check=True)
        started = time.perf_counter()
        run = subprocess.run(["dvc", "repro", *(["--force"] if args.in_place else [])], cwd=root, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)  # one stream: keeps order
        repro_s = time.perf_counter() - started
        if run.returncode != 0:
            sys.exit(f"dvc repro failed:\n{run.stdout[-4000:]}")
        started = time.perf_counter()
        subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True, check=True)
        noop_s = time.perf_counter() - started

        import yaml

        params = yaml.safe_load((root / "params.yaml").read_text())
        stages = _stage_times(run.stdout)
        base_embed = json.loads((root / "metrics/timings/embed_base.json").read_text())
        train = json.loads((root / "metrics/timings/train.json").read_text())
        runs = params["train"]["soup"]  # side by side or one after another: train_seconds spans them all
        precision = base_embed["precision"]
        head_tokens, tail_tokens = _corpus_tokens(root, params["model"]["base"], params["model"]["max_seq_length"],
                                                  params["encode"]["tail_tokens"])
        tokens = head_tokens + tail_tokens
        encode_s = base_embed["encode_seconds"]
        floor_s = tokens * FLOP_PER_TOKEN / peak[precision]
        report = {
            "repro_s": round(repro_s, 1),
            "noop_repro_s": round(noop_s, 2),
            "encode_corpus_s": encode_s,
            "encode_tokens_per_s": round(tokens / encode_s, 1),
            "encode_floor_s": round(floor_s, 1),
            "encode_vs_floor": round(encode_s / floor_s, 2),
            "corpus_tokens": tokens,  # documents' own tokens + their tail views' (encode.tail_tokens)
            "tail_view_tokens": tail_tokens,
            "train_step_s": round(train["train_seconds"] / max(1, train["steps"] * runs), 2),  # the runs together
            **_train_step_vs_probe(train),
            "train_s": train["train_seconds"],
            "train_runs": runs,
            "train_processes": train["soup_processes"],
            "matmul_gflops": {k: round(v / 1e9, 1) for k, v in peak.items()},
            "cpu": _cpu(),
            "precision": {"encode": precision, "train": train.get("precision", {}).get("precision",
                                                                                   params["train"]["precision"])},
            "overrides": args.overrides,
            "stages": stages,
            "ndcg@10": json.loads((root / "metrics/finetuned.json").read_text())["ndcg@10"],
            "baseline_ndcg@10": json.loads((root / "metrics/baseline.json").read_text())["ndcg@10"],
        }
    print(f"{'stage':<18}{'seconds':>9}")
    for name, seconds in stages.items():
        print(f"{name:<18}{seconds:>9.1f}")
    print(f"full dvc repro {report['repro_s']:.0f} s; no-op repro {report['noop_repro_s']:.1f} s")
    print(f"corpus encode {encode_s:.1f} s = {report['encode_tokens_per_s']:,.0f} tokens/s; floor {floor_s:.0f} s "
          f"({precision}); {report['encode_vs_floor']:.2f}x the floor")
    if "train_run_step_vs_probe" in report:
        print(f"train: a run's step {report['train_run_step_s']:.2f} s against the same step timed alone "
              f"{report['train_probe_step_s']:.2f} s ({report['precision']['train']}): "
              f"{report['train_run_step_vs_probe']:.2f}x")
    print(f"train step {report['train_step_s']:.2f} s; ndcg@10 {report['baseline_ndcg@10']} -> {report['ndcg@10']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
