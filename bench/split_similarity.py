"""How alike are the dev and test claims to the training claims? A check on the split, not on any model's scores.

When dev and test disagree about a setting, one suspect is a dev split that is easier to memorise than the test
(claims closer to a training claim, or sharing its relevant abstract). This prints, for the dev and the test
split of the current workspace: each claim's base-model cosine to its nearest training claim (mean, median,
share above 0.7 / 0.8 / 0.9) and the share of claims with a relevant abstract that a training claim also has.

    python bench/split_similarity.py            # in a workspace after a dev run (split.dev_fraction > 0)
"""

import argparse
import os
from pathlib import Path

import numpy as np

from embedtune.data import read_qrels, read_queries
from embedtune.embeddings import encode
from embedtune.models import load_model
from embedtune.stage import get, load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", type=Path, default=Path("data/split"))
    parser.add_argument("--queries", type=Path, default=Path("data/prepared/queries.jsonl"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    params = load_params()
    queries = read_queries(args.queries)
    model = load_model(get(params, "model.base"), max_seq_length=get(params, "model.max_seq_length"))

    def relevant(name: str) -> dict[str, set[str]]:
        qrels = read_qrels(args.split / f"{name}.tsv", query_ids=queries)
        return {q: {d for d, grade in docs.items() if grade > 0} for q, docs in qrels.items()}

    def vectors(ids: list[str]) -> np.ndarray:
        return encode(model, [queries[q].text for q in ids], show_progress=False)

    train = relevant("train")
    train_vectors, train_docs = vectors(list(train)), set().union(*train.values())
    for name in ("dev", "test"):
        claims = relevant(name) if (args.split / f"{name}.tsv").exists() else {}
        if not claims:
            print(f"{name}: no claims (a dev split needs split.dev_fraction > 0)")
            continue
        nearest = (vectors(list(claims)) @ train_vectors.T).max(axis=1)
        shared = np.mean([bool(docs & train_docs) for docs in claims.values()])
        above = "  ".join(f">{t}: {np.mean(nearest > t):.3f}" for t in (0.7, 0.8, 0.9))
        print(f"{name}: {len(claims)} claims; cosine to the nearest training claim mean {nearest.mean():.3f} "
              f"median {np.median(nearest):.3f}  {above}; share with a training claim's relevant abstract {shared:.3f}")


if __name__ == "__main__":
    main()
