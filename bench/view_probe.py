"""Score one fine-tuned model's dev queries with other ways of reading long documents, without training again.

The model and the queries stay fixed, so the figures of the variants are paired. Each variant ranks the corpus
by a different document score:

* ``head``: the document's own vector (its first ``max_seq_length`` tokens);
* ``maxp``: the better of that and its tail view (title + last ``--tail-tokens`` tokens): the default;
* ``maxp+middle``, ``maxp+chunks``: also the tokens neither reads, as one centred view or as consecutive views;
* ``maxp+title``, ``maxp+w*title``: a vector of the title alone, as a third view or added with weight w;
* ``max+w*min``, ``head+b``: other ways of combining the two scores;
* ``prfK_B``: Rocchio pseudo-relevance feedback, the query moved by B x the mean best vector of its top K.

Run it on a dev experiment's outputs (``dvc exp apply NAME`` then ``dvc checkout``): the document vectors
come from ``data/embeddings/finetuned`` (the extra views are encoded here, in that run's precision), the
queries from ``data/split/dev.tsv``. Prints one JSON line and appends it to ``--output`` if given:

    python bench/view_probe.py --name dev-bs16-s25 --output /tmp/views.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedtune.data import read_corpus, read_qrels, read_queries
from embedtune.embeddings import encode, load_embeddings, tail_views, whole_words
from embedtune.evaluation import per_query_metrics, summarize
from embedtune.models import load_model
from embedtune.stage import offline_environment

MIN_VIEW_TOKENS = 32


def uncovered_views(titles: list[str], bodies: list[str], tokenizer, *, max_seq_length: int, tail_tokens: int,
                    chunk: int, centred: bool) -> tuple[np.ndarray, list[str]]:
    """Views (title + up to ``chunk`` body tokens, whole words) of the body tokens that neither the document's own
    vector (its first tokens) nor its tail view reads; one centred view per document, or consecutive ones."""
    budget = max_seq_length - tokenizer.num_special_tokens_to_add(pair=False)
    title_lengths = [len(x) for x in tokenizer(titles, add_special_tokens=False, verbose=False)["input_ids"]]
    encoded = tokenizer(bodies, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    owners, texts = [], []
    for i, offsets in enumerate(encoded["offset_mapping"]):
        room = budget - title_lengths[i]
        head_end, tail_start = max(0, room - 1), len(offsets) - min(tail_tokens, room)
        if tail_start - head_end < MIN_VIEW_TOKENS or room < MIN_VIEW_TOKENS:
            continue
        width = min(chunk, room)
        if centred:
            start = max(head_end, (head_end + tail_start - width) // 2)
            spans = [(start, min(tail_start, start + width))]
        else:
            spans = [(s, min(s + width, tail_start)) for s in range(head_end, tail_start, width)]
            if len(spans) > 1 and spans[-1][1] - spans[-1][0] < MIN_VIEW_TOKENS:
                spans.pop()  # a short remainder: the view before it is already full
        for a, b in spans:
            view = whole_words(bodies[i], offsets[a][0], offsets[min(b, len(offsets)) - 1][1])
            if view:
                owners.append(i)
                texts.append(f"{titles[i]} {view}".strip())
    return np.array(owners, dtype=np.int64), texts


def best_of_views(query_vectors: np.ndarray, documents: int, owners: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(queries x documents) best score of each document's views; -inf for a document without one."""
    scores = np.full((len(query_vectors), documents), -np.inf, dtype=np.float32)
    if len(owners):
        np.maximum.at(scores.T, owners, (query_vectors @ vectors.T).T)
    return scores


def ranking(query_ids: list[str], doc_ids: list[str], scores: np.ndarray, k: int = 100) -> dict:
    top = np.argsort(-scores, axis=1)[:, :k]
    return {q: {doc_ids[j]: float(scores[r, j]) for j in top[r]} for r, q in enumerate(query_ids)}


@dataclass
class Probe:
    """What a probe scores: a dev run's corpus vectors, its model, and the judged queries (sorted ids)."""

    args: argparse.Namespace
    corpus: dict
    queries: dict
    ids: list[str]
    heads: np.ndarray
    precision: str
    max_seq_length: int
    model: object
    qrels: dict
    qids: list[str]
    started: float

    def embed(self, texts: list[str]) -> np.ndarray:
        return encode(self.model, texts, precision=self.precision, show_progress=False)

    def report(self, variants: dict[str, np.ndarray]) -> None:
        """Score each variant's (queries x documents) matrix; print one JSON line, appended to --output if given."""
        row = {"name": self.args.name, "queries": len(self.qids), "tail_tokens": self.args.tail_tokens,
               "precision": self.precision, "seconds": round(time.perf_counter() - self.started, 1)}
        row.update({label: summarize(per_query_metrics(self.qrels, ranking(self.qids, self.ids, scores)))
                    for label, scores in variants.items()})
        line = json.dumps(row)
        print(line)
        if self.args.output:
            with self.args.output.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")


def load_probe(description: str, extra: Callable[[argparse.ArgumentParser], object] | None = None) -> Probe:
    """Parse the probes' shared arguments (and a probe's own: ``extra`` adds them) and load a dev run's workspace
    (see the module docstring)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if extra is not None:
        extra(parser)
    parser.add_argument("--name", default="workspace", help="label of the JSON line (the experiment's name)")
    parser.add_argument("--model", type=Path, default=Path("models/finetuned"))
    parser.add_argument("--embeddings", type=Path, default=Path("data/embeddings/finetuned"))
    parser.add_argument("--corpus", type=Path, default=Path("data/prepared/corpus.jsonl"))
    parser.add_argument("--queries", type=Path, default=Path("data/prepared/queries.jsonl"))
    parser.add_argument("--qrels", type=Path, default=Path("data/split/dev.tsv"))
    parser.add_argument("--tail-tokens", type=int, default=128)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    offline_environment()
    started = time.perf_counter()
    corpus = read_corpus(args.corpus)
    queries = read_queries(args.queries)
    ids, heads, meta = load_embeddings(args.embeddings)
    if ids != list(corpus):
        raise SystemExit(f"{args.embeddings} does not hold the vectors of {args.corpus}: run `dvc checkout`")
    max_seq_length = int(meta["max_seq_length"])
    model = load_model(str(args.model), max_seq_length=max_seq_length)
    qrels = read_qrels(args.qrels, ids, queries)
    return Probe(args, corpus, queries, ids, heads, meta["precision"], max_seq_length, model, qrels, sorted(qrels),
                 started)


def main() -> None:
    probe = load_probe(__doc__)
    args, corpus, queries, ids, heads = probe.args, probe.corpus, probe.queries, probe.ids, probe.heads
    max_seq_length, model, qids = probe.max_seq_length, probe.model, probe.qids
    titles, bodies = [corpus[d].title for d in ids], [corpus[d].text for d in ids]
    embed = probe.embed
    query_vectors = embed([queries[q].text for q in qids])
    head = query_vectors @ heads.T
    tail_owners, tail_texts = tail_views(titles, bodies, model.tokenizer, max_seq_length=max_seq_length,
                                         tail_tokens=args.tail_tokens)
    tail_owners, tail_vectors = np.array(tail_owners, dtype=np.int64), embed(tail_texts)
    tail = best_of_views(query_vectors, len(ids), tail_owners, tail_vectors)
    maxp = np.maximum(head, tail)
    variants = {"head": head, "maxp": maxp}
    for label, centred in (("maxp+middle", True), ("maxp+chunks", False)):
        owners, texts = uncovered_views(titles, bodies, model.tokenizer, max_seq_length=max_seq_length,
                                        tail_tokens=args.tail_tokens, chunk=args.tail_tokens, centred=centred)
        variants[label] = np.maximum(maxp, best_of_views(query_vectors, len(ids), owners, embed(texts)))
    title = query_vectors @ embed(titles).T
    variants["maxp+title"] = np.maximum(maxp, title)
    for weight in (0.1, 0.2):
        variants[f"maxp+{weight}*title"] = maxp + weight * title
    low = np.minimum(head, np.where(np.isinf(tail), head, tail))
    for weight in (0.1, 0.2):
        variants[f"max+{weight}*min"] = maxp + weight * low
    for bonus in (0.01, 0.02):
        variants[f"head+{bonus}"] = np.maximum(head + bonus, tail)
    tail_row = np.full(len(ids), -1, dtype=np.int64)
    tail_row[tail_owners] = np.arange(len(tail_owners))
    for k, beta in ((3, 0.3), (5, 0.3), (3, 0.5)):
        top = np.argsort(-maxp, axis=1)[:, :k]
        feedback = np.array([np.mean([tail_vectors[tail_row[j]] if tail_row[j] >= 0 and tail[r, j] > head[r, j]
                                      else heads[j] for j in top[r]], axis=0) for r in range(len(qids))])
        moved = query_vectors + beta * feedback
        moved /= np.linalg.norm(moved, axis=1, keepdims=True)
        variants[f"prf{k}_{beta}"] = np.maximum(moved @ heads.T, best_of_views(moved, len(ids), tail_owners,
                                                                                tail_vectors))
    probe.report(variants)

if __name__ == "__main__":
    main()
