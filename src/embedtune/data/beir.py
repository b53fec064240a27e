"""BEIR-format datasets: reading with strict validation, and writing.

The BEIR layout is embedtune's exchange format::

    corpus.jsonl      {"_id": "...", "title": "...", "text": "..."}   one document per line
    queries.jsonl     {"_id": "...", "text": "..."}                   one query per line
    qrels/train.tsv   query-id <TAB> corpus-id <TAB> score            header line optional
    qrels/test.tsv    (optional) the held-out judgements

Readers never guess: malformed JSON, a missing or empty field, a duplicate id, bytes that are not UTF-8 or a
judgement that names an unknown id raise :class:`~embedtune.errors.InputError` naming file, line and field.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedtune.errors import InputError
from embedtune.io import write_jsonl

Qrels = dict[str, dict[str, int]]
"""query id -> {corpus id -> relevance grade}; grades > 0 are relevant."""

QRELS_HEADER = ("query-id", "corpus-id", "score")


@dataclass(frozen=True)
class Document:
    """One corpus entry. ``line`` is where it came from, for error messages; ``metadata`` is kept as BEIR keeps
    it (a documents folder's chunks carry their ``source`` file and ``page`` there)."""

    id: str
    title: str
    text: str
    line: int = 0
    metadata: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def full_text(self) -> str:
        """Title and body joined the way BEIR's dense retrievers embed them."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    line: int = 0


@dataclass
class Dataset:
    """A validated BEIR dataset held in memory (fine up to millions of short documents)."""

    corpus: dict[str, Document]
    queries: dict[str, Query]
    qrels: dict[str, Qrels] = field(default_factory=dict)  # split name -> qrels

    def documents(self) -> list[Document]:
        return list(self.corpus.values())


def decode_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text) for each non-blank line, decoding strictly as UTF-8."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"bytes are not valid UTF-8 (byte {exc.start + 1} of the line: {raw[exc.start:exc.start + 1]!r}); "
                    "re-encode the file as UTF-8",
                    path=path,
                    line=number,
                ) from None
            if number == 1:
                text = text.removeprefix("\ufeff")
            if text.strip():
                yield number, text


def _string_field(record: Mapping, name: str, path: Path, line: int, *, required: bool) -> str:
    if name not in record or record[name] is None:
        if required:
            raise InputError("missing (every record needs it)", path=path, line=line, field=name)
        return ""
    value = record[name]
    if name == "_id" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InputError(f"must be a string, got {type(value).__name__}", path=path, line=line, field=name)
    return refuse_surrogates(value, path, line, name)


def refuse_surrogates(value: str, path: Path, line: int, name: str) -> str:
    """``value``, unless it holds a lone UTF-16 surrogate (``"\ud800"``: valid JSON, but not text that can be
    written as UTF-8): then an error naming file, line and field."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"holds {value[exc.start]!r} at character {exc.start + 1}, which is not a character "
                         "(a lone UTF-16 surrogate)", path=path, line=line, field=name) from None
    return value


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, JSON object) for each record; raise InputError on malformed lines."""
    for number, text in decode_lines(path):
        try:
            record = json.loads(text.rstrip("\r\n"))  # else an unclosed record is reported at the next line's column 1
        except json.JSONDecodeError as exc:
            raise InputError(f"malformed JSON at column {exc.colno}: {exc.msg}", path=path, line=number) from None
        if not isinstance(record, dict):
            raise InputError(f"expected a JSON object, got {type(record).__name__}", path=path, line=number)
        yield number, record


def _check_unique(seen: dict[str, int], id_: str, path: Path, line: int) -> None:
    if not id_.strip():
        raise InputError("is empty", path=path, line=line, field="_id")
    if any(c in id_ for c in "\t\r\n"):
        raise InputError(f"{id_!r} holds a tab or a line break, which the pipeline's TSV files cannot hold",
                         path=path, line=line, field="_id")
    if id_ in seen:
        raise InputError(f"duplicate id {id_!r} (first seen on line {seen[id_]})", path=path, line=line, field="_id")
    seen[id_] = line


def read_corpus(path: Path) -> dict[str, Document]:
    """Read ``corpus.jsonl``. Empty documents are kept here (``prepare`` drops and counts them)."""
    corpus: dict[str, Document] = {}
    seen: dict[str, int] = {}
    for line, record in iter_jsonl(path):
        id_ = _string_field(record, "_id", path, line, required=True)
        _check_unique(seen, id_, path, line)
        text = _string_field(record, "text", path, line, required=True)
        title = _string_field(record, "title", path, line, required=False)
        metadata = record.get("metadata")
        corpus[id_] = Document(id=id_, title=title, text=text, line=line,
                               metadata=metadata if isinstance(metadata, dict) and metadata else None)
    if not corpus:
        raise InputError("contains no documents", path=path)
    return corpus


def read_queries(path: Path) -> dict[str, Query]:
    """Read ``queries.jsonl``. A query without text cannot be searched for, so an empty one is an error."""
    queries: dict[str, Query] = {}
    seen: dict[str, int] = {}
    for line, record in iter_jsonl(path):
        id_ = _string_field(record, "_id", path, line, required=True)
        _check_unique(seen, id_, path, line)
        text = _string_field(record, "text", path, line, required=True)
        if not text.strip():
            raise InputError("is empty (a query needs text)", path=path, line=line, field="text")
        queries[id_] = Query(id=id_, text=text, line=line)
    if not queries:
        raise InputError("contains no queries", path=path)
    return queries


MAX_GRADE = 100  # relevance grades are small integers (TREC: 0-4); a bound keeps pytrec_eval's arithmetic finite


def _grade(text: str, path: Path, line: int) -> int:
    """A qrels score: an integer from 0 to ``MAX_GRADE`` (``2`` or ``2.0``); anything else is refused with one line,
    never truncated (``0.7`` silently becoming 0 would drop the pair)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value == int(value) and 0 <= value <= MAX_GRADE):
        raise InputError(f"must be a relevance grade, an integer from 0 to {MAX_GRADE}, got {text!r}",
                         path=path, line=line, field="score")
    return int(value)


def read_qrels(
    path: Path,
    corpus_ids: Iterable[str] | None = None,
    query_ids: Iterable[str] | None = None,
) -> Qrels:
    """Read a qrels TSV (``query-id  corpus-id  score``), checking ids against the corpus and queries.

    A repeated (query, document) row keeps its highest grade.
    """
    corpus_set = set(corpus_ids) if corpus_ids is not None else None
    query_set = set(query_ids) if query_ids is not None else None
    qrels: Qrels = {}
    for line, text in decode_lines(path):
        cells = text.rstrip("\r\n").split("\t")
        if line == 1 and cells[0].strip().lower() in {"query-id", "query_id", "qid"}:
            continue
        if len(cells) != 3:
            raise InputError(
                f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(cells)}",
                path=path,
                line=line,
            )
        qid, did, score_text = (c.strip() for c in cells)
        if not qid:
            raise InputError("is empty", path=path, line=line, field="query-id")
        if not did:
            raise InputError("is empty", path=path, line=line, field="corpus-id")
        score = _grade(score_text, path, line)
        if query_set is not None and qid not in query_set:
            raise InputError(f"unknown query id {qid!r} (not in queries.jsonl)", path=path, line=line, field="query-id")
        if corpus_set is not None and did not in corpus_set:
            raise InputError(f"unknown document id {did!r} (not in corpus.jsonl)", path=path, line=line, field="corpus-id")
        previous = qrels.setdefault(qid, {}).get(did)
        qrels[qid][did] = score if previous is None else max(previous, score)
    return qrels


def read_dataset(directory: Path) -> Dataset:
    """Read and validate a BEIR dataset directory (``qrels/*.tsv``: every split present)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("dataset directory does not exist", path=directory)
    for required in ("corpus.jsonl", "queries.jsonl"):
        if not (directory / required).is_file():
            raise InputError(f"missing {required} (BEIR layout: corpus.jsonl, queries.jsonl, qrels/*.tsv)", path=directory)
    corpus = read_corpus(directory / "corpus.jsonl")
    queries = read_queries(directory / "queries.jsonl")
    qrels_dir = directory / "qrels"
    splits = sorted(qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
    if not splits:
        raise InputError("no relevance judgements: expected qrels/train.tsv (and optionally qrels/test.tsv)", path=directory)
    qrels = {p.stem: read_qrels(p, corpus, queries) for p in splits}
    return Dataset(corpus=corpus, queries=queries, qrels=qrels)


# --- writing --------------------------------------------------------------------------------------------------


def write_corpus(path: Path, corpus: Mapping[str, Document]) -> int:
    return write_jsonl(path, ({"_id": d.id, "title": d.title, "text": d.text,
                               **({"metadata": dict(d.metadata)} if d.metadata else {})} for d in corpus.values()))


def write_queries(path: Path, queries: Mapping[str, Query]) -> int:
    return write_jsonl(path, ({"_id": q.id, "text": q.text} for q in queries.values()))


def write_qrels(path: Path, qrels: Qrels) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(QRELS_HEADER)
        for qid, docs in qrels.items():
            for did, score in docs.items():
                writer.writerow((qid, did, score))
                rows += 1
    return rows


def count_pairs(qrels: Qrels) -> int:
    """Number of relevant (query, document) pairs."""
    return sum(1 for docs in qrels.values() for score in docs.values() if score > 0)
