"""The checks made before any extraction child starts, and the readers' pure parts:
links, folders, pipes, sizes and types refused in plain words; sniffing; pages; and how
the parent takes what a child sends (caps held, odd facts treated as damage)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from pathlib import Path
from typing import Any

import pytest

from app.core import errors
from app.core.documents import extract as extract_module
from app.core.documents import extract_child, formats
from app.core.documents.extract import DEFAULT_LIMITS, Limits, extract, sniff
from tests.fixtures import documents

CAPS = Limits().caps()


@pytest.fixture
def no_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if an extraction child is started."""

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a child was started")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", refuse)


def rejected(path: Path, limits: Limits = DEFAULT_LIMITS) -> errors.DocumentRejected:
    with pytest.raises(errors.DocumentRejected) as caught:
        asyncio.run(extract(path, limits=limits))
    return caught.value


def test_a_link_out_of_its_folder_is_refused(tmp_path: Path, no_child: None) -> None:
    outside = documents.pdf_with_pages(tmp_path)
    (tmp_path / "dropped").mkdir()
    link = tmp_path / "dropped" / "report.pdf"
    link.symlink_to(outside)
    error = rejected(link)
    assert error.code == "outside_link"
    assert error.title == "report.pdf is a link to a file outside its folder."


def test_a_link_to_etc_passwd_named_txt_is_refused(tmp_path: Path, no_child: None) -> None:
    link = tmp_path / "notes.txt"
    link.symlink_to("/etc/passwd")
    assert rejected(link).code == "outside_link"


def test_a_folder_is_refused(tmp_path: Path, no_child: None) -> None:
    folder = tmp_path / "Reports.pdf"
    folder.mkdir()
    error = rejected(folder)
    assert error.code == "folder" and "Reports.pdf is a folder." in error.user_text()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, no_child: None) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    error = rejected(fifo)
    assert error.code == "not_file" and "isn't a regular file" in error.title


def test_a_missing_file_and_a_dangling_link(tmp_path: Path, no_child: None) -> None:
    assert rejected(tmp_path / "gone.pdf").code == "missing"
    (tmp_path / "dangling.pdf").symlink_to(tmp_path / "nowhere.pdf")
    assert rejected(tmp_path / "dangling.pdf").code == "missing"


def test_too_big_is_refused_from_its_size_alone(tmp_path: Path, no_child: None) -> None:
    big = tmp_path / "big.pdf"
    with open(big, "wb") as file:  # sparse: takes no disk space
        file.truncate(350_000_000)
    error = rejected(big)
    assert error.code == "too_big"
    assert error.title == "big.pdf is too big (350 MB; the limit is 200 MB)."
    assert rejected(big, Limits(max_file_bytes=400_000_000)).code == "damaged"  # zeros


def test_an_empty_file_is_refused(tmp_path: Path, no_child: None) -> None:
    error = rejected(documents.empty_file(tmp_path))
    assert error.code == "empty" and error.title == "empty.pdf is empty."


def test_an_unsupported_type_names_what_is_supported(tmp_path: Path, no_child: None) -> None:
    odd = tmp_path / "data.xyz"
    odd.write_text("hello")
    error = rejected(odd)
    assert error.code == "unsupported"
    assert error.title == ("Unsupported file type .xyz — Switchboard reads PDF, Word (.docx), "
                           "text, Markdown and HTML.")
    old_word = tmp_path / "letter.doc"
    old_word.write_bytes(b"\xd0\xcf\x11\xe0" + bytes(100))
    assert "Unsupported file type .doc" in rejected(old_word).title


def test_a_program_named_pdf_is_refused_as_not_a_pdf(tmp_path: Path, no_child: None) -> None:
    error = rejected(documents.not_really_pdf(tmp_path))
    assert error.code == "damaged"
    assert error.title == "invoice.pdf is damaged, or isn't really a PDF."


def test_a_picture_named_txt_is_not_text(tmp_path: Path, no_child: None) -> None:
    picture = tmp_path / "photo.txt"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert rejected(picture).code == "not_text"


def test_sniffing_trusts_content_for_pdf_and_zip() -> None:
    assert sniff(b"%PDF-1.7\n...", "docx") == "pdf"
    assert sniff(b"%PDF-1.7\n...", "text") == "pdf"
    assert sniff(b"PK\x03\x04....", "text") == "docx"
    assert sniff(b"junk\n%PDF-1.4", "pdf") == "pdf"  # tolerated before the header
    assert sniff(b"The header %PDF-1.4 starts a PDF", "text") == "text"  # not for text
    assert sniff(b"# Title\n", "markdown") == "markdown"
    with pytest.raises(errors.DocumentRejected):
        sniff(b"<html>", "docx")


def open_under(folder: Path) -> list[str]:
    """The files under `folder` this process holds open (Linux; [] where it can't tell).
    Only those: other tests' sockets closing meanwhile must not count."""
    if not os.path.isdir("/proc/self/fd"):
        return []
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # one closed while we looked
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(folder)):
                held.append(target)
    return held


def test_the_file_is_closed_after_a_refusal(tmp_path: Path, no_child: None) -> None:
    for _ in range(5):
        rejected(documents.not_really_pdf(tmp_path))
    assert open_under(tmp_path) == []
    with open(documents.not_really_pdf(tmp_path), "rb"):
        assert open_under(tmp_path) != []  # the check sees an open file


def test_every_refusal_reads_plainly() -> None:
    for code in ("missing", "unreadable", "outside_link", "folder", "not_file", "unsupported",
                 "too_big", "empty", "damaged", "not_text", "password", "zip_bomb",
                 "unsafe_xml", "too_slow", "too_much_memory", "crashed"):
        facts: dict[str, Any] = {"size": 1, "suffix": ".x", "unpacked": 9, "limit": 1}
        error = extract_module._rejected("a.pdf", code, facts, "pdf")
        assert error.code == code
        assert error.title.endswith(".") and error.hint.endswith(".")
        assert "{" not in error.user_text() and "Error" not in error.user_text()


# ---------------------------------------------------------------------------- readers


def test_pages_break_at_about_3000_characters_and_at_page_breaks() -> None:
    blocks = [f"Paragraph {n}. " + "word " * 100 for n in range(30)]  # ~15,000 chars
    pages = formats.paginate([*blocks[:2], formats.PAGE_BREAK, *blocks[2:]], CAPS)
    assert len(pages.texts[0].split("\n")) == 2  # the explicit break
    assert all(len(text) <= formats.SOFT_PAGE_CHARS for text in pages.texts)
    assert "\n".join(pages.texts) == "\n".join(blocks)
    long = formats.paginate(["x " * 5_000], CAPS)  # one 10,000-character paragraph
    assert len(long.texts) == 4 and all(len(t) <= 3_000 for t in long.texts)


def test_pages_stop_at_the_caps() -> None:
    caps = Limits(max_pages=2, max_chars=100_000).caps()
    pages = formats.paginate(["a", formats.PAGE_BREAK, "b", formats.PAGE_BREAK, "c"], caps)
    assert pages.texts == ["a", "b"] and pages.truncated
    caps = Limits(max_chars=10).caps()
    pages = formats.paginate(["0123456", "789abcdef"], caps)
    assert pages.truncated and sum(map(len, pages.texts)) <= 10


def test_decoding_text() -> None:
    text = documents.TEXT * 5
    for encoding in ("utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32", "cp1252"):
        assert formats.decode(text.encode(encoding)) == text, encoding
    with pytest.raises(formats.Refusal):
        formats.decode(bytes(1000))


def test_xml_prolog_check_finds_a_dtd_in_any_encoding() -> None:
    safe = b'<?xml version="1.0"?><root>&amp;</root>'
    formats.check_xml_prolog(io.BytesIO(safe))
    hostile = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY a "b">]><r/>'
    for data in (hostile.encode("utf-16"), hostile.replace("UTF-16", "UTF-8").encode()):
        with pytest.raises(formats.Refusal) as caught:
            formats.check_xml_prolog(io.BytesIO(data))
        assert caught.value.code == "unsafe_xml"


def test_html_drops_scripts_styles_and_loads_nothing(tmp_path: Path) -> None:
    with open(documents.html_file(tmp_path), "rb") as file:
        pages = formats.read_html(file, CAPS)
    text = "\n".join(pages.texts)
    assert text == "Office news\nHeading & more\nFirst paragraph wraps.\nCell A | Cell B\nCafé €5"


# ---------------------------------------------------------------------------- replies


def opened(kind: extract_module.Kind, size: int) -> extract_module.Opened:
    return extract_module.Opened("x", Path("x"), None, kind, size)


def test_a_documents_repr_is_short_and_holds_none_of_its_text() -> None:
    """asyncio.run formats its task's result when it ends, and a log line may name a
    document: neither should copy the document's text (megabytes, and private)."""
    pages = [extract_module.Page(number, f"secret text of page {number} " * 100)
             for number in range(1, 301)]
    document = extract_module.ExtractedDocument(Path("report.pdf"), "pdf", pages, "ab" * 32, 1_000)
    shown = repr(document)
    assert "secret" not in shown and len(shown) < 200
    assert "pages=300" in shown and "report.pdf" in shown


def test_the_childs_arguments_round_trip() -> None:
    spec: dict[str, object] = {"kind": "pdf", "path": "/a b/c=d.pdf", "memory": 1 << 30,
                               "max_zip_ratio": 100.0}
    assert extract_child.parse_spec(extract_child.spec_arguments(spec)) == {
        "kind": "pdf", "path": "/a b/c=d.pdf", "memory": str(1 << 30), "max_zip_ratio": "100.0"}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        extract_child.parse_spec(["kind"])


def test_the_caps_hold_whatever_the_child_sends() -> None:
    """A child past its caps (gone wrong, or its readers wrong) still gives a document
    within them."""
    limits = Limits(max_pages=3, max_chars=10)
    reply = {"ok": True, "pages": ["abcd", "efgh", "ijkl", "mnop"], "truncated": False}
    document = extract_module._document(Path("x.pdf"), opened("pdf", 1), reply, "0" * 64,
                                        limits)
    assert [page.text for page in document.pages] == ["abcd", "efgh", "ij"]
    assert [page.number for page in document.pages] == [1, 2, 3] and document.truncated
    reply = {"ok": True, "pages": ["abcd"] * 5, "truncated": False}
    document = extract_module._document(Path("x.pdf"), opened("pdf", 1), reply, "0" * 64,
                                        Limits(max_pages=2))
    assert len(document.pages) == 2 and document.truncated
    for pages in (None, "abcd", [1], ["a", None]):
        with pytest.raises(errors.DocumentRejected) as caught:
            extract_module._document(Path("x.pdf"), opened("pdf", 1),
                                     {"ok": True, "pages": pages}, "0" * 64, limits)
        assert caught.value.code == "damaged"


def test_the_apps_own_process_loads_no_document_parser() -> None:
    """Parsing happens only in the child: importing extraction here loads none of the
    parsing libraries."""
    import subprocess
    import sys

    code = ("import sys; import app.core.documents.extract; "
            "print(sorted({'pypdfium2', 'docx', 'lxml', 'charset_normalizer'} "
            "& set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_a_refusal_whose_facts_dont_fit_its_code_is_damage() -> None:
    pdf = opened("pdf", 1)
    for facts in ({"entries": "many", "limit": 1}, [1], "x", {"ratio": None}):
        error = extract_module._refused(
            pdf, {"ok": False, "code": "zip_bomb", "facts": facts}, DEFAULT_LIMITS)
        assert isinstance(error, errors.DocumentRejected)
        assert error.code in ("damaged", "zip_bomb")
    error = extract_module._refused(
        pdf, {"ok": False, "code": "zip_bomb", "facts": {"entries": "many", "limit": 1}},
        DEFAULT_LIMITS)
    assert error.code == "damaged" and error.title == "x is damaged and can't be read as a PDF."
