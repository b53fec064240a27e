"""On the GPU machine, after bench/gpu/screen.py trained the dev-split models: score each model's dev claims with
documents read as their head only and with tail views of several lengths (MaxP), one JSON line per model
(EXPERIMENT_DIR/tails.json).

    python bench/gpu/tail_eval.py TAIL_TOKENS(comma-separated) EXPERIMENT_DIR ...

The model and the dev claims are the same for every length, so the differences are paired."""

import functools
import json
import sys
from pathlib import Path

from embedtune.data import read_corpus, read_qrels, read_queries
from embedtune.embeddings import encode, encode_tail_views
from embedtune.evaluation import per_query_metrics, search, summarize
from embedtune.models import load_model
from embedtune.stage import get, load_params


def main() -> None:
    lengths = [int(x) for x in sys.argv[1].split(",")]
    root = Path.cwd()
    corpus = read_corpus(root / "data/prepared/corpus.jsonl")
    queries = read_queries(root / "data/prepared/queries.jsonl")
    ids = list(corpus)
    titles, bodies = [corpus[d].title for d in ids], [corpus[d].text for d in ids]
    for work in map(Path, sys.argv[2:]):
        params = load_params(work / "params.yaml")
        precision = get(params, "encode.precision")
        model = load_model(work / "models/finetuned", max_seq_length=get(params, "model.max_seq_length"))
        qrels = read_qrels(work / "data/split/dev.tsv", ids, queries)
        qids = sorted(qrels)
        qv = encode(model, [queries[q].text for q in qids], precision=precision, show_progress=False)
        heads = encode(model, [corpus[d].full_text for d in ids], precision=precision, show_progress=False)
        row = {"experiment": work.name, "queries": len(qids)}
        encode_texts = functools.partial(encode, model, precision=precision, show_progress=False)
        for length in lengths:
            views = encode_tail_views(model, titles, bodies, tail_tokens=length, encode_texts=encode_texts)
            per_query = per_query_metrics(qrels, search(qids, qv, ids, heads, top_k=100, views=views))
            row[str(length)] = summarize(per_query)
            row[f"{length}_per_query"] = {q: v["ndcg@10"] for q, v in per_query.items()}
        line = json.dumps(row)
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("_per_query")}), flush=True)
        (work / "tails.json").write_text(line + "\n")


if __name__ == "__main__":
    main()
