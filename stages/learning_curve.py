"""learning curve (its own pipeline, learning_curve/dvc.yaml): the default recipe on shares of the training pairs.

``point``: train the model the train stage would train (params.yaml's ``train`` group, a soup included) on a
nested random share of the training queries' mined examples, encode the corpus with it as the embed stage does,
and score the test split; only the scores are kept (per query, for the spread). ``report``: the curve from every
point, the base model (zero pairs) and the pipeline's own model (every pair), as JSON and a plot.
"""

import argparse
import json
import tempfile
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import iter_jsonl, read_corpus, read_qrels, read_queries
from embedtune.embed.corpus import embed_corpus
from embedtune.evaluation.metrics import summarize
from embedtune.evaluation.reports import read_per_query
from embedtune.evaluation.retrieval import evaluate_model
from embedtune.io import write_json_atomic
from embedtune.learning_curve import METRIC, plot_curve, subsample, summarize_curve
from embedtune.mining import records_to_examples
from embedtune.models import load_model
from embedtune.runtime import log, run_stage
from embedtune.train.checkpoints import checkpoint_root
from embedtune.train.config import TrainConfig
from embedtune.train.soup import train_soup
from embedtune.train.trainer import build_training_dataset

SCRATCH = Path("data/learning_curve")  # outside git and every output: a point's model and checkpoints


def point(args: argparse.Namespace) -> None:
    params = load_params()
    examples = records_to_examples([r for _, r in iter_jsonl(args.mined)])
    chosen = subsample(examples, args.fraction, draw=args.draw, seed=get(params, "seed"))
    corpus, queries = read_corpus(args.prepared / "corpus.jsonl"), read_queries(args.prepared / "queries.jsonl")
    dataset = build_training_dataset(chosen, corpus, queries)
    # another draw trains with another seed too: the spread of a point is that of a new set of labels and a new run
    config = TrainConfig.from_params(get(params, "train"), seed=get(params, "seed") + args.draw)
    log.info("learning curve: %s of the training queries (draw %d): %d of %d pairs", args.fraction, args.draw,
             len(chosen), len(examples))
    # the model is scratch (only its scores are kept); its checkpoints resume a stopped point
    SCRATCH.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{args.output.stem}.", dir=SCRATCH) as scratch:
        model_dir = Path(scratch) / "model"
        stats = train_soup(get(params, "model.base"), dataset, config, model_dir, Path(scratch) / "live",
                           checkpoints=checkpoint_root(SCRATCH / args.output.stem),
                           max_seq_length=get(params, "model.max_seq_length"))
        model = load_model(str(model_dir), max_seq_length=get(params, "model.max_seq_length"))
        encoded = embed_corpus(model, corpus, get(params, "encode"))
        qrels = read_qrels(args.test_qrels, encoded.ids, queries)
        per_query, _ = evaluate_model(model, {q: v.text for q, v in queries.items()}, qrels, encoded.ids,
                                      encoded.vectors, top_k=get(params, "evaluate.top_k"),
                                      batch_size=get(params, "encode.batch_size"), precision=encoded.precision,
                                      views=encoded.views)
    result = {"fraction": args.fraction, "draw": args.draw, "pairs": len(chosen),
              "queries": len({e.query_id for e in chosen}), **summarize(per_query), "budget": stats["budget"],
              "per_query": {q: round(m[METRIC], 5) for q, m in sorted(per_query.items())}}
    write_json_atomic(args.output, result)
    log.info("learning curve point: %d pairs -> %s %.4f", len(chosen), METRIC, result[METRIC])


def report(args: argparse.Namespace) -> None:
    params = load_params()
    points = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(args.points.glob("*.json"))]
    base = {q: m[METRIC] for q, m in read_per_query(args.baseline_per_query).items()}
    full = {"fraction": 1.0, "draw": 0, "pairs": sum(1 for _ in iter_jsonl(args.mined)),
            "per_query": {q: m[METRIC] for q, m in read_per_query(args.finetuned_per_query).items()}}
    curve = summarize_curve(points, base=base, full=full)
    curve["dataset"] = get(params, "data.name")
    write_json_atomic(args.output, curve)
    plot_curve(args.plot, curve, title=f"{get(params, 'data.name')}: {get(params, 'model.name')} fine-tuned on a "
                                       "share of the training pairs")
    for row in curve["rows"]:
        log.info("%6d pairs: %s %.4f (draws %.4f-%.4f; 95%% CI %.4f-%.4f)", row["pairs"], METRIC, row[METRIC],
                 row["min"], row["max"], *row["ci95"])
    log.info("gain per doubling of pairs: %s", curve["gain_per_doubling"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("point", help="train and score one share of the training pairs")
    one.add_argument("--fraction", type=float, required=True)
    one.add_argument("--draw", type=int, required=True)
    one.add_argument("--mined", type=Path, required=True, help="train.jsonl from the mine stage")
    one.add_argument("--prepared", type=Path, required=True, help="prepared dataset directory")
    one.add_argument("--test-qrels", type=Path, required=True)
    one.add_argument("--output", type=Path, required=True, help="the point's scores (JSON)")
    whole = commands.add_parser("report", help="the curve from every point")
    whole.add_argument("--points", type=Path, required=True, help="directory of the points' JSON files")
    whole.add_argument("--mined", type=Path, required=True, help="train.jsonl: every training pair")
    whole.add_argument("--baseline-per-query", type=Path, required=True)
    whole.add_argument("--finetuned-per-query", type=Path, required=True)
    whole.add_argument("--output", type=Path, required=True)
    whole.add_argument("--plot", type=Path, required=True)
    args = parser.parse_args()
    {"point": point, "report": report}[args.command](args)


if __name__ == "__main__":
    run_stage(main)
