"""ONNX export of the fine-tuned model: encode speed and retrieval quality beside the PyTorch model.

Exports models/finetuned to models/finetuned-onnx (fp32 and int8), then encodes the prepared corpus and the
test queries with PyTorch fp32, PyTorch bf16 autocast, ONNX fp32 and ONNX int8, and prints encode seconds,
ndcg@10 / recall@10 and the mean cosine to the PyTorch fp32 vectors. Run after `dvc repro`:

    python benchmarks/onnx_int8.py [--output reports/benchmarks/onnx.json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import time
from pathlib import Path

import numpy as np

from embedtune.data.beir import read_corpus, read_qrels, read_queries
from embedtune.embed.encoder import encode
from embedtune.embed.onnx import OnnxEncoder, export_onnx
from embedtune.evaluation.metrics import per_query_metrics, summarize
from embedtune.evaluation.retrieval import search
from embedtune.models import load_model
from embedtune.runtime import offline_environment


def runtime(encoder: str) -> str:
    """The library and version that ran an encoder, so that runs on different versions are not compared blindly."""
    package = "onnxruntime" if encoder.startswith("onnx") else "torch"
    return f"{package} {importlib.metadata.version(package)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/finetuned"))
    parser.add_argument("--export", type=Path, default=Path("models/finetuned-onnx"))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    offline_environment()
    export_onnx(args.model, args.export)
    corpus = read_corpus(Path("data/prepared/corpus.jsonl"))
    queries = read_queries(Path("data/prepared/queries.jsonl"))
    qrels = read_qrels(Path("data/split/test.tsv"), corpus, queries)
    qids, ids = sorted(qrels), list(corpus)
    texts, qtexts = [d.full_text for d in corpus.values()], [queries[q].text for q in qids]
    model = load_model(args.model)
    encoders = {  # each takes (texts, role): queries and documents get the model's prompts, if it has any
        "pytorch fp32": lambda t, role: encode(model, t, role=role, precision="fp32", show_progress=False),
        "pytorch bf16": lambda t, role: encode(model, t, role=role, precision="bf16", show_progress=False),
        "onnx fp32": lambda t, role: OnnxEncoder(args.export, quantized=False).encode(t, role=role),
        "onnx int8": lambda t, role: OnnxEncoder(args.export, quantized=True).encode(t, role=role),
    }
    rows, reference = [], None
    for name, fn in encoders.items():
        started = time.perf_counter()
        vectors = fn(texts, "document")
        seconds = time.perf_counter() - started
        summary = summarize(per_query_metrics(qrels, search(qids, fn(qtexts, "query"), ids, vectors, top_k=100)))
        reference = vectors if reference is None else reference
        rows.append({"encoder": name, "encode_s": round(seconds, 1), "ndcg@10": summary["ndcg@10"],
                     "recall@10": summary["recall@10"],
                     "cosine_to_fp32": round(float(np.mean(np.sum(vectors * reference, axis=1))), 5),
                     "library": runtime(name)})
        print(json.dumps(rows[-1]), flush=True)
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
