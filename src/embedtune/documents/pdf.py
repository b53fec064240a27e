"""PDF -> text, page by page with pdfplumber (markitdown's PDF dependency): each page's text outside tables as
paragraphs, each table it finds as a Markdown table, in reading order, a two-column page column by column.

markitdown's own PDF converter joins all pages and, on pages it does not take for forms, reads a table column by
column; a two-column page's lines also run across both columns in pdfplumber's plain text lines, hence the
regions below.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from embedtune.documents.convert import Converted, Section, Unconvertible, display_title, first_line

MIN_COLUMN_WORDS, MIN_COLUMN_ROWS = 40, 5  # fewer on a page (or a side): read it as one column
GUTTER_PT = 8.0  # the narrowest gap between two columns
# A gap wider than 15% of the font size separates words. pdfplumber's default, a fixed 3 pt, joined ~15% of the
# words of tightly set pages (the LaTeX team's guides: "Thesearedescribedinusrguide-historic"); 10-20% split none.
WORD_GAP = {"x_tolerance_ratio": 0.15}


def read_pdf(path: Path) -> Converted:
    """A PDF's text, one section per page that has any (page numbers kept), and its Title."""
    import pdfplumber

    sections = []
    try:
        with pdfplumber.open(path) as pdf:
            title = (pdf.metadata or {}).get("Title")
            for page in pdf.pages:
                text = pdf_page_text(page)
                if text:
                    sections.append(Section((), text, page.page_number))
                page.close()
    except Exception as exc:  # noqa: BLE001 - pdfminer raises many unrelated types for a damaged or locked file
        message = first_line(exc)
        if "password" in message.lower() or "encrypt" in type(exc).__name__.lower() + message.lower():
            raise Unconvertible(f"encrypted (password-protected) PDF: {message}") from None
        raise Unconvertible(f"corrupt or unreadable PDF: {message or type(exc).__name__}") from None
    return Converted(display_title(title if isinstance(title, str) else None, path), tuple(sections))


def pdf_page_text(page: Any) -> str:
    """A pdfplumber page as text: lines joined into paragraphs (a vertical gap wider than about a line starts a
    new one), each table found on the page as a Markdown table at its place in the reading order, and a page set
    in two columns read column by column (:func:`text_regions`), not across both."""
    tables = page.find_tables()
    rest = page
    for table in tables:
        rest = rest.outside_bbox(table.bbox)
    regions = text_regions(page)
    blocks: list[tuple[int, float, str]] = [
        (_region_of(t.bbox, regions), t.bbox[1], markdown_table(t.extract(**WORD_GAP))) for t in tables]
    for order, region in enumerate(regions):
        # whole characters only (none read twice); a region reaching past the page keeps text set off its edge
        part = rest.within_bbox(region, strict=False) if len(regions) > 1 else rest
        blocks += [(order, top, text) for top, text in _paragraphs(part.extract_text_lines(**WORD_GAP))]
    return "\n\n".join(text for *_, text in sorted(blocks, key=lambda block: block[:2]) if text).strip()


def text_regions(page: Any) -> list[tuple[float, float, float, float]]:
    """The page's text regions in reading order: the whole page, or, where it is set in two columns, its bands
    in order from the top, a full-width band (a title, an abstract) whole and a two-column band as its left
    column and then its right.

    Two columns need a gutter: a vertical strip of :data:`GUTTER_PT` in the middle 30% of the page that at most 2%
    of the words touch (a word space is 2-6 pt, so no river of spaces makes one), at least a fifth of the words
    and :data:`MIN_COLUMN_ROWS` rows on each side, and left-column rows that run up to it (a glossary's short terms
    beside their definitions do not: that is one column of two-part rows). Full-width rows are those a word
    crosses the gutter in, or whose words on either side of it are closer than half the columns' usual gap."""
    words = page.extract_words(**WORD_GAP)
    if len(words) < MIN_COLUMN_WORDS:
        return [page.bbox]
    x0, top, x1, bottom = page.bbox
    middle = (x0 + x1) / 2

    def touching(x: float) -> int:
        return sum(w["x0"] < x + GUTTER_PT / 2 and w["x1"] > x - GUTTER_PT / 2 for w in words)

    gutter = min((x0 + (x1 - x0) * (0.35 + 0.3 * i / 60) for i in range(61)),
                 key=lambda x: (touching(x), abs(x - middle)))
    rows = _rows(words)
    left_rows = [[w for w in row if w["x1"] <= gutter] for row in rows]
    right_rows = [[w for w in row if w["x0"] >= gutter] for row in rows]
    lefts, rights = sum(map(len, left_rows)), sum(map(len, right_rows))
    left_ends = sorted(gutter - max(w["x1"] for w in row) for row in left_rows if row)
    if (touching(gutter) > 0.02 * len(words) or min(lefts, rights) < 0.2 * len(words)
            or min(sum(map(bool, left_rows)), sum(map(bool, right_rows))) < MIN_COLUMN_ROWS
            or left_ends[len(left_ends) // 2] > 0.25 * (gutter - x0)):
        return [page.bbox]
    bands: list[list[float]] = []  # the full-width rows, merged where they touch
    for row in _full_width_rows(rows, gutter):
        line_top, line_bottom = min(w["top"] for w in row), max(w["bottom"] for w in row)
        if bands and line_top <= bands[-1][1] + 1:
            bands[-1][1] = max(bands[-1][1], line_bottom)
        else:
            bands.append([line_top, line_bottom])
    # the outer edges reach past the page, so that text set off its edges is read too (within_bbox, not strict)
    x0, top = min(x0, *(w["x0"] for w in words)) - 1, min(top, *(w["top"] for w in words)) - 1
    x1, bottom = max(x1, *(w["x1"] for w in words)) + 1, max(bottom, *(w["bottom"] for w in words)) + 1
    regions, y = [], top
    for band_top, band_bottom in [*bands, [bottom, bottom]]:
        if band_top > y:
            regions += [(x0, y, gutter, band_top), (gutter, y, x1, band_top)]
        if band_bottom > band_top:
            regions.append((x0, band_top, x1, band_bottom))
        y = max(y, band_bottom)
    return regions


def _rows(words: Sequence[dict]) -> list[list[dict]]:
    """``words`` in rows: pdfplumber's clustering of their tops (as ``extract_text_lines`` groups lines), which
    does not chain two columns whose baselines are offset by part of a line into one row."""
    from pdfplumber.utils import cluster_objects

    return cluster_objects(list(words), "top", 3)


def _full_width_rows(rows: Sequence[list[dict]], gutter: float) -> list[list[dict]]:
    """The rows that run across ``gutter``: a word crosses it, or the gap at it is under half the median gap of
    rows with words on both sides (a word space, not the gutter)."""
    gaps: list[float | None] = []
    for row in rows:
        lefts, rights = [w["x1"] for w in row if w["x1"] <= gutter], [w["x0"] for w in row if w["x0"] >= gutter]
        gaps.append(min(rights) - max(lefts) if lefts and rights else None)
    known = sorted(g for g in gaps if g is not None)
    usual = known[len(known) // 2] if known else 0.0
    return [row for row, gap in zip(rows, gaps)
            if any(w["x0"] < gutter < w["x1"] for w in row) or (gap is not None and gap < usual / 2)]


def _region_of(bbox: tuple[float, float, float, float], regions: Sequence[tuple[float, ...]]) -> int:
    """The region holding the centre of ``bbox`` (a table's place in the reading order)."""
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    return next((i for i, (x0, top, x1, bottom) in enumerate(regions) if x0 <= cx <= x1 and top <= cy <= bottom), 0)


def _paragraphs(lines: Sequence[dict]) -> list[tuple[float, str]]:
    paragraphs: list[tuple[float, list[str]]] = []
    previous = None
    for line in lines:
        text = " ".join(line["text"].split())
        if not text:
            continue
        height = line["bottom"] - line["top"]
        if previous is None or line["top"] - previous["bottom"] > 0.8 * max(height, 1.0):
            paragraphs.append((line["top"], []))
        paragraphs[-1][1].append(text)
        previous = line
    return [(top, _join_lines(parts)) for top, parts in paragraphs]


def _join_lines(parts: Iterable[str]) -> str:
    """Lines of one paragraph as one line; a word hyphenated across a line break is joined again."""
    joined = ""
    for part in parts:
        joined = joined[:-1] + part if joined.endswith("-") and part[:1].islower() else f"{joined} {part}".strip()
    return joined


def markdown_table(rows: Sequence[Sequence[str | None]]) -> str:
    """Rows of cells as a Markdown table (the first row as its header); empty when no cell has text."""
    cells = [[" ".join((c or "").split()).replace("|", "\\|") for c in row] for row in rows if row]
    if not any(any(row) for row in cells):
        return ""
    width = max(len(row) for row in cells)
    cells = [row + [""] * (width - len(row)) for row in cells]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + " --- |" * width]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines)
