"""Expert judgements: a queue of queries, pooled blind candidate lists, graded judgements, agreement, export.

A domain expert's hour is the scarcest input a team has, so each query shows a **pool** (TREC-style): the union of
the top ``depth`` results of several systems (each index version's model and BM25), shuffled by a seed of the
query, with no system named. The pool is stored the first time a query is shown, so every judge of it sees the
same list, and a judgement can only name a document of it. Judgements are appended (a changed mind is a newer
row; the latest row of a judge counts), and a replayed request (the same ``request_id``) stores nothing.

Grades: 2 relevant, 1 partly relevant, 0 not relevant; a skip is stored without a grade. ``export_qrels`` writes
the judged queries as BEIR files (``queries.jsonl``, ``qrels/test.tsv``, ``qrels/train.tsv``) into the data
directory beside the corpus, touching nothing else there, the first ``test_queries`` judged queries held out for
the test split.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from embedtune.errors import EmbedtuneError

GRADES = {2: "relevant", 1: "partly relevant", 0: "not relevant"}
DEFAULT_DEPTH = 10
MAX_QUERY_CHARS = 1000
MAX_NOTE_CHARS = 2000
JUDGES_PER_QUERY = 2  # a query is offered to new judges until this many have finished it (agreement needs two)


class JudgingError(EmbedtuneError):
    """A judging request that cannot be honoured (HTTP 4xx)."""

    status = 400


class Conflict(JudgingError):
    status = 409


def _clean(text: object, name: str, limit: int) -> str:
    if not isinstance(text, str) or not text.strip():
        raise JudgingError(f"{name} is empty")
    text = text.strip()
    if len(text) > limit:
        raise JudgingError(f"{name} is {len(text)} characters long; the limit is {limit}")
    if "\x00" in text:
        raise JudgingError(f"{name} may not contain NUL characters")
    return text


def query_id_for(text: str) -> str:
    """A stable id for a typed query: the same text (case and spacing aside) is the same query."""
    return "judge-" + hashlib.sha1(" ".join(text.lower().split()).encode("utf-8")).hexdigest()[:12]


def add_queries(conn: Any, queries: Iterable[tuple[str | None, str]], source: str) -> int:
    """Queue (id, text) queries to judge (a None id: derived from the text); returns how many were new."""
    added = 0
    for query_id, text in queries:
        text = _clean(text, "the query", MAX_QUERY_CHARS)
        query_id = _clean(query_id, "the query id", 200) if query_id is not None else query_id_for(text)
        added += conn.execute("INSERT INTO embedtune_judging_queries (query_id, text, source) VALUES (%s, %s, %s) "
                              "ON CONFLICT (query_id) DO NOTHING", (query_id, text, source)).rowcount
    return added


def read_query_file(path: Path) -> list[tuple[str | None, str]]:
    """(id, text) queries from a BEIR ``queries.jsonl`` or from a text file with one query per line (ids from
    the text); bad lines are errors naming file and line."""
    from embedtune.data.beir import decode_lines, read_queries
    from embedtune.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path=path)
    if path.suffix == ".jsonl":
        return [(q.id, q.text) for q in read_queries(path).values()]
    queries = []
    for line, text in decode_lines(path):
        if len(text.strip()) > MAX_QUERY_CHARS:
            raise InputError(f"a query of {len(text.strip())} characters; the limit is {MAX_QUERY_CHARS}", path=path,
                             line=line)
        queries.append((None, text.strip()))
    return queries


def pooled(rankings: Mapping[str, list[str]], depth: int, seed: str) -> list[str]:
    """The union of each system's top ``depth`` ids, shuffled by ``seed`` (blind: the order says nothing about
    which system found a document, or how high)."""
    ids = sorted({doc_id for ranking in rankings.values() for doc_id in ranking[:depth]})
    random.Random(seed).shuffle(ids)
    return ids


def pool_for(conn: Any, query_id: str, rank: Callable[[str], dict[str, list[str]]], *, version: str,
             depth: int) -> dict[str, Any]:
    """The stored pool of ``query_id`` for the documents of ``version``, made (``rank``: the query's rankings by
    system) and stored the first time."""
    row = conn.execute("SELECT text FROM embedtune_judging_queries WHERE query_id = %s", (query_id,)).fetchone()
    if row is None:
        raise JudgingError(f"unknown query {query_id!r}: add it first")
    stored = conn.execute("SELECT pool FROM embedtune_judging_pools WHERE query_id = %s AND version = %s",
                          (query_id, version)).fetchone()
    if stored is None:
        rankings = rank(row[0])
        pool = {"depth": depth, "systems": sorted(rankings), "ids": pooled(rankings, depth, query_id)}
        conn.execute("INSERT INTO embedtune_judging_pools (query_id, version, pool) VALUES (%s, %s, %s) "
                     "ON CONFLICT (query_id, version) DO NOTHING", (query_id, version, json.dumps(pool)))
        stored = conn.execute("SELECT pool FROM embedtune_judging_pools WHERE query_id = %s AND version = %s",
                              (query_id, version)).fetchone()  # a concurrent first view may have won
    return {"query_id": query_id, "text": row[0], **stored[0]}


def latest_grades(conn: Any, where: str = "TRUE", args: tuple = ()) -> dict[tuple[str, str, str], int | None]:
    """(judge, query, document) -> the judge's latest grade (None: skipped), over the judgements ``where`` selects."""
    rows = conn.execute(f"SELECT DISTINCT ON (judge, query_id, doc_id) judge, query_id, doc_id, grade "
                        f"FROM embedtune_judgements WHERE {where} ORDER BY judge, query_id, doc_id, id DESC", args)
    return {(judge, query, doc): grade for judge, query, doc, grade in rows}


def next_query(conn: Any, judge: str, version: str) -> str | None:
    """The query this judge should see next: one they have started but not finished, else the oldest queued query
    that fewer than ``JUDGES_PER_QUERY`` judges have finished and they have not; None when nothing is left."""
    judge = _clean(judge, "the judge", 200)
    rows = conn.execute(
        "SELECT q.query_id, p.pool, "
        "  (SELECT count(DISTINCT j.doc_id) FROM embedtune_judgements j "
        "   WHERE j.query_id = q.query_id AND j.judge = %s) AS mine, "
        "  (SELECT count(*) FROM (SELECT j.judge FROM embedtune_judgements j WHERE j.query_id = q.query_id "
        "   GROUP BY j.judge HAVING count(DISTINCT j.doc_id) >= jsonb_array_length(p.pool->'ids')) done) AS judges "
        "FROM embedtune_judging_queries q LEFT JOIN embedtune_judging_pools p "
        "  ON p.query_id = q.query_id AND p.version = %s "
        "ORDER BY q.added_at, q.query_id", (judge, version)).fetchall()
    started = [q for q, pool, mine, _ in rows if pool is not None and 0 < mine < len(pool["ids"])]
    if started:
        return started[0]
    fresh = [q for q, pool, mine, judges in rows if mine == 0 and judges < JUDGES_PER_QUERY]
    return fresh[0] if fresh else None


def record(conn: Any, *, request_id: str, judge: str, query_id: str, doc_id: str, grade: int | None, note: str,
           version: str) -> dict[str, Any]:
    """Append one judgement of a document of the query's stored pool; a replayed ``request_id`` is a conflict."""
    import uuid

    try:
        request = uuid.UUID(str(request_id))
    except ValueError:
        raise JudgingError("request_id must be a UUID (one per judgement: a replay stores nothing)") from None
    judge = _clean(judge, "the judge", 200)
    if grade is not None and (isinstance(grade, bool) or grade not in GRADES):
        raise JudgingError(f"grade must be one of {sorted(GRADES)} ({', '.join(GRADES.values())}) or null (skip)")
    note = (note or "").strip()
    if len(note) > MAX_NOTE_CHARS or "\x00" in note:
        raise JudgingError(f"the note must be at most {MAX_NOTE_CHARS} characters, without NUL")
    stored = conn.execute("SELECT pool FROM embedtune_judging_pools WHERE query_id = %s AND version = %s",
                          (query_id, version)).fetchone()
    if stored is None:
        raise JudgingError(f"query {query_id!r} has not been shown to be judged (no pool)")
    if doc_id not in stored[0]["ids"]:
        raise JudgingError(f"document {doc_id!r} is not in the pool shown for query {query_id!r}")
    row = conn.execute(
        "INSERT INTO embedtune_judgements (request_id, judge, query_id, doc_id, grade, note, version, pool) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (request_id) DO NOTHING RETURNING id",
        (request, judge, query_id, doc_id, grade, note, version, json.dumps(stored[0]))).fetchone()
    if row is None:
        raise Conflict(f"request {request} was already recorded: nothing stored")
    return {"ok": True, "id": row[0]}


def progress(conn: Any, judge: str) -> dict[str, Any]:
    """A judge's judged documents and queries, queries left in the queue, and judgements per minute (over their
    judgements of the last hour)."""
    judged, queries = conn.execute("SELECT count(*), count(DISTINCT query_id) FROM embedtune_judgements "
                                   "WHERE judge = %s", (judge,)).fetchone()
    recent = conn.execute("SELECT count(*), extract(epoch FROM max(at) - min(at)) FROM embedtune_judgements "
                          "WHERE judge = %s AND at > now() - interval '1 hour'", (judge,)).fetchone()
    queued = conn.execute("SELECT count(*) FROM embedtune_judging_queries").fetchone()[0]
    per_minute = round(60 * (recent[0] - 1) / float(recent[1]), 1) if recent[0] > 1 and recent[1] else None
    return {"judged": judged, "queries": queries, "queued": queued, "per_minute": per_minute}


def cohen_kappa(pairs: list[tuple[int, int]]) -> float | None:
    """Cohen's kappa of two judges' grades on the same items (None for no items or no variation at all)."""
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[g] * second[g] for g in set(first) | set(second)) / n / n
    return None if expected == 1 else round((observed - expected) / (1 - expected), 4)


def report(conn: Any) -> dict[str, Any]:
    """Queue, judgements, judges, and agreement: Cohen's kappa over every (query, document) two judges graded
    (pairs of judges pooled; each judge's latest grade, skips left out)."""
    latest = {key: grade for key, grade in latest_grades(conn).items() if grade is not None}
    by_item: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for (judge, query, doc), grade in latest.items():
        by_item[(query, doc)][judge] = grade
    pairs = []
    for grades in by_item.values():
        judges = sorted(grades)
        pairs.extend((grades[a], grades[b]) for i, a in enumerate(judges) for b in judges[i + 1:])
    queued = conn.execute("SELECT count(*) FROM embedtune_judging_queries").fetchone()[0]
    return {"queued_queries": queued, "judged_queries": len({q for q, _ in by_item}),
            "judgements": len(latest), "judges": len({j for j, _, _ in latest}),
            "doubly_judged": len(pairs), "cohen_kappa": cohen_kappa(pairs),
            "grades": {GRADES[g]: n for g, n in sorted(Counter(latest.values()).items(), reverse=True)}}


EXPORT_FILES = ("queries.jsonl", "qrels/test.tsv", "qrels/train.tsv")


def export_qrels(conn: Any, output: Path, *, test_queries: int, overwrite: bool = False) -> dict[str, int]:
    """Write the judged queries as BEIR files into ``output`` (typically the data directory, beside
    ``corpus.jsonl``): ``queries.jsonl`` and graded qrels, the first ``test_queries`` judged queries (in queue
    order) in ``qrels/test.tsv``, the rest in ``qrels/train.tsv``. A (query, document) grade is the mean of its
    judges' latest grades, rounded down (two judges at 2 and 1: 1).

    Nothing else in ``output`` is touched. An existing ``queries.jsonl`` or qrels file is refused unless
    ``overwrite`` (it may hold other queries: merging them is the team's decision, not the exporter's); the files
    are built in a temporary directory first, so a failed export leaves the old ones as they were."""
    import tempfile

    from embedtune.io import write_jsonl

    if isinstance(test_queries, bool) or not isinstance(test_queries, int) or test_queries < 0:
        raise JudgingError(f"the number of test queries must be a whole number >= 0, got {test_queries!r}")
    output = Path(output)
    existing = [name for name in EXPORT_FILES if (output / name).exists()]
    if existing and not overwrite:
        raise JudgingError(f"{output} already holds {', '.join(existing)}: export into another directory, or "
                           "replace them with --overwrite")
    grades: dict[tuple[str, str], list[int]] = defaultdict(list)
    for (_, query, doc), grade in latest_grades(conn).items():
        if grade is not None:
            grades[(query, doc)].append(grade)
    order = [r[0] for r in conn.execute("SELECT query_id FROM embedtune_judging_queries ORDER BY added_at, query_id")]
    judged = [q for q in order if any(key[0] == q for key in grades)]
    texts = dict(conn.execute("SELECT query_id, text FROM embedtune_judging_queries").fetchall())
    splits = {"test": set(judged[:test_queries]), "train": set(judged[test_queries:])}
    counts = {"queries": len(judged)}
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".judgements-export.", dir=output) as scratch:
        staging = Path(scratch)
        (staging / "qrels").mkdir()
        write_jsonl(staging / "queries.jsonl", ({"_id": q, "text": texts[q]} for q in judged))
        for split, members in splits.items():
            rows = sorted((q, d, sum(g) // len(g)) for (q, d), g in grades.items() if q in members)
            if rows:
                (staging / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
                    f"{q}\t{d}\t{g}\n" for q, d, g in rows), encoding="utf-8")
            counts[f"{split}_queries"], counts[f"{split}_pairs"] = len(members), len(rows)
        for name in existing:  # --overwrite: an old split this export leaves empty must not stay behind
            (output / name).unlink()
        for name in EXPORT_FILES:
            if (staging / name).exists():
                (output / name).parent.mkdir(exist_ok=True)
                os.replace(staging / name, output / name)
    return counts
