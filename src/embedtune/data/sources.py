"""Training data where teams really have it: BEIR qrels, Q&A pairs, and search click logs.

A raw data directory may hold any combination of

* BEIR files: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/*.tsv`` (see :mod:`embedtune.data.beir`);
* a **pairs file** ``pairs.jsonl`` / ``pairs.csv`` / ``pairs.parquet`` with columns ``query``, ``positive`` and
  optionally ``negative`` (texts), or ``query``/``query_id`` with ``positive_id`` / ``negative_id`` (ids into the
  corpus). Documents named only by their text become corpus entries; the same text twice is one document;
* a **documents folder** ``documents/`` of PDF, DOCX, HTML, Markdown and text files, chunked into corpus
  documents by :mod:`embedtune.documents` (the prepare stage reads it and passes the chunks in);
* a **click log** ``clicks.jsonl`` / ``clicks.csv``: one search per row with ``query``, ``shown`` (document ids
  in rank order), ``clicked`` (ids), ``timestamp`` and optionally ``session``. Searches are aggregated into
  (query, clicked document) positives with at least ``min_clicks`` clicks; documents shown *above* a click and
  skipped become candidate negatives; bot-like sessions are dropped.

Everything is turned into one :class:`~embedtune.data.beir.Dataset` (pairs and clicks go to the ``train`` split)
plus explicit negatives, with counts of what was read, merged and dropped. Errors name file, line and field. A
corpus alone is a dataset too (documents only: the prepare stage then asks for synthetic queries).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embedtune.data.beir import (
    Dataset,
    Document,
    Query,
    decode_lines,
    iter_jsonl,
    read_corpus,
    read_qrels,
    read_queries,
    refuse_surrogates,
)
from embedtune.data.dedup import dedup_key, normalize_text
from embedtune.errors import InputError

PAIRS_NAMES = ("pairs.jsonl", "pairs.csv", "pairs.parquet")
CLICKS_NAMES = ("clicks.jsonl", "clicks.csv")
Negatives = dict[str, set[str]]  # query id -> document ids to use as negatives
# a click log's times: ISO 8601 or epoch seconds in this range (a 12 or a millisecond count is a mistake)
EARLIEST_CLICK, LATEST_CLICK = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
EPOCH_SECONDS = re.compile(r"\d+(\.\d+)?")


@dataclass
class ClickOptions:
    min_clicks: int = 1
    max_searches_per_session: int = 500  # more than this in one session looks like a bot
    max_clicks_per_search: int = 10  # clicking (almost) everything shown looks like a crawler
    skip_above_negatives: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> ClickOptions:
        return cls(**(params or {}))


@dataclass
class SourceReport:
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _find(directory: Path, names: tuple[str, ...]) -> Path | None:
    found = [directory / n for n in names if (directory / n).is_file()]
    if len(found) > 1:
        raise InputError(f"more than one of {', '.join(names)}: keep one", path=directory)
    return found[0] if found else None


def _stable_id(prefix: str, text: str) -> str:
    return f"{prefix}{hashlib.sha1(dedup_key(text).encode('utf-8')).hexdigest()[:16]}"


def _iter_table(path: Path) -> Iterator[tuple[int, dict]]:
    """(line or row number, record) from JSONL, CSV (header row) or Parquet."""
    if path.suffix == ".jsonl":
        yield from iter_jsonl(path)
    elif path.suffix == ".csv":
        text = "".join(line for _, line in decode_lines(path))  # strict UTF-8, errors name the line
        reader = csv.DictReader(io.StringIO(text))
        try:
            for row in reader:
                if None in row:
                    raise InputError(f"more cells than the header has columns ({', '.join(reader.fieldnames)})",
                                     path=path, line=reader.line_num)
                yield reader.line_num, {k: (v if v != "" else None) for k, v in row.items()}
        except csv.Error as exc:
            raise InputError(f"malformed CSV: {exc}", path=path, line=reader.line_num) from None
    elif path.suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several unrelated types for a damaged file
            raise InputError(f"cannot read Parquet: {exc}", path=path) from None
        for number, row in enumerate(frame.to_dict(orient="records"), start=1):
            yield number, {k: (None if _is_missing(v) else v) for k, v in row.items()}
    else:  # pragma: no cover - names are fixed above
        raise InputError("unsupported file type", path=path)


def _is_missing(value: Any) -> bool:
    try:
        import pandas as pd

        return value is None or (not isinstance(value, (list, tuple)) and bool(pd.isna(value)))
    except (TypeError, ValueError):
        return False


def _text(record: Mapping, name: str, path: Path, line: int, *, required: bool) -> str:
    value = record.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InputError("missing or empty", path=path, line=line, field=name)
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InputError(f"must be text, got {type(value).__name__}", path=path, line=line, field=name)
    return refuse_surrogates(value, path, line, name)


class _Builder:
    """Accumulates corpus, queries, qrels and negatives from several sources, merging equal texts."""

    def __init__(self, corpus: dict[str, Document], queries: dict[str, Query]) -> None:
        self.corpus = corpus
        self.queries = queries
        self.doc_by_key = {dedup_key(d.full_text): d.id for d in corpus.values()}
        self.query_by_key = {dedup_key(q.text): q.id for q in queries.values()}
        self.train: dict[str, dict[str, int]] = {}
        self.negatives: Negatives = defaultdict(set)
        self.report = SourceReport()

    def query(self, text: str, line: int) -> str:
        key = dedup_key(text)
        if key not in self.query_by_key:
            qid = _stable_id("q:", text)
            self.queries[qid] = Query(qid, normalize_text(text), line)
            self.query_by_key[key] = qid
        else:
            self.report.counts["queries_merged"] += 1
        return self.query_by_key[key]

    def document(self, text: str, line: int) -> str:
        key = dedup_key(text)
        if key not in self.doc_by_key:
            did = _stable_id("d:", text)
            self.corpus[did] = Document(did, "", normalize_text(text), line)
            self.doc_by_key[key] = did
            self.report.counts["documents_created_from_text"] += 1
        else:
            self.report.counts["documents_merged"] += 1
        return self.doc_by_key[key]

    def positive(self, qid: str, did: str) -> None:
        self.train.setdefault(qid, {})[did] = 1


def _columns(path: Path) -> list[str] | None:
    """The header of a CSV or Parquet table (None for JSONL, whose records each name their own fields)."""
    if path.suffix == ".csv":
        for line, text in decode_lines(path):
            try:
                return next(csv.reader([text]), [])
            except csv.Error as exc:
                raise InputError(f"malformed CSV header: {exc}", path=path, line=line) from None
        return []
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several unrelated types for a damaged file
            raise InputError(f"cannot read Parquet: {exc}", path=path) from None
    return None


def _require_rows(path: Path, rows: int) -> None:
    if rows == 0:
        raise InputError("contains no rows (remove the file if it has nothing to add)", path=path)


def _require_columns(path: Path, alternatives: list[tuple[str, ...]]) -> None:
    """Check a table's header once, so a misnamed column is reported against the header, not every row."""
    columns = _columns(path)
    if columns is None:
        return
    _require_rows(path, len(columns))  # an empty file has not even a header
    for names in alternatives:
        if not any(name in columns for name in names):
            wanted = " or ".join(repr(n) for n in names)
            raise InputError(f"no {wanted} column (columns: {', '.join(columns) or 'none'})", path=path,
                             line=1 if path.suffix == ".csv" else None)  # the header line; Parquet has no lines


def _pair_query(record: Mapping, path: Path, line: int, builder: _Builder) -> str:
    """The query id of a pairs row: its ``query`` text (a query of its own, or an equal one merged) or its
    ``query_id`` (which must be in queries.jsonl)."""
    if record.get("query") is not None:
        return builder.query(_text(record, "query", path, line, required=True), line)
    if record.get("query_id") is None:
        raise InputError("missing (each row needs 'query' text or a 'query_id')", path=path, line=line, field="query")
    qid = _text(record, "query_id", path, line, required=True)
    if qid not in builder.queries:
        raise InputError(f"unknown query id {qid!r} (not in queries.jsonl)", path=path, line=line, field="query_id")
    return qid


def _pair_document(record: Mapping, role: str, path: Path, line: int, builder: _Builder) -> str | None:
    """The document id of a pairs row's ``positive`` or ``negative``: by ``<role>_id``, or its text (a new
    document, or an equal one merged); None for a row without a negative."""
    if record.get(f"{role}_id") is not None:
        did = _text(record, f"{role}_id", path, line, required=True)
        if did not in builder.corpus:
            raise InputError(f"unknown document id {did!r} (not in corpus.jsonl)", path=path, line=line,
                             field=f"{role}_id")
        return did
    if record.get(role) is not None:
        return builder.document(_text(record, role, path, line, required=True), line)
    if role == "positive":
        raise InputError("missing (each row needs 'positive' text or a 'positive_id')", path=path, line=line,
                         field="positive")
    return None


def read_pairs(path: Path, builder: _Builder) -> None:
    counts = builder.report.counts
    _require_columns(path, [("query", "query_id"), ("positive", "positive_id")])
    rows = 0
    for line, record in _iter_table(path):
        rows += 1
        qid = _pair_query(record, path, line, builder)
        builder.positive(qid, _pair_document(record, "positive", path, line, builder))
        counts["pairs"] += 1
        negative = _pair_document(record, "negative", path, line, builder)
        if negative is not None:
            builder.negatives[qid].add(negative)
            counts["pair_negatives"] += 1
    _require_rows(path, rows)


def _id_list(record: Mapping, name: str, path: Path, line: int) -> list[str]:
    value = record.get(name)
    if value is None:
        raise InputError("missing (a list of document ids)", path=path, line=line, field=name)
    if isinstance(value, str) and path.suffix != ".csv":
        raise InputError("must be a JSON list of document ids, got text", path=path, line=line, field=name)
    if isinstance(value, str):  # CSV: JSON list or '|'-separated ids
        value = value.strip()
        if value.startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise InputError("is not a valid JSON list of ids", path=path, line=line, field=name) from None
        else:
            value = [v for v in value.split("|") if v.strip()]
    if not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
        raise InputError(f"must be a list of document ids, got {type(value).__name__}", path=path, line=line, field=name)
    ids = value.tolist() if hasattr(value, "tolist") else value
    if bad := next((v for v in ids if isinstance(v, bool) or not isinstance(v, (str, int))), None):
        raise InputError(f"must be a list of document ids, holds {bad!r}", path=path, line=line, field=name)
    return [refuse_surrogates(str(v).strip(), path, line, name) for v in ids]


def _timestamp(record: Mapping, path: Path, line: int) -> datetime:
    """A search's ``timestamp``: ISO 8601 (``2026-05-01T12:00:00Z``; without a zone, UTC) or epoch seconds, between
    ``EARLIEST_CLICK`` and ``LATEST_CLICK``."""
    value = record.get("timestamp")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError("missing or empty", path=path, line=line, field="timestamp")
    expected = "ISO 8601 (2026-05-01T12:00:00Z) or epoch seconds"
    when = None
    if isinstance(value, (int, float)) and not isinstance(value, bool) or (
            isinstance(value, str) and EPOCH_SECONDS.fullmatch(value.strip())):
        seconds = float(value)
        if math.isfinite(seconds) and EARLIEST_CLICK.timestamp() <= seconds < LATEST_CLICK.timestamp():
            when = datetime.fromtimestamp(seconds, tz=UTC)
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            pass
        else:
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when is None or not EARLIEST_CLICK <= when < LATEST_CLICK:
        raise InputError(f"{value!r} is not a time from {EARLIEST_CLICK.year} to {LATEST_CLICK.year - 1}: {expected}",
                         path=path, line=line, field="timestamp")
    return when


def _read_searches(path: Path, builder: _Builder) -> list[tuple[int, str, str, list[str], list[str]]]:
    """A click log's searches as (line, session, query, shown ids, clicked ids), every id checked."""
    searches = []
    _require_columns(path, [("query",), ("shown",), ("clicked",), ("timestamp",)])
    for line, record in _iter_table(path):
        query = _text(record, "query", path, line, required=True)
        shown = _id_list(record, "shown", path, line)
        clicked = _id_list(record, "clicked", path, line)
        _timestamp(record, path, line)
        session = _text(record, "session", path, line, required=False) or f"line:{line}"
        for did in shown + clicked:
            if did not in builder.corpus:
                raise InputError(f"unknown document id {did!r} (not in corpus.jsonl)", path=path, line=line,
                                 field="clicked" if did in clicked else "shown")
        missing = [d for d in clicked if d not in shown]
        if missing:
            raise InputError(f"clicked id {missing[0]!r} was not shown", path=path, line=line, field="clicked")
        searches.append((line, session, query, shown, clicked))
    _require_rows(path, len(searches))
    return searches


def read_clicks(path: Path, builder: _Builder, options: ClickOptions) -> None:
    """Aggregate a click log into positives (and skip-above negatives)."""
    counts = builder.report.counts
    searches = _read_searches(path, builder)
    counts["searches"] = len(searches)
    per_session = Counter(session for _, session, *_ in searches)
    bots = {s for s, n in per_session.items() if n > options.max_searches_per_session}
    click_count: Counter[tuple[str, str]] = Counter()
    skipped: dict[str, set[str]] = defaultdict(set)
    clicked_ever: dict[str, set[str]] = defaultdict(set)
    for line, session, query, shown, clicked in searches:
        if session in bots or len(clicked) > options.max_clicks_per_search:
            counts["searches_dropped_bot_like"] += 1
            continue
        qid = builder.query(query, line)
        for did in clicked:
            click_count[(qid, did)] += 1
            clicked_ever[qid].add(did)
        if clicked and options.skip_above_negatives:
            lowest_click = max(shown.index(d) for d in clicked)
            skipped[qid].update(d for d in shown[:lowest_click] if d not in clicked)
    counts["sessions_dropped_bot_like"] = len(bots)
    for (qid, did), n in click_count.items():
        if n >= options.min_clicks:
            builder.positive(qid, did)
            counts["click_pairs"] += 1
        else:
            counts["click_pairs_below_min_clicks"] += 1
    for qid, docs in skipped.items():
        negatives = docs - clicked_ever[qid]
        builder.negatives[qid].update(negatives)
        counts["click_skip_negatives"] += len(negatives)


def _check_inputs(directory: Path, corpus: Mapping, queries: Mapping, qrels_files: list[Path],
                  clicks_path: Path | None) -> None:
    """The inputs present can make a dataset: what refers to documents or queries by id has them to refer to."""
    if not corpus and (clicks_path or qrels_files):
        raise InputError("missing corpus.jsonl (qrels and click logs refer to documents by id)", path=directory)
    if qrels_files and not queries:
        raise InputError("missing queries.jsonl (qrels refer to queries by id)", path=directory)


def read_sources(directory: Path, clicks: ClickOptions | None = None,
                 documents: Mapping[str, Document] | None = None) -> tuple[Dataset, Negatives, dict[str, int]]:
    """Read every input kind present in ``directory`` into one dataset (see module docstring). ``documents``
    (a documents folder's chunks, :mod:`embedtune.documents`) join the corpus before pairs, clicks and qrels,
    so those may name chunks by id."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("dataset directory does not exist", path=directory)
    pairs_path, clicks_path = _find(directory, PAIRS_NAMES), _find(directory, CLICKS_NAMES)
    corpus_path, queries_path = directory / "corpus.jsonl", directory / "queries.jsonl"
    corpus = read_corpus(corpus_path) if corpus_path.is_file() else {}
    if clash := next((d for d in documents or {} if d in corpus), None):
        raise InputError(f"document id {clash!r} is both in corpus.jsonl and a chunk of the documents folder: "
                         "rename one", path=corpus_path)
    corpus.update(documents or {})
    queries = read_queries(queries_path) if queries_path.is_file() else {}
    qrels_files = sorted((directory / "qrels").glob("*.tsv")) if (directory / "qrels").is_dir() else []
    _check_inputs(directory, corpus, queries, qrels_files, clicks_path)
    qrels = {p.stem: read_qrels(p, corpus, queries) for p in qrels_files}
    for path in qrels_files:
        if not any(score > 0 for docs in qrels[path.stem].values() for score in docs.values()):
            raise InputError("judges no query-document pair as relevant (no line with a score above 0)", path=path)
    builder = _Builder(corpus, queries)
    if pairs_path:
        read_pairs(pairs_path, builder)
    if clicks_path:
        read_clicks(clicks_path, builder, clicks or ClickOptions())
    if builder.train:
        train = qrels.setdefault("train", {})
        for qid, docs in builder.train.items():
            train.setdefault(qid, {}).update(docs)
    if not builder.corpus:
        raise InputError("no documents: add corpus.jsonl or document texts in the pairs file", path=directory)
    dataset = Dataset(corpus=builder.corpus, queries=builder.queries, qrels=qrels)
    negatives = {q: d for q, d in builder.negatives.items() if d}
    return dataset, negatives, dict(builder.report.counts)
