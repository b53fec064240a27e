"""The ``prepare`` stage: validate, normalise, drop empty documents, deduplicate, optionally sample.

Every removal is counted (``metrics/data.json``) and every merge is listed (``duplicates.tsv`` beside the
prepared data), so nothing disappears silently. Relevance judgements on a removed duplicate move to the
document (or query) that was kept, keeping the highest grade.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from embedtune.data.beir import Dataset, Document, Qrels, count_pairs, write_corpus, write_qrels, write_queries
from embedtune.data.dedup import dedup_key, group_pairs, near_duplicate_pairs, normalize_text
from embedtune.embed.window import clip_head
from embedtune.errors import ConfigError

log = logging.getLogger(__name__)

DOC_SHINGLE_WORDS = 3
MAX_DOCUMENT_CHARS = 500_000  # ~100,000 words, a book; the model reads ~1,000 characters, BM25 the rest


@dataclass
class PrepareReport:
    """What prepare changed, for ``metrics/data.json``."""

    counts: dict[str, int] = field(default_factory=dict)
    merges: list[tuple[str, str, str, str]] = field(default_factory=list)  # kind, removed id, kept id, reason
    doc_map: dict[str, str] = field(default_factory=dict)  # removed document id -> kept id ('' if dropped)
    query_map: dict[str, str] = field(default_factory=dict)  # merged query id -> kept id

    def add(self, key: str, value: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + value


def _remap_qrels(qrels: Qrels, doc_map: Mapping[str, str], query_map: Mapping[str, str]) -> Qrels:
    """Point judgements at kept ids; drop those whose document was removed (maps to '')."""
    out: Qrels = {}
    for qid, docs in qrels.items():
        kept_q = query_map.get(qid, qid)
        for did, score in docs.items():
            kept_d = doc_map.get(did, did)
            if not kept_d:
                continue
            target = out.setdefault(kept_q, {})
            target[kept_d] = max(score, target.get(kept_d, score))
    return out


def _merge_exact(items: dict, text_of, kind: str, id_map: dict[str, str], report: PrepareReport) -> None:
    """Remove exact duplicates from ``items`` in place, mapping each removed id to the first one kept."""
    counter = "documents_merged_exact" if kind == "document" else "queries_merged_exact"
    report.counts.setdefault(counter, 0)
    first_by_key: dict[str, str] = {}
    for item in list(items.values()):
        key = dedup_key(text_of(item))
        if key in first_by_key:
            id_map[item.id] = first_by_key[key]
            report.merges.append((kind, item.id, first_by_key[key], "exact duplicate"))
            report.add(counter)
            del items[item.id]
        else:
            first_by_key[key] = item.id


def _merge_near_duplicates(corpus: dict[str, Document], threshold: float, report: PrepareReport) -> None:
    """Remove each document whose word-shingle Jaccard with an earlier one is at least ``threshold``, mapping its
    id onto the kept one (judgements follow it)."""
    docs = list(corpus.values())
    pairs = near_duplicate_pairs([d.full_text for d in docs], threshold, DOC_SHINGLE_WORDS)
    similarity = {(i, j): s for i, j, s in pairs}
    for index, root in enumerate(group_pairs(len(docs), pairs)):
        if root != index:
            kept, removed = docs[root].id, docs[index].id
            score = similarity.get((int(root), index))
            reason = f"near duplicate (Jaccard {score:.3f})" if score else "near duplicate (same group)"
            report.doc_map[removed] = kept
            report.merges.append(("document", removed, kept, reason))
            report.add("documents_merged_near_duplicate")
            del corpus[removed]


def prepare_dataset(
    dataset: Dataset,
    *,
    near_duplicate_threshold: float | None,
    max_document_chars: int = MAX_DOCUMENT_CHARS,
    sample_queries: int = 0,
    sample_documents: int = 0,
    seed: int = 42,
) -> tuple[Dataset, PrepareReport]:
    """Return a cleaned copy of ``dataset`` and a report of what was dropped, cut or merged.

    A title or text longer than ``max_document_chars`` characters is cut there (at whitespace) and counted in
    ``documents_cut_to_max_chars``: one runaway document (a 20 MB log dump) must not cost the stages after this
    one time and memory out of proportion to what they read of it."""
    if isinstance(max_document_chars, bool) or not isinstance(max_document_chars, int) or max_document_chars < 1000:
        raise ConfigError(f"prepare.max_document_chars must be a whole number >= 1000, got {max_document_chars!r}")
    report = PrepareReport()
    report.counts["documents_in"] = len(dataset.corpus)
    report.counts["queries_in"] = len(dataset.queries)
    report.counts["qrels_pairs_in"] = sum(count_pairs(q) for q in dataset.qrels.values())

    # 1. normalise text
    corpus: dict[str, Document] = {}
    doc_map = report.doc_map
    report.counts.setdefault("documents_normalized", 0)
    report.counts.setdefault("documents_dropped_empty", 0)
    report.counts.setdefault("documents_cut_to_max_chars", 0)
    for doc in dataset.corpus.values():
        clean = replace(doc, title=normalize_text(doc.title), text=normalize_text(doc.text))
        if (clean.title, clean.text) != (doc.title, doc.text):
            report.add("documents_normalized")
        if max(len(clean.title), len(clean.text)) > max_document_chars:
            clean = replace(clean, title=clip_head(clean.title, max_document_chars),
                            text=clip_head(clean.text, max_document_chars))
            report.add("documents_cut_to_max_chars")
        if not clean.full_text:
            report.add("documents_dropped_empty")
            report.merges.append(("document", doc.id, "", f"empty (line {doc.line})"))
            doc_map[doc.id] = ""
            continue
        corpus[doc.id] = clean
    queries = {q.id: replace(q, text=normalize_text(q.text)) for q in dataset.queries.values()}

    # 2. exact duplicates (case- and whitespace-insensitive); the first occurrence is kept
    _merge_exact(corpus, lambda d: d.full_text, "document", doc_map, report)

    # 3. near duplicates
    report.counts.setdefault("documents_merged_near_duplicate", 0)
    if near_duplicate_threshold:
        _merge_near_duplicates(corpus, near_duplicate_threshold, report)

    # 4. exact duplicate queries merge onto the first
    query_map = report.query_map
    _merge_exact(queries, lambda q: q.text, "query", query_map, report)

    qrels = {split: _remap_qrels(q, doc_map, query_map) for split, q in dataset.qrels.items()}
    dropped = report.counts["qrels_pairs_in"] - sum(count_pairs(q) for q in qrels.values())
    report.counts["qrels_pairs_dropped_or_merged"] = dropped

    prepared = Dataset(corpus=corpus, queries=queries, qrels=qrels)
    if sample_queries:
        prepared = sample_dataset(prepared, sample_queries, sample_documents, seed)
        report.counts["sampled"] = 1
    report.counts["documents_out"] = len(prepared.corpus)
    report.counts["queries_out"] = len(prepared.queries)
    for split, split_qrels in prepared.qrels.items():
        report.counts[f"qrels_pairs_out_{split}"] = count_pairs(split_qrels)
    return prepared, report


def remap_negatives(negatives: Mapping[str, set[str]], report: PrepareReport, dataset: Dataset) -> dict[str, set[str]]:
    """Explicit negatives after prepare: ids moved to the kept duplicates, removed ones dropped, and never a
    document that is judged relevant for the query."""
    out: dict[str, set[str]] = {}
    for qid, docs in negatives.items():
        kept_q = report.query_map.get(qid, qid)
        if kept_q not in dataset.queries:
            continue
        relevant = {d for qrels in dataset.qrels.values() for d, s in qrels.get(kept_q, {}).items() if s > 0}
        kept = {report.doc_map.get(d, d) for d in docs} - relevant - {""}
        kept &= set(dataset.corpus)
        if kept:
            out.setdefault(kept_q, set()).update(kept)
    return out


def write_negatives(path: Path, negatives: Mapping[str, set[str]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\n")
        for qid in sorted(negatives):
            for did in sorted(negatives[qid]):
                handle.write(f"{qid}\t{did}\n")


def read_negatives(path: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    if not path.is_file():
        return out
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if number == 0 or not line.strip():
            continue
        qid, did = line.split("\t")
        out.setdefault(qid, set()).add(did)
    return out


def sample_dataset(dataset: Dataset, n_queries: int, n_documents: int, seed: int) -> Dataset:
    """A small, seeded, self-consistent sample: queries from every split in proportion, all their
    relevant documents, and random other documents up to ``n_documents`` as distractors."""
    rng = random.Random(seed)
    judged = {split: sorted(q for q, docs in qrels.items() if any(s > 0 for s in docs.values()))
              for split, qrels in dataset.qrels.items()}
    total = sum(len(v) for v in judged.values()) or 1
    chosen: dict[str, list[str]] = {}
    for split, ids in judged.items():
        k = min(len(ids), max(1, round(n_queries * len(ids) / total)))
        chosen[split] = rng.sample(ids, k)
    keep_docs: set[str] = set()
    qrels: dict[str, Qrels] = {}
    for split, ids in chosen.items():
        qrels[split] = {q: dict(dataset.qrels[split][q]) for q in ids}
        for docs in qrels[split].values():
            keep_docs.update(docs)
    others = sorted(set(dataset.corpus) - keep_docs)
    extra = max(0, n_documents - len(keep_docs))
    keep_docs.update(rng.sample(others, min(extra, len(others))))
    corpus = {d: doc for d, doc in dataset.corpus.items() if d in keep_docs}
    keep_queries = {q for ids in chosen.values() for q in ids}
    queries = {q: query for q, query in dataset.queries.items() if q in keep_queries}
    return Dataset(corpus=corpus, queries=queries, qrels=qrels)


def write_prepared(directory: Path, dataset: Dataset, report: PrepareReport) -> None:
    """Write the prepared dataset in BEIR layout plus ``duplicates.tsv`` (every removal and merge)."""
    write_corpus(directory / "corpus.jsonl", dataset.corpus)
    write_queries(directory / "queries.jsonl", dataset.queries)
    for split, qrels in dataset.qrels.items():
        write_qrels(directory / "qrels" / f"{split}.tsv", qrels)
    with (directory / "duplicates.tsv").open("w", encoding="utf-8") as handle:
        handle.write("kind\tremoved_id\tkept_id\treason\n")
        for row in report.merges:
            handle.write("\t".join(row) + "\n")
