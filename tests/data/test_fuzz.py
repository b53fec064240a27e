"""The input readers under mutation: every damaged dataset is refused with one line or accepted, never crashes.

A valid dataset of every input kind (corpus, queries, graded qrels, Q&A pairs, a CSV click log) is damaged one
way per case: random bytes (invalid UTF-8, NUL, line breaks, a cut file), a random JSON value in a field (huge
and fractional numbers, NaN, lone surrogates, control and bidi characters, 200,000-character strings, lists,
objects), a missing or unknown field, a damaged TSV or CSV cell. Each case runs what the prepare stage runs and
must either end in one ``EmbedtuneError`` line naming the file, with no output and no staging directory left,
or write a complete output that still holds the undamaged records. The cases are seeded: a failure names its
number and the damage, and reruns the same.
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
import time
from pathlib import Path

from embedtune.data.prepare import prepare_dataset, remap_negatives, write_negatives, write_prepared
from embedtune.data.sources import ClickOptions, read_sources
from embedtune.errors import EmbedtuneError
from embedtune.io import atomic_directory

CASES = 2000
SEED = 20261204

CORPUS = [{"_id": f"d{n}", "title": f"Title {n}", "text": f"Document {n} is about topic {n} and nothing else."}
          for n in range(6)]
QUERIES = [{"_id": f"q{n}", "text": f"what is topic {n}?"} for n in range(4)]
QRELS = {"train": [("q0", "d0", 1), ("q1", "d1", 2), ("q2", "d2", 1)], "test": [("q3", "d3", 1)]}
PAIRS = [{"query": "how is topic four made?", "positive": "Document 4 is about topic 4 and nothing else."},
         {"query": "tell me of topic five", "positive": "Topic five, a new document.", "negative": "Unrelated."}]
CLICKS = [{"query": "topic zero", "shown": "d5|d0", "clicked": "d0", "timestamp": "2026-05-01T10:00:00Z",
           "session": "s1"},
          {"query": "topic one", "shown": '["d1", "d4"]', "clicked": "d1", "timestamp": "1746093731",
           "session": "s2"}]

VALUES = [None, True, False, 0, -1, 7, 2**31, 2**64, 10**30, 0.5, -0.0, 1e308, float("nan"), float("inf"), "", " ",
          "\x00", "\ud800", "\udfff x", "a\tb", "a\nb", "\r", "\u202e\u2066rtl", "\u200b", "\ufeff", "é", "🙂" * 500,
          "x" * 200_000, "d0", "q0", [], ["d0"], [1, 2], {}, {"a": 1}, "[]", "[\"d0\"", "NaN", "1e400", "-5"]
CELLS = ["", " ", "-1", "0", "1", "1.0", "0.7", "1e400", "inf", "nan", "0x10", "２", "99999999999999999999", "abc",
         "\x00", "d9", "q9", "d0\td1", "\ud800", "x" * 5000]
FILES = ["corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv", "pairs.jsonl", "clicks.csv"]


def write_dataset(root: Path) -> None:
    (root / "qrels").mkdir(parents=True)
    for name, records in (("corpus.jsonl", CORPUS), ("queries.jsonl", QUERIES), ("pairs.jsonl", PAIRS)):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    for split, rows in QRELS.items():
        (root / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows), encoding="utf-8")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CLICKS[0]))
    writer.writeheader()
    writer.writerows(CLICKS)
    (root / "clicks.csv").write_text(buffer.getvalue(), encoding="utf-8")


def _bytes_damage(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    at = rng.randrange(len(data) + 1)
    kind = rng.choice(["insert", "replace", "delete", "newline", "cut", "duplicate line", "nul"])
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    if kind == "insert":
        return data[:at] + junk + data[at:], f"insert {junk!r} at byte {at}"
    if kind == "replace":
        return data[:at] + junk + data[at + len(junk):], f"replace bytes at {at} with {junk!r}"
    if kind == "delete":
        return data[:at] + data[at + rng.randint(1, 8):], f"delete bytes at {at}"
    if kind == "newline":
        return data[:at] + b"\n" + data[at:], f"line break at byte {at}"
    if kind == "nul":
        return data[:at] + b"\x00" + data[at:], f"NUL at byte {at}"
    if kind == "cut":
        return data[:at], f"file cut at byte {at}"
    lines = data.split(b"\n")
    line = rng.randrange(len(lines))
    return b"\n".join(lines[:line + 1] + lines[line:]), f"line {line + 1} twice"


def _json_damage(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    lines = data.decode("utf-8").splitlines()
    line = rng.randrange(len(lines))
    record = json.loads(lines[line])
    field = rng.choice([*record, "_id", "text", "title", "query", "positive", "unknown"])
    if rng.random() < 0.15:
        record.pop(field, None)
        change = f"line {line + 1}: drop {field!r}"
    else:
        value = rng.choice(VALUES)
        record[field] = value
        change = f"line {line + 1}: {field!r} = {str(value)[:40]!r}"
    lines[line] = json.dumps(record)  # NaN and infinities as Python's json writes them
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"), change


def _table_damage(rng: random.Random, data: bytes, delimiter: str) -> tuple[bytes, str]:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8")), delimiter=delimiter))
    row = rng.randrange(len(rows))
    cells = rows[row]
    kind = rng.choice(["cell", "cell", "cell", "extra", "missing"])
    if kind == "extra":
        cells.append(rng.choice(CELLS))
    elif kind == "missing" and cells:
        cells.pop(rng.randrange(len(cells)))
    elif cells:
        cells[rng.randrange(len(cells))] = rng.choice(CELLS)
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8", "surrogatepass"), f"row {row + 1}: {kind} -> {cells!r}"[:200]


def damage(rng: random.Random, root: Path) -> str:
    """Damage one file of the dataset at ``root`` in one random way; returns what was done."""
    name = rng.choice(FILES)
    path = root / name
    data = path.read_bytes()
    if rng.random() < 0.35:
        data, change = _bytes_damage(rng, data)
    elif name.endswith(".jsonl"):
        data, change = _json_damage(rng, data)
    else:
        data, change = _table_damage(rng, data, "\t" if name.endswith(".tsv") else ",")
    path.write_bytes(data)
    return f"{name}: {change}"


def run_prepare(raw: Path, output: Path) -> set[str]:
    """What the prepare stage runs (stages/prepare.py); returns the document ids written."""
    dataset, negatives, _ = read_sources(raw, ClickOptions())
    prepared, report = prepare_dataset(dataset, near_duplicate_threshold=0.9, seed=42)
    negatives = remap_negatives(negatives, report, prepared)
    with atomic_directory(output) as staging:
        write_prepared(staging, prepared, report)
        write_negatives(staging / "negatives.tsv", negatives)
    written = (output / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    return {json.loads(line)["_id"] for line in written} | set(report.doc_map)


def test_damaged_inputs_are_refused_in_one_line_or_accepted_never_crash(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    write_dataset(clean)
    assert run_prepare(clean, tmp_path / "clean-out") >= {d["_id"] for d in CORPUS}  # the undamaged set passes
    rng = random.Random(SEED)
    started, refused = time.perf_counter(), 0
    for case in range(CASES):
        raw, output = tmp_path / "raw", tmp_path / "out"
        shutil.rmtree(raw, ignore_errors=True)
        shutil.rmtree(output, ignore_errors=True)
        shutil.copytree(clean, raw)
        change = damage(rng, raw)
        try:
            kept = run_prepare(raw, output)
        except EmbedtuneError as exc:
            refused += 1
            message = str(exc)
            assert "\n" not in message and message.strip(), f"case {case} ({change}): {message!r}"
            assert not output.exists(), f"case {case} ({change}): output written although refused"
        except Exception as exc:  # a traceback for the user: the defect this test exists for
            raise AssertionError(f"case {case} ({change}): {type(exc).__name__}: {exc}"[:2000]) from exc
        else:
            damaged = change.split(":", 1)[0]
            if damaged != "corpus.jsonl":  # other files do not touch the documents: all of them are there
                assert kept >= {d["_id"] for d in CORPUS}, f"case {case} ({change}): documents lost"
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")], f"case {case}: staging left"
    seconds = time.perf_counter() - started
    assert 0 < refused < CASES  # both outcomes happen: the damage is neither always fatal nor always harmless
    print(f"{CASES} damaged datasets: {refused} refused in one line, {CASES - refused} accepted, {seconds:.1f} s")
