"""Score a "model soup": the element-wise mean of the weights of fine-tuned models that differ only in their
training seed (data order, dropout), against the first of them alone, on a dev run's dev queries.

Why: averaging the weights of runs fine-tuned from the same base model lands in a flatter region of the loss
and often ranks better than each run (Wortsman et al., 2022, "Model soups"); here it would cost one more training
run (~10 minutes on the reference CPU; the issue's budget is 30). The first model and the queries stay fixed, so
the figures are paired. Both are scored as the pipeline scores (a document's better of its own vector and its
tail view, in the dev run's precision).

Train the other models with the dev run's params and another seed, e.g. on a dev experiment's outputs (``dvc exp
apply NAME`` then ``dvc checkout``) with ``seed`` raised by 1000 in params.yaml, ``python stages/train.py
data/mined/train.jsonl data/prepared /tmp/soup/B /tmp/soup/B-live``; then (params.yaml restored):

    python bench/soup_probe.py --name dev-bs16-s23 --others /tmp/soup/B --output /tmp/soup.jsonl
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from view_probe import best_of_views, load_probe  # bench/ is on sys.path when this script runs

from embedtune.embeddings import encode, encode_corpus, resolve_processes, tail_views
from embedtune.models import load_model
from embedtune.training import average_weights


def main() -> None:
    probe = load_probe(__doc__, extra=lambda parser: parser.add_argument(
        "--others", type=Path, nargs="+", required=True, help="fine-tuned models to average with --model"))
    corpus, ids, qids = probe.corpus, probe.ids, probe.qids
    titles, bodies = [corpus[d].title for d in ids], [corpus[d].text for d in ids]
    queries = [probe.queries[q].text for q in qids]

    def maxp(model, heads: np.ndarray | None = None) -> np.ndarray:
        """(queries x documents) better of each document's own vector and its tail view, as the pipeline scores."""
        processes = resolve_processes("auto", str(model.device), len(ids), 64)
        if heads is None:
            heads = encode_corpus(model, [corpus[d].full_text for d in ids], precision=probe.precision,
                                  processes=processes)
        owners, texts = tail_views(titles, bodies, model.tokenizer, max_seq_length=probe.max_seq_length,
                                   tail_tokens=probe.args.tail_tokens)
        tails = encode_corpus(model, texts, precision=probe.precision, processes=processes)
        query_vectors = encode(model, queries, precision=probe.precision, show_progress=False)
        return np.maximum(query_vectors @ heads.T,
                          best_of_views(query_vectors, len(ids), np.array(owners, dtype=np.int64), tails))

    first = maxp(probe.model, probe.heads)
    soup = load_model(str(probe.args.model), max_seq_length=probe.max_seq_length)
    states = [probe.model.state_dict()] + [load_model(str(o), max_seq_length=probe.max_seq_length).state_dict()
                                           for o in probe.args.others]
    average_weights(soup, states)
    probe.report({"maxp": first, f"soup{len(states)}": maxp(soup)})


if __name__ == "__main__":
    main()
