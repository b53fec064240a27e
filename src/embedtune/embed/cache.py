"""Vectors kept by the text they encode, so a corpus that gains or changes a few documents re-encodes only those.

One cache directory per encoder (``cache_key``: the model's weights, the precision, the window, the document
prompt and the code and libraries that encode), holding ``keys.txt`` (the sha256 of each encoded text, one a line)
and ``vectors.f32`` (their vectors, rows of float32 in the same order). Both files are only appended to: vectors
first, their keys after, so a process killed mid-write leaves at most vectors without keys, which are ignored. The
caches of the ``KEEP`` encoders used last are kept; older ones are removed.

A vector read from the cache is the one computed when its text was first encoded. Encoding a text again in a batch
with other neighbours rounds it differently (the padding changes the arithmetic's shape): any change to a corpus
moves the vectors of documents it did not touch by that much without a cache (SciFact in bf16: up to 7e-4 in a
component, cosine >= 0.99999), while with one they stay exactly as they were. ``encode.cache=false`` encodes
everything afresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np

KEEP = 4  # encoders whose caches are kept (the base model's and a few fine-tuned ones')
FORMAT = 1  # raised whenever the way a text is turned into a vector changes


def cache_key(model_fingerprint: str, *, precision: str, max_seq_length: int, prompt: str) -> str:
    """The key of one encoder's cache: everything a text's vector depends on besides the text."""
    parts = {"model": model_fingerprint, "precision": precision, "max_seq_length": max_seq_length,
             "prompt": prompt, "format": FORMAT,
             "versions": {name: version(name) for name in ("torch", "transformers", "sentence-transformers")}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class VectorCache:
    """The vectors of one encoder (``key``) under ``root``, ``dim`` wide."""

    def __init__(self, root: Path, key: str, dim: int) -> None:
        self.root, self.path, self.dim = Path(root), Path(root) / key, dim
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "meta.json").write_text(json.dumps({"dim": dim}) + "\n", encoding="utf-8")  # also: last used
        self._rows = self._read()
        _prune(self.root, keep=KEEP)

    def __len__(self) -> int:
        return len(self._rows)

    def _read(self) -> dict[str, int]:
        keys_file, vectors_file = self.path / "keys.txt", self.path / "vectors.f32"
        if not keys_file.is_file() or not vectors_file.is_file():
            return {}
        complete = vectors_file.stat().st_size // (4 * self.dim)
        keys = [line for line in keys_file.read_text(encoding="ascii").split("\n") if len(line) == 64]
        return {key: row for row, key in enumerate(keys[:complete])}

    def lookup(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """Vectors for ``texts`` (rows of the cached ones filled, the others zero) and the indices not cached."""
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        keys = [text_key(t) for t in texts]
        found = [(i, self._rows[k]) for i, k in enumerate(keys) if k in self._rows]
        if found:
            rows = (self.path / "vectors.f32").stat().st_size // (4 * self.dim)  # whole rows only
            stored = np.memmap(self.path / "vectors.f32", dtype=np.float32, mode="r", shape=(rows, self.dim))
            vectors[[i for i, _ in found]] = stored[[row for _, row in found]]
        hits = {i for i, _ in found}
        return vectors, [i for i in range(len(texts)) if i not in hits]

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Append ``texts``' vectors (those not cached yet): the vectors first, then their keys."""
        new = {}
        for text, vector in zip(texts, np.asarray(vectors, dtype=np.float32)):
            key = text_key(text)
            if key not in self._rows and key not in new:
                new[key] = vector
        if not new:
            return
        with self._locked():
            self._rows = self._read()  # another process may have appended since
            new = {k: v for k, v in new.items() if k not in self._rows}
            self._repair()
            start = len(self._rows)
            with (self.path / "vectors.f32").open("ab") as handle:
                handle.write(np.ascontiguousarray(np.stack(list(new.values())), dtype=np.float32).tobytes())
                handle.flush()
                os.fsync(handle.fileno())
            with (self.path / "keys.txt").open("a", encoding="ascii") as handle:
                handle.write("".join(f"{k}\n" for k in new))
            self._rows.update({k: start + n for n, k in enumerate(new)})

    def _repair(self) -> None:
        """Cut what a killed write left: vectors without keys, a half-written key line."""
        keys_file, vectors_file = self.path / "keys.txt", self.path / "vectors.f32"
        ordered = sorted(self._rows, key=self._rows.__getitem__)
        text = "".join(f"{k}\n" for k in ordered)
        if not keys_file.is_file() or keys_file.read_text(encoding="ascii") != text:
            keys_file.with_suffix(".tmp").write_text(text, encoding="ascii")
            keys_file.with_suffix(".tmp").replace(keys_file)
        size = len(ordered) * 4 * self.dim
        if not vectors_file.is_file() or vectors_file.stat().st_size != size:
            with vectors_file.open("ab") as handle:
                handle.truncate(size)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.path / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _prune(root: Path, keep: int) -> None:
    """Remove all but the ``keep`` caches used last (by their ``meta.json``'s time)."""
    caches = sorted((p for p in root.iterdir() if (p / "meta.json").is_file()),
                    key=lambda p: (p / "meta.json").stat().st_mtime, reverse=True)
    for stale in caches[keep:]:
        shutil.rmtree(stale, ignore_errors=True)
