"""Shared fixtures: tiny BEIR datasets written to a temporary directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "datasets" / "scifact"


def write_beir(root: Path, corpus: list, queries: list, qrels: dict[str, list[tuple]]) -> Path:
    """Write a BEIR directory; records may be dicts (dumped as JSON) or raw strings/bytes (written as-is)."""
    root.mkdir(parents=True, exist_ok=True)

    def dump(path: Path, records: list) -> None:
        if not records:  # an input kind that is absent has no file at all
            return
        with path.open("wb") as handle:
            for record in records:
                if isinstance(record, bytes):
                    handle.write(record + b"\n")
                elif isinstance(record, str):
                    handle.write(record.encode("utf-8") + b"\n")
                else:
                    handle.write(json.dumps(record).encode("utf-8") + b"\n")

    dump(root / "corpus.jsonl", corpus)
    dump(root / "queries.jsonl", queries)
    if qrels:
        (root / "qrels").mkdir(exist_ok=True)
    for split, rows in qrels.items():
        lines = ["query-id\tcorpus-id\tscore"] + ["\t".join(str(c) for c in row) for row in rows]
        (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def small_beir(tmp_path: Path) -> Path:
    corpus = [
        {"_id": "d1", "title": "Aspirin", "text": "Aspirin reduces the risk of heart attack in adults."},
        {"_id": "d2", "title": "Statins", "text": "Statins lower cholesterol and cardiovascular events."},
        {"_id": "d3", "title": "Vitamin D", "text": "Vitamin D supplements do not prevent fractures in the elderly."},
        {"_id": "d4", "title": "Exercise", "text": "Regular exercise improves insulin sensitivity in diabetes."},
    ]
    queries = [
        {"_id": "q1", "text": "Does aspirin prevent heart attacks?"},
        {"_id": "q2", "text": "Do statins reduce cardiovascular events?"},
        {"_id": "q3", "text": "Vitamin D and fracture prevention"},
    ]
    return write_beir(tmp_path / "beir", corpus, queries, {"train": [("q1", "d1", 1), ("q2", "d2", 1)], "test": [("q3", "d3", 1)]})
