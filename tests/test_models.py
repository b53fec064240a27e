"""Model locations (a model zip split across installed packages, ``split-zip:<name>``) and fingerprints."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from embedtune.errors import ConfigError
from embedtune.models import find_split_zip_parts, model_fingerprint, unpack_split_zip

MODEL_FILES = {
    "tiny-model/modules.json": json.dumps([{"idx": 0, "name": "0", "path": "", "type": "x"}]),
    "tiny-model/config.json": json.dumps({"model_type": "bert"}),
    "tiny-model/1_Pooling/config.json": json.dumps({"pooling_mode_mean_tokens": True}),
}


def zip_bytes(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def install_parts(site: Path, name: str, data: bytes, parts: int, skip: tuple[int, ...] = ()) -> None:
    """Lay out ``parts`` fake installed distributions, each holding one ``<name>.zip.NNN`` (as the PyPI parts do)."""
    size = -(-len(data) // parts)
    for number in range(1, parts + 1):
        if number in skip:
            continue
        package = f"{name}-pypi-part_{number:03d}"
        relative = f"{package}/input/{name}.zip.{number:03d}"
        (site / relative).parent.mkdir(parents=True)
        (site / relative).write_bytes(data[(number - 1) * size : number * size])
        info = site / f"{name.replace('-', '_')}_pypi_part_{number:03d}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-pypi-part-{number:03d}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{relative},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


def test_parts_are_joined_unpacked_once_and_the_model_directory_is_found(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    install_parts(site, "tiny-model", zip_bytes(MODEL_FILES), parts=3)
    assert [p.name for p in find_split_zip_parts("tiny-model", [str(site)])] == [
        "tiny-model.zip.001", "tiny-model.zip.002", "tiny-model.zip.003"]
    model = unpack_split_zip("tiny-model", [str(site)], cache)
    assert model.name == "tiny-model" and (model / "modules.json").is_file()
    assert json.loads((model / "1_Pooling" / "config.json").read_text()) == {"pooling_mode_mean_tokens": True}
    (model / "marker").write_text("kept")  # a second call must reuse the unpacked copy, not unpack again
    assert unpack_split_zip("tiny-model", [str(site)], cache) == model
    assert (model / "marker").read_text() == "kept"
    assert [p.name for p in cache.iterdir()] == [model.parent.name]  # no temporary directory left behind


def test_a_missing_part_is_named(tmp_path: Path) -> None:
    install_parts(tmp_path, "tiny-model", zip_bytes(MODEL_FILES), parts=3, skip=(2,))
    with pytest.raises(ConfigError, match=r"part 002 of 003 is not installed"):
        find_split_zip_parts("tiny-model", [str(tmp_path)])


def test_no_installed_parts_says_how_to_install_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no installed package holds all-mpnet-base-v2.zip.001.*make setup-mpnet"):
        find_split_zip_parts("all-mpnet-base-v2", [str(tmp_path)])


def test_parts_that_are_not_a_zip_leave_nothing_in_the_cache(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    install_parts(site, "tiny-model", b"not a zip at all" * 100, parts=2)
    with pytest.raises(ConfigError, match="do not form a valid zip"):
        unpack_split_zip("tiny-model", [str(site)], cache)
    assert list(cache.iterdir()) == []


def test_a_zip_reaching_outside_its_directory_is_refused(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    install_parts(site, "tiny-model", zip_bytes(MODEL_FILES | {"../escape.txt": "x"}), parts=2)
    with pytest.raises(ConfigError, match="unsafe path '../escape.txt'"):
        unpack_split_zip("tiny-model", [str(site)], cache)
    assert not (tmp_path / "escape.txt").exists() and list(cache.iterdir()) == []


def test_model_fingerprint_follows_weights(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights-1")
    (model / "modules.json").write_text("[]")
    first = model_fingerprint(model)
    (model / "README.md").write_text("a card does not change the model")
    assert model_fingerprint(model) == first
    (model / "model.safetensors").write_bytes(b"weights-2")
    assert model_fingerprint(model) != first
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no model weights"):
        model_fingerprint(tmp_path / "empty")
