"""On the GPU machine: dev-split experiments without DVC, several at a time, until a deadline.

Each experiment gets its own directory (params.yaml with its overrides; data/prepared and the base model's
corpus embeddings linked from the checkout) and runs dvc.yaml's own commands for split -> synthesize -> mine ->
train -> embed_finetuned -> evaluate_dev (``SCREEN_STAGES`` names fewer). One TSV line per experiment goes to $OUT/screen.tsv.

    python bench/gpu/screen.py DEADLINE_EPOCH_S JOBS BASE_EMBEDDINGS NAME:key=value,key=value ...
"""

import concurrent.futures as cf
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path.cwd()
STAGES = tuple(os.environ.get("SCREEN_STAGES", "split,synthesize,mine,train,embed_finetuned,evaluate_dev").split(","))
COMMANDS = {name: yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][name]["cmd"] for name in STAGES}


def set_key(params: dict, dotted: str, value: str) -> None:
    *parents, last = dotted.split(".")
    node = params
    for name in parents:
        node = node[name]
    node[last] = yaml.safe_load(value)


def run(spec: str, deadline: float, base_embeddings: Path) -> str:
    name, _, overrides = spec.partition(":")
    if time.time() > deadline:
        return f"{name}\tskipped (deadline)"
    work = ROOT / "exp" / name
    (work / "data" / "embeddings").mkdir(parents=True, exist_ok=True)
    (work / "data" / "prepared").symlink_to(ROOT / "data" / "prepared")
    (work / "data" / "embeddings" / "base").symlink_to(base_embeddings)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for assignment in filter(None, overrides.split(",")):
        key, _, value = assignment.partition("=")
        set_key(params, key, value)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    times = {}
    with open(work / "log.txt", "w") as log:
        for stage in STAGES:
            _python, script, *args = shlex.split(COMMANDS[stage])
            started = time.time()
            rc = subprocess.call([sys.executable, str(ROOT / script), *args], cwd=work, stdout=log,
                                 stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="2"))
            times[stage] = round(time.time() - started, 1)
            if rc:
                return f"{name}\tFAILED at {stage} rc={rc}\t{json.dumps(times)}\n{(work / 'log.txt').read_text()[-1500:]}"
    train = json.loads((work / "metrics" / "train" / "metrics.json").read_text())
    if "evaluate_dev" not in STAGES:  # scored afterwards (bench/gpu/tail_eval.py)
        return f"{name}\ttrained\t{json.dumps(times)}\ttrain {json.dumps(train.get('train', train))[:300]}"
    dev = json.loads((work / "metrics" / "dev.json").read_text())
    tuned = dev["finetuned"]
    return (f"{name}\t{tuned['ndcg@10']:.5f}\t{tuned['recall@10']:.5f}\t{tuned['mrr@10']:.5f}"
            f"\tbase {dev['base']['ndcg@10']:.5f}\tqueries {dev['queries']}\t{json.dumps(times)}"
            f"\ttrain {json.dumps(train.get('train', train))[:300]}")


def main() -> None:
    deadline, jobs, base_embeddings = float(sys.argv[1]), int(sys.argv[2]), (ROOT / sys.argv[3]).resolve()
    out = Path(os.environ["OUT"]) / "screen.tsv"
    with cf.ThreadPoolExecutor(jobs) as pool, out.open("a") as table:
        futures = [pool.submit(run, spec, deadline, base_embeddings) for spec in sys.argv[4:]]
        for future in cf.as_completed(futures):
            line = future.result()
            print(line, flush=True)
            table.write(line + "\n")
            table.flush()


if __name__ == "__main__":
    main()
