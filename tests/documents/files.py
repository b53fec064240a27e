"""Files of each kind a documents folder holds, built by the tests themselves (nothing binary is committed)."""

from __future__ import annotations

from pathlib import Path


def pdf(path: Path, pages: list[str], *, title: str | None = None, table: list[tuple[str, ...]] | None = None,
        password: str | None = None) -> Path:
    """A PDF with one page per text; ``table`` (first row the header) is drawn, with ruled cells, on the last page
    between its text and a closing sentence."""
    from fpdf import FPDF

    document = FPDF()
    document.add_font("dejavu", fname=_unicode_font())
    document.add_font("dejavu", style="B", fname=_unicode_font("DejaVuSans-Bold.ttf"))
    document.set_font("dejavu", size=11)
    if title:
        document.set_title(title)
    if password:
        document.set_encryption(owner_password=password + "-owner", user_password=password)
    for number, text in enumerate(pages, start=1):
        document.add_page()
        document.multi_cell(0, 6, text)
        if table and number == len(pages):
            with document.table() as drawn:
                for row in table:
                    cells = drawn.row()
                    for cell in row:
                        cells.cell(cell)
            document.multi_cell(0, 6, "This sentence comes after the table.")
    document.output(str(path))
    return path


def two_column_pdf(path: Path, title: str, left: str, right: str, footer: str) -> Path:
    """A page as newsletters and papers set it: a full-width title, two columns of text, a full-width footer."""
    from fpdf import FPDF

    document = FPDF()
    document.add_font("dejavu", fname=_unicode_font())
    document.set_font("dejavu", size=10)
    document.add_page()
    document.multi_cell(0, 8, title)
    top = document.get_y() + 4
    for x, text in ((10, left), (110, right)):
        document.set_xy(x, top)
        document.multi_cell(90, 5, text)
    document.set_xy(10, 250)
    document.multi_cell(0, 5, footer)
    document.output(str(path))
    return path


def glossary_pdf(path: Path, terms: list[tuple[str, str]]) -> Path:
    """One column of two-part rows: each term at the left margin, its definition from the middle of the page."""
    from fpdf import FPDF

    document = FPDF()
    document.add_font("dejavu", fname=_unicode_font())
    document.set_font("dejavu", size=10)
    document.add_page()
    for term, definition in terms:
        y = document.get_y()
        document.set_xy(10, y)
        document.cell(40, 6, term)
        document.set_xy(110, y)
        document.multi_cell(90, 6, definition)
    document.output(str(path))
    return path


def _unicode_font(name: str = "DejaVuSans.ttf") -> str:
    """DejaVu Sans as matplotlib (a dependency) ships it: PDF text beyond Latin-1 (β, ≥) needs a Unicode font."""
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name)


def image_only_pdf(path: Path) -> Path:
    """A 'scanned' page: an image and no text layer."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (400, 120), "white")
    ImageDraw.Draw(image).text((10, 50), "scanned text that only OCR could read", fill="black")
    document = FPDF()
    document.add_page()
    document.image(image, x=10, y=10, w=180)
    document.output(str(path))
    return path


def docx(path: Path, title: str, sections: list[tuple[int, str, str]],
         table: list[tuple[str, ...]] | None = None) -> Path:
    """A Word file: core title ``title``, then (heading level, heading, paragraph) per section, then ``table``."""
    import docx as python_docx

    document = python_docx.Document()
    document.core_properties.title = title
    for level, heading, paragraph in sections:
        document.add_heading(heading, level)
        document.add_paragraph(paragraph)
    if table:
        drawn = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, cell in enumerate(row):
                drawn.cell(r, c).text = cell
    document.save(str(path))
    return path


def html(path: Path, title: str, sections: list[tuple[int, str, str]], table: list[tuple[str, ...]] | None = None
         ) -> Path:
    body = "".join(f"<h{level}>{heading}</h{level}><p>{paragraph}</p>" for level, heading, paragraph in sections)
    if table:
        head, *rows = table
        body += ("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                 + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows) + "</table>")
    path.write_text(f"<!doctype html><html><head><title>{title}</title><script>var x = 1;</script></head>"
                    f"<body>{body}</body></html>", encoding="utf-8")
    return path


def markdown(path: Path, sections: list[tuple[int, str, str]]) -> Path:
    path.write_text("".join(f"{'#' * level} {heading}\n\n{paragraph}\n\n" for level, heading, paragraph in sections),
                    encoding="utf-8")
    return path
