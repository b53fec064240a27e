"""What a token window can read of a text, cut before tokenising so that encoding costs what the model reads.

A model reads the first ``max_seq_length`` tokens of a text (a tail view, the last ``tail_tokens``), but a fast
tokenizer truncates only after tokenising the whole text: one 20 MB document made the embed stage take ~20x the
time and ~5x the memory of the corpus without it. Cutting the text to ``CHARS_PER_TOKEN`` characters per token
read first leaves the tokens read unchanged (English averages 4-6 characters per WordPiece token, and the cut
falls on whitespace so no word is split), while bounding the work per text. ``prepare`` bounds the stored size
of a document with the same cut.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 32  # ~6x the average; only text of long unbroken runs (no whitespace) gets near it


def window_chars(tokens: int) -> int:
    """The characters that can hold ``tokens`` tokens of ordinary text (``CHARS_PER_TOKEN`` each)."""
    return tokens * CHARS_PER_TOKEN


def clip_head(text: str, limit: int) -> str:
    """The start of ``text``, at most ``limit`` characters, cut at the last whitespace inside that bound (anywhere,
    if there is none); ``text`` itself when it is not longer."""
    if len(text) <= limit:
        return text
    cut = max(text.rfind(" ", 0, limit + 1), text.rfind("\n", 0, limit + 1))
    return text[:cut] if cut > 0 else text[:limit]


def clip_tail(text: str, limit: int) -> str:
    """The end of ``text``, at most ``limit`` characters, cut after the first whitespace inside that bound
    (anywhere, if there is none); ``text`` itself when it is not longer."""
    if len(text) <= limit:
        return text
    start = len(text) - limit
    spaces = [i for i in (text.find(" ", start), text.find("\n", start)) if i >= 0]
    return text[min(spaces) + 1:] if spaces else text[start:]
