"""The untouched defaults on every domain: one `dvc repro` per domain, its figures kept as JSON, one table.

    python benchmarks/domains.py run cosqa            # a clone of this commit in .domains/cosqa, dvc repro there
    python benchmarks/domains.py collect cosqa DIR    # DIR's metrics -> reports/research/cosqa.json
    python benchmarks/domains.py table                # the markdown table of reports/research/*.json

`run` clones the repository's HEAD (its committed code and params), points the data group at the domain
(`embedtune compose-params data=NAME`), runs the whole pipeline and collects. Nothing is chosen from these
figures: they are each domain's test split under the defaults, a check of what the defaults give. `docs/research.md`
shows the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "reports" / "research"
METRICS = ("baseline", "finetuned", "comparison", "hybrid", "reindex", "split", "data")


def collect(name: str, root: Path, seconds: float | None = None) -> dict:
    """The figures of a finished run in ``root`` (its ``metrics/``), with the commit and machine they came from."""
    metrics = {m: json.loads((root / "metrics" / f"{m}.json").read_text()) for m in METRICS
               if (root / "metrics" / f"{m}.json").is_file()}
    timings = root / "metrics" / "timings" / "train.json"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                            check=False).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").is_file() else "unknown"
    record = {"domain": name, "commit": commit, "cpu": cpu, "metrics": metrics,
              "train": json.loads(timings.read_text()) if timings.is_file() else None, "wall_s": seconds}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def run(name: str, workdir: Path) -> dict:
    """Clone HEAD into ``workdir/name`` (with ../shared beside it), compose the domain's params, `dvc repro`."""
    root = workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "shared").exists():
        (workdir / "shared").symlink_to(REPO.parent / "shared")
    if not root.exists():
        subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root / "src"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([sys.executable, "-m", "embedtune.config", f"data={name}"], cwd=root, env=env, check=True)
    started = time.perf_counter()
    subprocess.run(["dvc", "repro"], cwd=root, env=env, check=True)
    return collect(name, root, round(time.perf_counter() - started))


def _ndcg(figures: dict) -> float:
    return figures["ndcg@10"]


def table(records: list[dict]) -> str:
    """One row per domain: BM25, base, fine-tuned (delta, better/worse, p), both hybrids, the lexical weight
    served, and the gate's decision."""
    header = ("| domain | train queries / pairs, test queries | BM25 | base | fine-tuned (Δ, better/worse, p) | "
              "base + BM25 | fine-tuned + BM25 (weight) | gate | commit, CPU |")
    rows = [header, "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: r["domain"]):
        m = r["metrics"]
        split, comparison, hybrid = m["split"], m["comparison"], m["hybrid"]["test"]
        delta = comparison["metrics"]["ndcg@10"]["delta"]
        gate = "promoted" if m["reindex"]["promoted"] else "**not promoted**"
        rows.append(
            f"| {r['domain']} | {split['train_queries']:,} / {split['train_pairs']:,}, {split['test_queries']:,} | "
            f"{_ndcg(hybrid['bm25']):.4f} | {_ndcg(m['baseline']):.4f} | {_ndcg(m['finetuned']):.4f} "
            f"({delta:+.3f}, {comparison['wins']}/{comparison['losses']}, {comparison['paired_t_test_p']:.2g}) | "
            f"{_ndcg(hybrid['base+bm25']):.4f} | {_ndcg(hybrid['finetuned+bm25']):.4f} "
            f"({m['hybrid']['lexical_weight']}) | {gate} | {r['commit']}, {r['cpu']} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="clone, dvc repro on a domain, collect")
    run_parser.add_argument("domain")
    run_parser.add_argument("--workdir", type=Path, default=REPO / ".domains")
    collect_parser = commands.add_parser("collect", help="collect a finished run's metrics")
    collect_parser.add_argument("domain")
    collect_parser.add_argument("root", type=Path)
    commands.add_parser("table", help="print the table of reports/research/*.json")
    args = parser.parse_args()
    if args.command == "run":
        run(args.domain, args.workdir)
    elif args.command == "collect":
        collect(args.domain, args.root)
    if args.command in ("run", "collect", "table"):
        print(table([json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]))


if __name__ == "__main__":
    main()
