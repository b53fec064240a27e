"""One file -> its text as sections (heading path, page, text), tables kept as Markdown tables.

HTML goes through markitdown's HTML converter (headings as ``#``, tables as Markdown tables) after
:func:`page_content` keeps only what the page says: its ``<main>`` where it has one, without navigation, sidebars,
footers, forms, scripts, permalink marks and link targets (a link becomes its text; a URL is noise to a text
embedding and costs tokens of the chunk's budget). DOCX goes through mammoth (what markitdown itself uses) and the
same path, so Word headings become the heading path. Markdown files lose link targets and HTML comments the same
way. markitdown's own DOCX pre-processing fails on every file with the beautifulsoup4 and
lxml this project installs ("Could not find the body element"), and its PDF converter joins all pages and, on
pages it does not take for forms, reads a table column by column; PDFs are therefore read page by page with
pdfplumber (markitdown's PDF dependency), in :mod:`embedtune.documents.pdf`. Markdown and plain text are read as they are.

A file that cannot give text raises :class:`Unconvertible` with a reason a person can act on (corrupt,
encrypted, no text layer, not UTF-8); the folder reader counts and lists those instead of failing.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

# Bump when conversion output changes for the same file: cached conversions of the older version are ignored.
CONVERTER_VERSION = "3"
KINDS = {".pdf": "pdf", ".docx": "docx", ".html": "html", ".htm": "html", ".md": "markdown",
         ".markdown": "markdown", ".txt": "text"}
OCR_HINT = "no text layer (a scanned PDF?): it needs OCR first, e.g. `ocrmypdf in.pdf out.pdf`"
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
# Page furniture: what every page of a site repeats around its own text (HTML tags and ARIA roles).
# (Not <form>: ASP.NET and SharePoint pages wrap their whole body in one; only its controls go.)
FURNITURE_TAGS = ("nav", "aside", "footer", "script", "style", "noscript", "template", "button", "input", "select",
                  "textarea")
FURNITURE_ROLES = ("navigation", "search", "banner", "contentinfo", "complementary")
MD_TARGET = r"\((?:[^()]|\([^()]*\))*\)"  # (url "title"), a URL with one level of parentheses inside too
MD_IMAGE = re.compile(r"!\[([^\]]*)\]" + MD_TARGET)
MD_LINK = re.compile(r"\[([^\]]+)\](?:" + MD_TARGET + r"|\[[^\]]*\])")
MD_CODE_SPAN = re.compile(r"(`+)(?:.|\n)*?(?<!`)\1(?!`)")
MD_LINK_DEFINITION = re.compile(r"^\s{0,3}\[[^\]^][^\]]*\]:\s*\S+.*$")  # not a footnote's [^1]: text
HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
MAIN_SHARE = 0.2  # <main> holding less than this share of the body's text (after furniture) is not the content


class Unconvertible(Exception):
    """This file gives no text; ``reason`` says why and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path (outermost first) on one page (PDF) or none."""

    headings: tuple[str, ...]
    text: str
    page: int | None = None


@dataclass(frozen=True)
class Converted:
    """A file's title and its non-empty sections in reading order."""

    title: str
    sections: tuple[Section, ...]

    @property
    def characters(self) -> int:
        return sum(len(s.text) for s in self.sections)

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title,
                "sections": [{"headings": list(s.headings), "text": s.text, "page": s.page} for s in self.sections]}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Converted:
        return cls(record["title"], tuple(Section(tuple(s["headings"]), s["text"], s["page"])
                                          for s in record["sections"]))


def kind_of(path: Path) -> str | None:
    """The converter a file name calls for, or None for an unsupported type."""
    return KINDS.get(path.suffix.lower())


def convert_file(path: Path) -> Converted:
    """Convert one supported file (see :data:`KINDS`); raise :class:`Unconvertible` when it gives no text."""
    kind = kind_of(path)
    if kind is None:
        raise Unconvertible(f"unsupported type {path.suffix or '(no extension)'!r} "
                            f"(supported: {', '.join(sorted(KINDS))})")
    from embedtune.documents.pdf import read_pdf  # here, not at the top: pdf.py builds on this module's types

    converted = {"pdf": read_pdf, "docx": _docx, "html": _html, "markdown": _markdown, "text": _text}[kind](path)
    if not converted.sections:
        raise Unconvertible(OCR_HINT if kind == "pdf" else "holds no text")
    return converted


# ---- Markdown (also what HTML and DOCX become) -------------------------------------------------------------------

def markdown_sections(markdown: str, page: int | None = None) -> tuple[list[Section], str | None]:
    """Split Markdown at ATX headings (not inside code fences) into sections with their heading path; also
    return the first level-1 heading (a title when the file has no other)."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    first_h1, fenced = None, False

    def close() -> None:
        text = "\n".join(lines).strip()
        if text:
            sections.append(Section(tuple(h for _, h in path), text, page))
        lines.clear()

    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else HEADING.match(line)
        if heading is None:
            lines.append(line)
            continue
        close()
        level, title = len(heading.group(1)), _plain(heading.group(2))
        first_h1 = first_h1 or (title if level == 1 else None)
        path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, title)]
    close()
    return sections, first_h1


def _plain(heading: str) -> str:
    """A heading without Markdown emphasis or link syntax."""
    heading = MD_LINK.sub(r"\1", heading)
    return re.sub(r"[*_`]+", "", heading).strip()


def _front_matter(markdown: str) -> tuple[str | None, str]:
    """A leading YAML front matter block's ``title:`` and the text after the block."""
    if not markdown.startswith("---\n"):
        return None, markdown
    end = markdown.find("\n---", 4)
    if end < 0:
        return None, markdown
    title = next((line.split(":", 1)[1].strip().strip("\"'") for line in markdown[4:end].splitlines()
                  if line.lower().startswith("title:")), None)
    return title or None, markdown[end + 4:].lstrip("-\n")


def _from_markdown(markdown: str, path: Path, title: str | None = None) -> Converted:
    front_title, markdown = _front_matter(markdown)
    sections, first_h1 = markdown_sections(markdown)
    return Converted(display_title(title or front_title or first_h1, path), tuple(sections))


def display_title(candidate: str | None, path: Path) -> str:
    """A file's title: ``candidate`` with its whitespace collapsed, else the file name in words."""
    candidate = " ".join((candidate or "").split())
    return candidate or path.stem.replace("_", " ").replace("-", " ")


def _read_utf8(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unconvertible(f"not UTF-8 text (byte {exc.start}): save it as UTF-8") from None


def _markdown(path: Path) -> Converted:
    return _from_markdown(plain_links(_read_utf8(path)), path)


def plain_links(markdown: str) -> str:
    """Markdown with links as their text, images as their alt text, and without link reference definitions and
    HTML comments; code fences and code spans are left as they are."""
    out, fenced = [], False
    for block in re.split(r"(^\s*(?:```|~~~).*$)", markdown, flags=re.MULTILINE):
        if FENCE.match(block):
            fenced = not fenced
            out.append(block)
        elif fenced:
            out.append(block)
        else:
            out.append(_plain_prose(block))
    return "".join(out)


def _plain_prose(block: str) -> str:
    """:func:`plain_links` on text outside code fences. Code spans are set aside first (as numbered NUL-marked
    placeholders, which no text holds) so that nothing in them changes, while a link whose text is code
    (``[`fs.open()`][]``) still becomes its text."""
    spans: list[str] = []

    def hold(match: re.Match) -> str:
        spans.append(match.group(0))
        return f"\0{len(spans) - 1}\0"

    text = MD_CODE_SPAN.sub(hold, block)
    text = MD_LINK.sub(r"\1", MD_IMAGE.sub(r"\1", HTML_COMMENT.sub("", text)))
    text = "\n".join(line for line in text.split("\n") if not MD_LINK_DEFINITION.match(line))
    text = re.sub(r"\0(\d+)\0", lambda m: spans[int(m.group(1))], text)
    return re.sub(r"\n{3,}", "\n\n", text)


def _text(path: Path) -> Converted:
    text = _read_utf8(path).strip()
    return Converted(display_title(None, path), (Section((), text),) if text else ())


# ---- HTML and DOCX, through markitdown's HTML converter -----------------------------------------------------------

def page_content(html: str | bytes) -> tuple[str, str | None]:
    """An HTML page's own content, as HTML, and its ``<title>``: inside ``<main>`` (or ``role=main``) when the
    page marks one, without page furniture (:data:`FURNITURE_TAGS`, :data:`FURNITURE_ROLES`), permalink marks
    (``a.headerlink``, Sphinx's and MkDocs' pilcrows) or link targets (a link keeps its text, an image its alt)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    body = soup.body or soup
    main = soup.find("main") or soup.find(attrs={"role": "main"})
    _drop_furniture(body)
    # a <main> left nearly empty (filled in by scripts, or the text sits beside it) is no better than the body
    root = main if main is not None and not main.decomposed and len(main.get_text(strip=True)) >= \
        MAIN_SHARE * len(body.get_text(strip=True)) else body
    for link in root.find_all("a"):
        link.unwrap()
    for image in root.find_all("img"):
        alt = (image.get("alt") or "").strip()
        if alt:
            image.replace_with(alt)
        else:
            image.decompose()
    return str(root), title or None


def _drop_furniture(root: Any) -> None:
    for element in [*root.find_all(FURNITURE_TAGS), *root.find_all(attrs={"role": list(FURNITURE_ROLES)}),
                    *root.find_all("a", class_="headerlink")]:
        if not element.decomposed:  # not inside one already dropped
            element.decompose()


def _html_to_markdown(html: str | bytes) -> tuple[str, str | None]:
    from markitdown.converters import HtmlConverter

    content, title = page_content(html)
    return HtmlConverter().convert_string(content).markdown, title


def _html(path: Path) -> Converted:
    try:  # bytes: BeautifulSoup finds the page's encoding (meta charset, BOM, or a guess)
        markdown, title = _html_to_markdown(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - the parsers raise errors of every kind on broken input
        raise Unconvertible(f"cannot read HTML: {first_line(exc)}") from None
    return _from_markdown(markdown, path, title)


def _docx(path: Path) -> Converted:
    import mammoth

    try:
        with path.open("rb") as handle:
            html = mammoth.convert_to_html(handle).value
        title = _docx_title(path)
    except (zipfile.BadZipFile, KeyError, ValueError, ElementTree.ParseError) as exc:
        raise Unconvertible(f"corrupt or not a DOCX file: {first_line(exc)}") from None
    markdown, _ = _html_to_markdown(html)
    return _from_markdown(_promote_header_rows(markdown), path, title)


EMPTY_ROW = re.compile(r"^\|(\s*\|)+\s*$")
SEPARATOR_ROW = re.compile(r"^\|(\s*:?-{3,}:?\s*\|)+\s*$")


def _promote_header_rows(markdown: str) -> str:
    """Word tables have no header cells, so the Markdown tables they become start with an empty header row: make
    the first real row the header instead."""
    lines = markdown.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if (i + 2 < len(lines) and EMPTY_ROW.match(lines[i]) and SEPARATOR_ROW.match(lines[i + 1])
                and lines[i + 2].startswith("|")):
            out += [lines[i + 2], lines[i + 1]]
            i += 3
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def _docx_title(path: Path) -> str | None:
    """The title in a DOCX file's core properties (File > Properties in Word), if set."""
    with zipfile.ZipFile(path) as archive:
        if "docProps/core.xml" not in archive.namelist():
            return None
        found = ElementTree.fromstring(archive.read("docProps/core.xml")).find(DC_TITLE)
    return found.text if found is not None and found.text and found.text.strip() else None


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (a reason to list, not a traceback)."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
