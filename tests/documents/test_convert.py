from __future__ import annotations

from pathlib import Path

import pytest

from embedtune.documents.convert import (
    OCR_HINT,
    Converted,
    Unconvertible,
    convert_file,
    markdown_sections,
    plain_links,
)
from embedtune.documents.pdf import markdown_table
from tests.documents import files
from tests.documents.conftest import TABLE


def test_pdf_keeps_pages_title_and_the_table_as_rows_in_reading_order(folder: Path) -> None:
    converted = convert_file(folder / "policies" / "leave.pdf")
    assert converted.title == "Leave policy"
    assert [s.page for s in converted.sections] == [1, 2]
    last = converted.sections[-1].text
    assert "| Grade | Days carried over |\n| --- | --- |\n| A | 5 |\n| B | 10 |" in last
    assert last.index("Carry-over limits") < last.index("| Grade") < last.index("after the table")
    first = converted.sections[0].text
    assert "\n" not in first.strip()  # the page's wrapped lines are one paragraph again


def test_a_two_column_page_reads_down_each_column_not_across_both(tmp_path: Path) -> None:
    left = " ".join(f"Left{i} explains the carry-over rules for annual leave." for i in range(12))
    right = " ".join(f"Right{i} explains how expenses are approved and paid." for i in range(12))
    path = files.two_column_pdf(tmp_path / "news.pdf", "Staff newsletter, issue 7: leave and expenses explained",
                                left, right, "Published by the people team for every office of the company.")
    text = convert_file(path).sections[0].text
    assert text.index("Staff newsletter") < text.index("Left0") < text.index("Left11") < text.index("Right0")
    assert text.index("Right11") < text.index("Published by the people team")
    assert "Left0 explains the carry-over rules for annual leave. Left1" in text  # no line of the other column


def test_a_glossary_with_terms_beside_definitions_stays_one_column(tmp_path: Path) -> None:
    terms = [(f"Term{i}", f"Definition{i} of the term, in a few more words than it needs.") for i in range(14)]
    text = convert_file(files.glossary_pdf(tmp_path / "glossary.pdf", terms)).sections[0].text
    assert "Term0 Definition0 of the term" in text and text.index("Definition0") < text.index("Term1")


def test_docx_headings_become_the_heading_path_and_its_table_gets_a_header(folder: Path) -> None:
    converted = convert_file(folder / "contract.docx")
    assert converted.title == "Supplier contract"
    assert [s.headings for s in converted.sections] == [("Payment",), ("Payment", "Late payment")]
    assert converted.sections[-1].text.endswith("| Term | Value |\n| --- | --- |\n| Net | 30 days |")
    assert all(s.page is None for s in converted.sections)


def test_html_title_headings_and_table_without_scripts(folder: Path) -> None:
    converted = convert_file(folder / "wiki" / "setup.html")
    assert converted.title == "Setup guide"
    assert [s.headings for s in converted.sections] == [("Installing",), ("Installing", "On Linux")]
    assert "| Debian | apt install tool |" in converted.sections[-1].text
    assert "var x" not in " ".join(s.text for s in converted.sections)


def test_html_keeps_the_pages_own_text_without_its_furniture_or_link_targets(tmp_path: Path) -> None:
    """A page as a documentation site or wiki exports it: navigation, a sidebar, a search form and a footer
    around ``<main>``; permalink pilcrows after headings; links and images inside the text."""
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title>Leave policy — Handbook</title></head><body>"
        "<div role='navigation'><a href='/'>Home</a> » <a href='/policies'>Policies</a></div>"
        "<nav><ul><li>Expenses</li><li>Travel</li></ul></nav>"
        "<main><h1>Leave policy<a class='headerlink' href='#leave'>¶</a></h1>"
        "<p>See the <a href='https://hr.example.com/form?id=7'>request form</a> and the chart "
        "<img src='chart.png' alt='days per grade'><img src='spacer.gif'>.</p>"
        "<form><input name='q'><button>Search</button></form></main>"
        "<div class='sphinxsidebar' role='complementary'><h3>This page</h3>Show source</div>"
        "<footer>© Example Ltd · Privacy</footer></body></html>", encoding="utf-8")
    converted = convert_file(page)
    assert converted.title == "Leave policy — Handbook"
    assert [(s.headings, s.text) for s in converted.sections] == [
        (("Leave policy",), "See the request form and the chart days per grade.")]


def test_html_whose_whole_body_is_a_form_or_whose_main_is_empty_keeps_its_text(tmp_path: Path) -> None:
    """ASP.NET and SharePoint pages wrap the body in one <form>; a client-rendered page's <main> is empty."""
    aspnet = tmp_path / "aspnet.html"
    aspnet.write_text("<html><body><form action='/p'><h1>Leave</h1><p>Ten days a year.</p><input name='q'>"
                      "</form></body></html>", encoding="utf-8")
    assert [(s.headings, s.text) for s in convert_file(aspnet).sections] == [(("Leave",), "Ten days a year.")]
    spa = tmp_path / "spa.html"
    spa.write_text("<html><body><main id='app'></main><div><h1>Expenses</h1><p>Receipts within a month, "
                   "approved by your manager.</p></div></body></html>", encoding="utf-8")
    assert convert_file(spa).sections[0].text == "Receipts within a month, approved by your manager."


def test_markdown_links_become_their_text_and_comments_go_but_code_stays() -> None:
    text = ("<!-- YAML\nadded: v1.0\n-->\nRead [the guide](https://x.example/guide \"Guide\") and [`fs.open()`][]."
            "\n![a diagram](d.png)\n\n\n\nnext\n\n[`fs.open()`]: #fsopen\n"
            "```js\nconst a = [1](2); // [kept](as is)\n```\n")
    assert plain_links(text) == ("\nRead the guide and `fs.open()`.\na diagram\n\nnext\n\n"
                                 "```js\nconst a = [1](2); // [kept](as is)\n```\n")
    kept = "Index `m[i][j]` or `f[0](x)`, see [Foo](https://en.wikipedia.org/wiki/Foo_(bar)) and `<!-- x -->`.\n"
    assert plain_links(kept + "[^1]: Source: the audit.\n") == (
        "Index `m[i][j]` or `f[0](x)`, see Foo and `<!-- x -->`.\n[^1]: Source: the audit.\n")


def test_markdown_heading_path_pops_to_the_right_level_and_ignores_code_fences(tmp_path: Path) -> None:
    sections, first_h1 = markdown_sections("intro\n# A\ntext a\n## B\n```\n# not a heading\n```\n### C\nc\n## D\nd\n")
    assert first_h1 == "A"
    assert [(s.headings, s.text) for s in sections] == [
        ((), "intro"), (("A",), "text a"), (("A", "B"), "```\n# not a heading\n```"), (("A", "B", "C"), "c"),
        (("A", "D"), "d")]
    path = tmp_path / "notes.md"
    path.write_text("---\ntitle: \"Release notes\"\n---\n# Version 2\nNew things.\n")
    converted = convert_file(path)
    assert converted.title == "Release notes" and converted.sections[0].headings == ("Version 2",)


@pytest.mark.parametrize(("name", "reason"), [
    ("policies/broken.pdf", "corrupt or unreadable PDF"),
    ("policies/scanned.pdf", OCR_HINT),
    ("wiki/diagram.png", "unsupported type '.png'"),
])
def test_files_that_give_no_text_say_why(folder: Path, name: str, reason: str) -> None:
    with pytest.raises(Unconvertible, match=None) as caught:
        convert_file(folder / name)
    assert caught.value.reason.startswith(reason)


def test_an_encrypted_pdf_or_a_corrupt_docx_or_non_utf8_text_is_named_as_such(tmp_path: Path) -> None:
    locked = files.pdf(tmp_path / "locked.pdf", ["secret"], password="pw")
    with pytest.raises(Unconvertible, match="encrypted"):
        convert_file(locked)
    (tmp_path / "bad.docx").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(Unconvertible, match="corrupt or not a DOCX"):
        convert_file(tmp_path / "bad.docx")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(Unconvertible, match="not UTF-8 text"):
        convert_file(tmp_path / "latin1.txt")


def test_conversions_round_trip_through_json(folder: Path) -> None:
    converted = convert_file(folder / "policies" / "leave.pdf")
    assert Converted.from_json(converted.to_json()) == converted


def test_markdown_table_escapes_pipes_and_pads_short_rows() -> None:
    assert markdown_table([("a", "b|c"), ("1",)]) == "| a | b\\|c |\n| --- | --- |\n| 1 |  |"
    assert markdown_table([(None, "")]) == ""
    assert markdown_table(TABLE).count("\n") == 3
