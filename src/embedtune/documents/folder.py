"""A folder of files (any depth) -> corpus documents, one per chunk, converting only what changed.

Each file's conversion is cached under its content hash (and :data:`CONVERTER_VERSION`), so adding one file to
a folder of thousands converts one file, and a renamed file converts none; chunking, which depends on the model's
tokenizer and the budget, is redone every time (it is fast). A file that gives no text is skipped with its
reason (listed in ``metrics/data.json``), or is an error with ``strict``. Hidden files (``.name``) and folders
are ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedtune.data.beir import Document
from embedtune.documents.chunk import Chunker
from embedtune.documents.convert import CONVERTER_VERSION, Converted, Unconvertible, convert_file, kind_of
from embedtune.errors import InputError
from embedtune.io import write_json_atomic

log = logging.getLogger("embedtune")
FOLDER = "documents"


@dataclass(frozen=True)
class DocumentOptions:
    """``prepare.documents``: what a file may be and how it is cut (see conf/config.yaml)."""

    strict: bool = False
    max_file_mb: float = 50.0
    chunk_tokens: int | None = None  # None: the model's max_seq_length
    overlap_tokens: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> DocumentOptions:
        return cls(**(params or {}))


@dataclass
class FolderReport:
    """What the folder gave: files seen, conversions run now (failed ones too) or taken from the cache, chunks, and
    every file skipped with its reason."""

    files: int = 0
    converted: int = 0
    from_cache: int = 0
    chunks: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    by_type: dict[str, int] = field(default_factory=dict)
    convert_seconds: float = 0.0
    chunk_tokens: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "converted": self.converted, "from_cache": self.from_cache,
                "chunks": self.chunks, "skipped": len(self.skipped), "skipped_files": self.skipped,
                "by_type": self.by_type, "convert_seconds": round(self.convert_seconds, 2),
                "chunk_tokens": self.chunk_tokens}


def document_files(folder: Path) -> list[Path]:
    """The files a documents folder holds, in path order: any depth, hidden files and folders left out."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _cached_conversion(path: Path, cache_dir: Path | None, report: FolderReport) -> Converted:
    """Convert ``path``, or read its earlier conversion from ``cache_dir`` (keyed by content hash)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    entry = cache_dir / f"{digest}-v{CONVERTER_VERSION}.json" if cache_dir else None
    if entry is not None and entry.is_file():
        record = json.loads(entry.read_text(encoding="utf-8"))
        report.from_cache += 1
        if "unconvertible" in record:
            raise Unconvertible(record["unconvertible"])
        return Converted.from_json(record)
    started = time.perf_counter()
    try:
        converted = convert_file(path)
    except Unconvertible as exc:
        if entry is not None:  # a broken file stays broken until its bytes change: do not retry it every run
            write_json_atomic(entry, {"unconvertible": exc.reason})
        raise
    finally:
        report.convert_seconds += time.perf_counter() - started
        report.converted += 1
    if entry is not None:
        write_json_atomic(entry, converted.to_json())
    return converted


def _skip(report: FolderReport, relative: str, reason: str, strict: bool, path: Path) -> None:
    if strict:
        raise InputError(f"cannot be used: {reason} (prepare.documents.strict is on; set it off to skip such files)",
                         path=path)
    report.skipped.append({"path": relative, "reason": reason})
    log.warning("skipped %s: %s", relative, reason)


def read_documents(folder: Path, chunker: Chunker, options: DocumentOptions,
                   cache_dir: Path | None = None) -> tuple[dict[str, Document], FolderReport]:
    """Every usable file under ``folder`` as chunks (corpus documents keyed by chunk id), and the report."""
    from tqdm.auto import tqdm

    report = FolderReport()
    documents: dict[str, Document] = {}
    lengths: list[int] = []
    files = document_files(folder)
    for path in tqdm(files, desc="Converting", unit="file", disable=len(files) < 20):
        relative = path.relative_to(folder).as_posix()
        report.files += 1
        kind = kind_of(path) or "unsupported"
        report.by_type[kind] = report.by_type.get(kind, 0) + 1
        size_mb = path.stat().st_size / 2**20
        if kind_of(path) is None:
            _skip(report, relative, f"unsupported type {path.suffix or '(no extension)'!r}", options.strict, path)
            continue
        if size_mb > options.max_file_mb:
            _skip(report, relative, f"{size_mb:.1f} MB is over prepare.documents.max_file_mb={options.max_file_mb:g}",
                  options.strict, path)
            continue
        try:
            converted = _cached_conversion(path, cache_dir, report)
        except Unconvertible as exc:
            _skip(report, relative, exc.reason, options.strict, path)
            continue
        for chunk in chunker.chunk(relative, converted):
            documents[chunk.id] = Document(chunk.id, chunk.title, chunk.text,
                                           metadata={"source": chunk.source, "page": chunk.page})
            lengths.append(chunk.tokens)
    report.chunks = len(documents)
    if lengths:
        ordered = sorted(lengths)
        report.chunk_tokens = {"mean": round(sum(lengths) / len(lengths), 1), "median": ordered[len(ordered) // 2],
                               "max": ordered[-1], "budget": chunker.max_tokens}
    if not documents:
        raise InputError(f"no file gave any text ({report.files} file(s), {len(report.skipped)} skipped: see the "
                         "warnings above)", path=folder)
    return documents, report


def chunker_for_model(model_spec: str, max_seq_length: int, options: DocumentOptions) -> Chunker:
    """A chunker counting in the base model's tokenizer, budget ``chunk_tokens`` (default: what the model reads)."""
    from transformers import AutoTokenizer

    from embedtune.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path(model_spec)))
    budget = options.chunk_tokens or max_seq_length
    if budget > max_seq_length:
        raise InputError(f"prepare.documents.chunk_tokens={budget} is more than the model reads "
                         f"(model.max_seq_length={max_seq_length}): the rest of each chunk would be ignored")
    return Chunker.for_tokenizer(tokenizer, budget, options.overlap_tokens)
