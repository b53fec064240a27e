"""Where does corpus-encoding time go, and which knobs would buy speed without losing quality?

Three measurements, printed as they finish and written to ``--output`` as JSON:

1. ``peak``: this machine's matmul throughput (fp32 and bf16 GFLOP/s, the 384x1536 shape of the model's
   feed-forward layers) - the honest floor to compare the encode time with.
2. ``max_seq_length``: the base model encodes the whole corpus at each length; retrieval quality is scored on
   the dataset's *training* claims (the base model has not seen them, and the test claims must not steer a
   default). Shows what truncation costs in quality and what longer inputs cost in time.
3. ``kernels``: the same 1,000 documents encoded with SDPA or eager attention, with bf16 autocast or with
   the whole model cast to bf16, under ``torch.compile``, and with int8 weights (PyTorch dynamic quantization
   of every linear layer, per-channel, fp32 elsewhere); time of two passes and cosine to fp32.
4. ``batch_size``: the same documents encoded (bf16) at several batch sizes, interleaved rounds, median each.
   Small batches keep a layer's activations in the CPU cache; large ones give the matmuls bigger blocks.
5. ``truncation``: head+tail instead of head-only truncation at ``max_seq_length`` (opt in: ``--head-tokens``).
   A document longer than the budget keeps its first N tokens and fills the rest of the budget from its end,
   where an abstract states its conclusion; scored like ``max_seq_length``.

    python bench/encode_options.py [--lengths 128 192 256 384 512] [--batch-sizes 8 16 32 64 128]
                                   [--head-tokens 128 64] [--output metrics/encode_options.json]

Run on a quiet machine: anything else on the 2 cores changes the times.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from pathlib import Path

import numpy as np
import yaml

from embedtune.data import read_dataset
from embedtune.embeddings import encode
from embedtune.evaluation import evaluate_model, summarize
from embedtune.models import load_model
from embedtune.stage import offline_environment


def matmul_peak() -> dict[str, float]:
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(16384, 384, dtype=dtype), torch.randn(384, 1536, dtype=dtype)
        for _ in range(3):
            a @ b
        started, n = time.perf_counter(), 20
        for _ in range(n):
            a @ b
        out[f"{name}_gflops"] = round(2 * 16384 * 384 * 1536 * n / (time.perf_counter() - started) / 1e9, 1)
    return out


def sample_texts(dataset, documents: int) -> list[str]:
    """The same seeded random sample of the corpus for every comparison that uses one."""
    ids = sorted(dataset.corpus)
    random.Random(0).shuffle(ids)
    return [dataset.corpus[i].full_text for i in ids[:documents]]


def count_tokens(model, texts: list[str], max_seq_length: int) -> int:
    """Tokens the model actually reads (special tokens included, truncated at ``max_seq_length``)."""
    encoded = model.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_seq_length)
    return sum(len(ids) for ids in encoded["input_ids"])


def score_on_training_claims(model, dataset, ids: list[str], vectors) -> dict[str, float]:
    """The base model's retrieval quality on the dataset's training claims, for the given corpus vectors."""
    queries = {q: v.text for q, v in dataset.queries.items()}
    per_query, _ = evaluate_model(model, queries, dataset.qrels["train"], ids, vectors, precision="bf16")
    summary = summarize(per_query)
    return {k: round(summary[k], 4) for k in ("ndcg@10", "recall@10", "recall@100", "mrr@10")}


def length_sweep(base: str, dataset, lengths: list[int], batch_size: int) -> list[dict]:
    ids = sorted(dataset.corpus)
    texts = [dataset.corpus[i].full_text for i in ids]
    rows = []
    for length in lengths:
        model = load_model(base, max_seq_length=length)
        tokens = count_tokens(model, texts, length)
        started = time.perf_counter()
        vectors = encode(model, texts, batch_size=batch_size, precision="bf16", show_progress=False)
        seconds = time.perf_counter() - started
        row = {"max_seq_length": length, "tokens": tokens, "encode_s": round(seconds, 1),
               **score_on_training_claims(model, dataset, ids, vectors)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def head_and_tail(tokenizer, texts: list[str], budget: int, head: int) -> list[str]:
    """Each text longer than ``budget`` tokens cut to its first ``head`` and its last ``budget - head`` tokens.

    Cut on the original characters (the tokenizer's offsets), so the model sees the text's own words and the
    usual truncation at ``max_seq_length`` no longer applies to the result.
    """
    offsets = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    cut = []
    for text, spans in zip(texts, offsets):
        if len(spans) <= budget:
            cut.append(text)
            continue
        start = text[: spans[head - 1][1]] if head else ""
        cut.append(f"{start} {text[spans[len(spans) - (budget - head)][0]:]}".strip())
    return cut


def truncation_sweep(base: str, dataset, max_seq_length: int, heads: list[int], batch_size: int) -> list[dict]:
    """Head-only truncation (the library's) against head+tail cuts of the same token budget."""
    ids = sorted(dataset.corpus)
    texts = [dataset.corpus[i].full_text for i in ids]
    model = load_model(base, max_seq_length=max_seq_length)
    budget = max_seq_length - 2  # [CLS] and [SEP]
    rows = []
    for head in [budget, *heads]:
        variant = texts if head >= budget else head_and_tail(model.tokenizer, texts, budget, head)
        started = time.perf_counter()
        vectors = encode(model, variant, batch_size=batch_size, precision="bf16", show_progress=False)
        row = {"head_tokens": min(head, budget), "tail_tokens": max(budget - head, 0),
               "encode_s": round(time.perf_counter() - started, 1),
               **score_on_training_claims(model, dataset, ids, vectors)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def kernel_variants(base: str, dataset, max_seq_length: int, batch_size: int, documents: int) -> list[dict]:
    import torch

    texts = sample_texts(dataset, documents)
    model = load_model(base, max_seq_length=max_seq_length)
    reference = encode(model, texts, batch_size=batch_size, precision="fp32", show_progress=False)

    def variant(attention: str, weights: str, compiled: bool):
        m = copy.deepcopy(model)
        if attention != "sdpa":
            m[0].auto_model.set_attn_implementation(attention)
        if weights == "bf16":
            m = m.to(torch.bfloat16)
        if weights == "int8":  # quantized linears take fp32 inputs, so no autocast around them
            m[0].model = torch.ao.quantization.quantize_dynamic(
                m[0].model, {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8)
        if compiled:
            m[0].model = torch.compile(m[0].model, dynamic=True)  # auto_model is a read-only alias
        return m

    rows = []
    for attention, weights, compiled in (("sdpa", "fp32 + autocast", False), ("sdpa", "bf16", False),
                                         ("eager", "fp32 + autocast", False), ("eager", "bf16", False),
                                         ("sdpa", "fp32 + autocast", True), ("sdpa", "int8", False)):
        m = variant(attention, weights, compiled)
        passes, vectors = [], None
        for _ in range(2 + compiled):  # a compiled model's first pass includes compilation
            started = time.perf_counter()
            vectors = encode(m, texts, batch_size=batch_size, precision="fp32" if weights == "int8" else "bf16",
                             show_progress=False)
            passes.append(round(time.perf_counter() - started, 1))
        cosine = np.sum(vectors * reference, axis=1)
        row = {"attention": attention, "weights": weights, "compiled": compiled,
               "documents": len(texts), "passes_s": passes, "mean_cosine_to_fp32": round(float(cosine.mean()), 6),
               "min_cosine_to_fp32": round(float(cosine.min()), 5)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def batch_size_sweep(base: str, dataset, max_seq_length: int, batch_sizes: list[int], documents: int,
                     rounds: int = 4) -> list[dict]:
    """Rounds of one pass per batch size, order reversed every other round, median per size: this VM's speed
    drifts by 10-30% within minutes, which a sequential sweep would read as a batch-size effect."""
    texts = sample_texts(dataset, documents)
    model = load_model(base, max_seq_length=max_seq_length)
    tokens = count_tokens(model, texts, max_seq_length)
    encode(model, texts[:64], batch_size=64, precision="bf16", show_progress=False)  # warm-up
    passes: dict[int, list[float]] = {b: [] for b in batch_sizes}
    for r in range(rounds):
        for batch_size in batch_sizes if r % 2 == 0 else batch_sizes[::-1]:
            started = time.perf_counter()
            encode(model, texts, batch_size=batch_size, precision="bf16", show_progress=False)
            passes[batch_size].append(round(time.perf_counter() - started, 1))
    rows = []
    for batch_size, seconds in passes.items():
        median = float(np.median(seconds))
        row = {"batch_size": batch_size, "documents": len(texts), "passes_s": seconds, "median_s": median,
               "tokens_per_s": round(tokens / median)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", nargs="+", type=int, default=[128, 192, 256, 384, 512])
    parser.add_argument("--documents", type=int, default=1000, help="documents for the kernel and batch-size comparisons")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 16, 32, 64, 128])
    parser.add_argument("--head-tokens", nargs="*", type=int, default=[],
                        help="head+tail truncation: tokens kept from each long document's start (the rest of "
                             "the budget from its end); compared with head-only truncation")
    parser.add_argument("--skip", nargs="*", default=[], choices=["peak", "max_seq_length", "kernels", "batch_size"])
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    offline_environment()
    params = yaml.safe_load(Path("params.yaml").read_text())
    base, batch_size = params["model"]["base"], params["encode"]["batch_size"]
    dataset = read_dataset(Path(params["data"]["source"]))
    results: dict = {}
    if "peak" not in args.skip:
        results["peak"] = matmul_peak()
        print(json.dumps(results["peak"]), flush=True)
    if "max_seq_length" not in args.skip:
        results["max_seq_length"] = length_sweep(base, dataset, args.lengths, batch_size)
    if "kernels" not in args.skip:
        results["kernels"] = kernel_variants(base, dataset, params["model"]["max_seq_length"], batch_size,
                                             args.documents)
    if "batch_size" not in args.skip:
        results["batch_size"] = batch_size_sweep(base, dataset, params["model"]["max_seq_length"], args.batch_sizes,
                                                 args.documents)
    if args.head_tokens:
        results["truncation"] = truncation_sweep(base, dataset, params["model"]["max_seq_length"], args.head_tokens,
                                                 batch_size)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
