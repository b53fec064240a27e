"""Sections -> chunks the model reads whole: a token budget in the model's own tokens, cut at semantic boundaries.

A dense model reads ``max_seq_length`` tokens of ``title + " " + text`` (two of them special tokens) and ignores
the rest, so each chunk's text gets what its title leaves: ``max_tokens - 2 - tokens(title)``, at least half of
``max_tokens``. semchunk cuts at the largest boundary that fits (blank lines, then lines, sentences, clauses,
words), so a chunk ends at a paragraph or sentence where it can. A chunk's id is its file's path relative to the
documents folder plus its place: ``policies/leave.pdf#p3-2`` (page 3, second chunk of that page) for a paged
file, ``handbook/setup.md#s4-1`` (fourth section, first chunk) otherwise; its title is the document title and
the heading path, ``Leave policy › Annual leave``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from embedtune.documents.convert import Converted

SPECIAL_TOKENS = 2  # [CLS] and [SEP] (or <s> and </s>) around every sequence the model reads
TITLE_SEPARATOR = " › "


@dataclass(frozen=True)
class Chunk:
    id: str
    title: str
    text: str
    source: str
    page: int | None
    tokens: int


class Chunker:
    """Cut converted files into chunks of at most ``max_tokens`` model tokens (title included), consecutive
    chunks sharing ``overlap_tokens`` (0: none)."""

    def __init__(self, token_count: Callable[[str], int], max_tokens: int, overlap_tokens: int = 0) -> None:
        if max_tokens < 16:
            raise ValueError(f"a chunk budget of {max_tokens} tokens is too small to hold a sentence")
        if not 0 <= overlap_tokens < max_tokens // 2:
            raise ValueError(f"overlap_tokens must be from 0 to {max_tokens // 2 - 1}, got {overlap_tokens}")
        self.max_tokens, self.overlap_tokens = max_tokens, overlap_tokens
        self.count = lru_cache(maxsize=65536)(token_count)

    @classmethod
    def for_tokenizer(cls, tokenizer, max_tokens: int, overlap_tokens: int = 0) -> Chunker:
        """Count in a Hugging Face tokenizer's tokens, without its special tokens (the budget allows for them).
        Whole sections are counted before they are cut, so the tokenizer's warning about sequences longer than the
        model reads ("will result in indexing errors") is switched off: nothing this long reaches the model."""
        return cls(lambda text: len(tokenizer.encode(text, add_special_tokens=False, verbose=False)), max_tokens,
                   overlap_tokens)

    def budget(self, title: str) -> int:
        """Tokens left for a chunk's text under ``title``."""
        left = self.max_tokens - SPECIAL_TOKENS - (self.count(title) + 1 if title else 0)
        return max(left, self.max_tokens // 2)

    def pieces(self, text: str, budget: int) -> list[str]:
        import semchunk

        overlap = self.overlap_tokens if self.overlap_tokens and self.count(text) > budget else None
        return [p.strip() for p in semchunk.chunk(text, budget, self.count, overlap=overlap) if p.strip()]

    def chunk(self, source: str, converted: Converted) -> list[Chunk]:
        """``converted`` (the file at ``source``, relative to the documents folder) as chunks, in reading order."""
        chunks: list[Chunk] = []
        per_place: dict[str, int] = {}
        for number, section in enumerate(converted.sections, start=1):
            headings = [h for h in section.headings if h != converted.title]
            title = TITLE_SEPARATOR.join([converted.title, *headings])
            place = f"p{section.page}" if section.page is not None else f"s{number}"
            for piece in self.pieces(section.text, self.budget(title)):
                per_place[place] = per_place.get(place, 0) + 1
                chunks.append(Chunk(f"{source}#{place}-{per_place[place]}", title, piece, source, section.page,
                                    self.count(piece)))
        return chunks
