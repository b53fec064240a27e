"""embed: encode the corpus once with a model; the vectors are a DVC output reused by later stages.

The output directory holds only what the vectors depend on (model, precision, length, views), so a rerun that
encodes the same vectors leaves its hash unchanged and nothing downstream reruns; how long it took and with how
many processes goes to the timings file instead."""

import argparse
import time
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import read_corpus
from embedtune.embed.encoder import choose_encode_precision, encode_corpus, resolve_processes
from embedtune.embed.store import save_embeddings
from embedtune.embed.views import encode_tail_views
from embedtune.io import atomic_directory, write_json_atomic
from embedtune.models import load_model
from embedtune.runtime import log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="model directory or package:<module>/<dir>; default: params model.base")
    parser.add_argument("corpus", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("timings", type=Path, help="timing of this pass (JSON; not part of the output's hash)")
    args = parser.parse_args()
    params = load_params()
    model_spec = args.model or get(params, "model.base")
    model = load_model(model_spec, max_seq_length=get(params, "model.max_seq_length"))
    corpus = read_corpus(args.corpus)
    texts = [d.full_text for d in corpus.values()]
    precision = choose_encode_precision(model, texts, get(params, "encode.precision"))
    batch_size = get(params, "encode.batch_size")
    processes = resolve_processes(get(params, "encode.processes"), str(model.device), len(texts), batch_size)

    def encode_texts(batch: list[str]):
        return encode_corpus(model, batch, batch_size=batch_size, precision=precision, processes=processes)

    started = time.perf_counter()
    vectors = encode_texts(texts)
    tail_tokens = get(params, "encode.tail_tokens")
    extra = encode_tail_views(model, [d.title for d in corpus.values()], [d.text for d in corpus.values()],
                              tail_tokens=tail_tokens, encode_texts=encode_texts)
    seconds = time.perf_counter() - started
    meta = {"model": str(model_spec), "precision": precision, "max_seq_length": model.max_seq_length}
    if tail_tokens:
        meta["tail_tokens"] = tail_tokens
    with atomic_directory(args.output) as staging:
        save_embeddings(staging, list(corpus), vectors, meta, extra)
    write_json_atomic(args.timings, {
        "documents": len(corpus), "tail_views": len(extra) if extra is not None else 0, "precision": precision,
        "processes": processes, "encode_seconds": round(seconds, 1),
        "documents_per_s": round(len(corpus) / max(seconds, 1e-9), 1)})
    log.info("encoded %d documents in %.1f s (%.1f docs/s, %d process%s)", len(corpus), seconds,
             len(corpus) / max(seconds, 1e-9), processes, "" if processes == 1 else "es")


if __name__ == "__main__":
    run_stage(main)
