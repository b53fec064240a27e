"""embed: encode the corpus once with a model; the vectors are a DVC output reused by later stages.

With ``--cache`` and ``encode.cache`` on, texts this model has encoded before (in any earlier run on this machine)
are read back from the vector cache, so a corpus that gained or changed a few documents encodes only those.

The output directory holds only what the vectors depend on (model, precision, length, views), so a rerun that
encodes the same vectors leaves its hash unchanged and nothing downstream reruns; how long it took and with how
many processes goes to the timings file instead."""

import argparse
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import read_corpus
from embedtune.embed.corpus import embed_corpus
from embedtune.embed.store import save_embeddings
from embedtune.io import atomic_directory, write_json_atomic
from embedtune.models import load_model, model_fingerprint, resolve_model_path
from embedtune.runtime import log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="model directory or package:<module>/<dir>; default: params model.base")
    parser.add_argument("corpus", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("timings", type=Path, help="timing of this pass (JSON; not part of the output's hash)")
    parser.add_argument("--cache", type=Path, help="vector caches (encode.cache): texts encoded before are read back")
    args = parser.parse_args()
    params = load_params()
    model_spec = args.model or get(params, "model.base")
    model = load_model(model_spec, max_seq_length=get(params, "model.max_seq_length"))
    corpus = read_corpus(args.corpus)
    encoded = embed_corpus(model, corpus, get(params, "encode"), cache=args.cache,
                           fingerprint=model_fingerprint(resolve_model_path(model_spec)))
    meta = {"model": str(model_spec), "precision": encoded.precision, "max_seq_length": model.max_seq_length}
    if get(params, "encode.tail_tokens"):
        meta["tail_tokens"] = get(params, "encode.tail_tokens")
    with atomic_directory(args.output) as staging:
        save_embeddings(staging, encoded.ids, encoded.vectors, meta, encoded.views)
    per_s = len(corpus) / max(encoded.seconds, 1e-9)
    write_json_atomic(args.timings, {
        "documents": len(corpus), "tail_views": len(encoded.views) if encoded.views is not None else 0,
        "precision": encoded.precision, "processes": encoded.processes, "encode_seconds": round(encoded.seconds, 1),
        "documents_per_s": round(per_s, 1), "texts_encoded": encoded.encoded, "texts_from_cache": encoded.cached})
    log.info("encoded %d documents in %.1f s (%.1f docs/s, %d process%s)", len(corpus), encoded.seconds, per_s,
             encoded.processes, "" if encoded.processes == 1 else "es")


if __name__ == "__main__":
    run_stage(main)
