"""A second domain nobody tuned the defaults for: Python standard-library documentation, built offline.

Documents are the docstrings of ~500 public functions and classes of ~70 standard-library modules (title: the
qualified name); a query is a docstring's summary sentence reworded as a user would ask it ("how do I ...?",
"python function to ...") and judged relevant to its own docstring, from which that sentence is removed so the
match is not verbatim. Written as BEIR files with `qrels/train.tsv` only, so the `split` stage holds out 15%
of the queries itself (by query, near-duplicates kept together). The texts come from the running Python's own
modules: the domain is the same on every machine with the same Python version (3.11.7 here), and needs no
download.

    python examples/stdlib_domain.py /tmp/stdlib_domain
    dvc exp run -n stdlib -S data.source=/tmp/stdlib_domain -S data.name=stdlib

A sanity check that the default pipeline helps outside SciFact, not a benchmark of record: ~300 queries (below
the split stage's 500-pair warning) and ~45 test queries, so one run's gain is known to about ±0.03.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import random
import re
import sys
from pathlib import Path

MODULES = [
    "os", "os.path", "shutil", "json", "re", "itertools", "functools", "collections", "pathlib", "string",
    "textwrap", "datetime", "math", "statistics", "random", "subprocess", "tempfile", "glob", "fnmatch", "csv",
    "base64", "hashlib", "zipfile", "tarfile", "gzip", "heapq", "bisect", "copy", "pprint", "socket",
    "urllib.parse", "urllib.request", "email.utils", "http.client", "logging", "argparse", "threading", "queue",
    "time", "calendar", "uuid", "struct", "codecs", "io", "operator", "inspect", "typing", "dataclasses",
    "contextlib", "sqlite3", "html", "xml.etree.ElementTree", "difflib", "shlex", "platform", "locale", "decimal",
    "fractions", "enum", "abc", "weakref", "pickle", "zlib", "binascii", "secrets", "ipaddress", "mimetypes",
    "getpass", "traceback", "warnings", "unicodedata", "sched", "signal",
]
TEMPLATES = ["how do I {s}?", "python function to {s}", "which stdlib call will {s}", "{s}", "way to {s} in python"]
SIGNATURE = re.compile(r"^[\w.]+\(.*\)\s*(->.*)?$")


def docstrings(modules: list[str]) -> dict[str, str]:
    """Qualified name -> docstring, for public functions and classes defined in (or under) each module."""
    found: dict[str, str] = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                continue
            if not str(getattr(obj, "__module__", "") or "").startswith(name.split(".")[0]):
                continue  # re-exported from another package
            doc = inspect.getdoc(obj)
            if doc and len(doc) >= 60:
                found[f"{name}.{attr}"] = doc
    return found


def summary_sentence(doc: str) -> str | None:
    """The first sentence of at least four words, skipping signature lines."""
    for paragraph in (p.strip() for p in doc.split("\n\n")):
        if not paragraph or SIGNATURE.match(paragraph.replace("\n", " ")):
            continue
        sentence = re.split(r"(?<=[.!?])\s", " ".join(paragraph.split()))[0]
        if len(sentence.split()) >= 4:
            return sentence
    return None


def build(out: Path, documents: int = 500, queries: int = 300, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    docs = docstrings(MODULES)
    names = sorted(docs)
    rng.shuffle(names)
    names = sorted(names[:documents])
    asked = set(rng.sample(names, min(queries, len(names))))
    corpus, query_rows, qrels = [], [], []
    for i, name in enumerate(names):
        doc_id, body, summary = f"d{i:04d}", " ".join(docs[name].split()), summary_sentence(docs[name])
        if summary and len(body) - len(summary) > 80:
            body = body.replace(summary, "", 1).strip()  # the answer must not contain the question verbatim
        corpus.append({"_id": doc_id, "title": name, "text": body[:2000]})
        if summary and name in asked:
            text = summary.rstrip(".").strip()
            query_id = f"q{len(query_rows):04d}"
            query_rows.append({"_id": query_id, "text": rng.choice(TEMPLATES).format(s=text[0].lower() + text[1:])})
            qrels.append((query_id, doc_id))
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus), encoding="utf-8")
    (out / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in query_rows), encoding="utf-8")
    (out / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels), encoding="utf-8")
    return {"documents": len(corpus), "queries": len(query_rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="directory to write the BEIR files into")
    parser.add_argument("--documents", type=int, default=500)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    counts = build(args.output, args.documents, args.queries)
    print(json.dumps({**counts, "python": sys.version.split()[0], "output": str(args.output)}))


if __name__ == "__main__":
    main()
