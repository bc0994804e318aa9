"""Real files through the real extraction child: each format's text on the right pages,
and every hostile file refused in plain words, with the child reaped, no temporary
files left and the app's own memory untouched."""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core import errors
from app.core.documents import extract as extract_module
from app.core.documents import extract_child
from app.core.documents.extract import DEFAULT_LIMITS, ExtractedDocument, Limits, extract
from tests.fixtures import documents
from tests.fixtures.documents import MIB, _deflate_repeated, _pdf

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX limits and /proc")


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The slow-to-make hostile files, made once (about 3 s)."""
    folder = tmp_path_factory.mktemp("bombs")
    documents.docx_zip_bomb(folder)
    documents.docx_zip_bomb(folder, lie=True, name="lying.docx")
    documents.pdf_flate_bomb(folder)
    return folder


class Children:
    """Records every extraction child started; `on_start` is called as each starts."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.on_start: Callable[[], None] = lambda: None


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Children]:
    record = Children()
    real = asyncio.create_subprocess_exec

    async def spy(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        process = await real(*args, **kwargs)
        record.pids.append(process.pid)
        record.on_start()
        return process

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spy)
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    yield record
    assert list(temp.iterdir()) == [], "temporary files were left behind"
    for pid in record.pids:  # reaped: not our child any more, and no zombie in /proc
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        assert not Path(f"/proc/{pid}").exists() or "Z" not in _state(pid)
    # No descriptor left open on the test's files. (Counting all descriptors would race
    # with other tests' background threads and garbage in a full run.)
    leaked = [target for fd in os.listdir("/proc/self/fd")
              if (target := _target(fd)).startswith(str(tmp_path))]
    assert leaked == [], f"file descriptors leaked: {leaked}"


def _target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return ""


def read(path: Path, limits: Limits = DEFAULT_LIMITS) -> ExtractedDocument:
    return asyncio.run(extract(path, limits=limits))


def refused(path: Path, limits: Limits = DEFAULT_LIMITS) -> errors.DocumentRejected:
    with pytest.raises(errors.DocumentRejected) as caught:
        read(path, limits)
    return caught.value


async def cancel_once_started(path: Path, children: Children,
                              limits: Limits = DEFAULT_LIMITS) -> None:
    """Starts reading `path`, and cancels the reading as soon as its child runs."""
    started = asyncio.Event()
    children.on_start = started.set
    task = asyncio.create_task(extract(path, limits=limits))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------------------- formats


def test_pdf_text_is_on_its_pages(tmp_path: Path, children: Children) -> None:
    path = documents.pdf_with_pages(tmp_path, 5)
    document = read(path)
    assert document.kind == "pdf" and document.path == path and not document.truncated
    assert [page.number for page in document.pages] == [1, 2, 3, 4, 5]
    for page in document.pages:
        assert f"This is page {page.number}." in page.text
        assert page.text.count("MARKER") == 1 and documents.marker(page.number) in page.text
    assert document.size_bytes == path.stat().st_size
    import hashlib
    assert document.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(children.pids) == 1


def test_pdf_reading_stops_at_the_page_cap(tmp_path: Path, children: Children) -> None:
    document = read(documents.pdf_with_pages(tmp_path, 10), Limits(max_pages=3))
    assert len(document.pages) == 3 and document.truncated
    assert documents.marker(3) in document.pages[2].text


def test_pdf_reading_stops_at_the_character_cap(tmp_path: Path, children: Children) -> None:
    path = documents.pdf_with_pages(tmp_path, 10)
    whole = read(path).pages
    cap = sum(len(page.text) for page in whole[:4]) + len(whole[4].text) // 2  # mid page 5
    document = read(path, Limits(max_chars=cap))
    assert len(document.pages) == 5 and document.truncated
    assert sum(len(page.text) for page in document.pages) == cap
    assert document.pages[:4] == whole[:4] and whole[4].text.startswith(document.pages[4].text)


def test_pdf_text_outside_the_basic_plane_is_kept(tmp_path: Path, children: Children) -> None:
    """PDFium's text API once gave one UTF-16 unit a character: an emoji (or a rare CJK
    character) would have been cut in half."""
    cmap = (b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap "
            b"/CMapName /Adobe-Identity-UCS def /CMapType 2 def "
            b"1 begincodespacerange <00> <FF> endcodespacerange "
            b"2 beginbfchar <41> <D83DDE00> <42> <00E9> endbfchar "
            b"endcmap CMapName currentdict /CMap defineresource pop end end")
    line = b"BT /F1 12 Tf 72 720 Td (ABAB done) Tj ET"
    path = tmp_path / "emoji.pdf"
    path.write_bytes(_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(line) + line + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(cmap) + cmap + b"\nendstream",
    ]))
    assert read(path).pages[0].text == "\U0001f600\u00e9\U0001f600\u00e9 done"


def test_docx_text_tables_and_page_break(tmp_path: Path, children: Children) -> None:
    document = read(documents.docx_with_pages(tmp_path))
    assert document.kind == "docx"
    first, second = document.pages
    assert first.number == 1 and second.number == 2
    assert first.text == ("Quarterly report\nFirst page: the budget is on track.\n"
                          "Café staff — naïve “quotes” and 20 €.")
    assert second.text == ("Second page: the timeline slips by two weeks.\n"
                           "Team | Budget\nArchive | 12,000")


def test_docx_without_breaks_gets_pages_of_about_3000_characters(
        tmp_path: Path, children: Children) -> None:
    document = read(documents.long_docx(tmp_path))
    assert len(document.pages) >= 3
    assert all(len(page.text) <= 3_000 for page in document.pages)
    assert [page.number for page in document.pages] == list(range(1, len(document.pages) + 1))
    text = "\n".join(page.text for page in document.pages)
    assert [f"Paragraph {n}." in text for n in range(1, 41)] == [True] * 40


# "utf-16" writes a byte-order mark; -le/-be and UTF-32 do not (Windows tools often don't).
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "utf-16-be",
                                      "utf-32-le", "utf-32-be", "cp1252"])
def test_text_in_each_encoding(tmp_path: Path, encoding: str, children: Children) -> None:
    document = read(documents.text_file(tmp_path, encoding, repeat=3))
    assert document.kind == "text"
    assert document.pages[0].text == (documents.TEXT * 3).rstrip("\n")


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_plain_english_in_utf16_or_32_without_a_bom(tmp_path: Path, encoding: str,
                                                     children: Children) -> None:
    # Every character's high byte is zero, which UTF-8 would read as binary.
    text = "Minutes of the budget meeting. Actions: Sam to send the figures by Friday.\n"
    document = read(documents.text_file(tmp_path, encoding, text=text, repeat=5))
    assert document.kind == "text"
    assert document.pages[0].text == (text * 5).rstrip("\n")


def test_markdown_and_form_feed_pages(tmp_path: Path, children: Children) -> None:
    path = tmp_path / "notes.md"
    path.write_text("# One\n\nfirst\f# Two\nsecond\n", encoding="utf-8")
    document = read(path)
    assert document.kind == "markdown"
    assert [page.text for page in document.pages] == ["# One\n\nfirst", "# Two\nsecond"]


def test_html_is_text_only(tmp_path: Path, children: Children) -> None:
    document = read(documents.html_file(tmp_path))
    assert document.kind == "html"
    text = document.pages[0].text
    assert "Heading & more" in text and "Café €5" in text and "Cell A | Cell B" in text
    assert "SCRIPT" not in text and "color" not in text and "example.invalid" not in text


def test_a_pdf_named_docx_is_read_as_the_pdf_it_is(tmp_path: Path, children: Children) -> None:
    path = documents.pdf_with_pages(tmp_path, 2, name="report.docx")
    document = read(path)
    assert document.kind == "pdf" and documents.marker(2) in document.pages[1].text


def test_a_word_file_named_txt_is_read_as_word(tmp_path: Path, children: Children) -> None:
    document = read(documents.docx_with_pages(tmp_path, name="notes.txt"))
    assert document.kind == "docx" and "Second page" in document.pages[1].text


def test_a_link_within_its_folder_is_followed(tmp_path: Path, children: Children) -> None:
    target = documents.pdf_with_pages(tmp_path, 2)
    (tmp_path / "shortcut.pdf").symlink_to(target.name)
    assert len(read(tmp_path / "shortcut.pdf").pages) == 2


# ---------------------------------------------------------------------------- hostile


def test_a_docx_zip_bomb_is_refused_before_unpacking(bombs: Path, children: Children) -> None:
    error = refused(bombs / "bomb.docx")
    assert error.code == "zip_bomb"
    assert error.title == ("bomb.docx looks like a zip bomb: it would unpack to 3,223 MB "
                           "(the limit is 500 MB).")


def test_a_zip_bomb_under_a_higher_size_cap_is_caught_by_its_ratio(
        bombs: Path, children: Children) -> None:
    error = refused(bombs / "bomb.docx", Limits(max_unpacked_bytes=10**10))
    assert error.code == "zip_bomb" and "would grow" in error.title


def test_a_zip_bomb_that_lies_about_its_size_is_damaged(bombs: Path, children: Children) -> None:
    assert refused(bombs / "lying.docx").code == "damaged"


def test_a_docx_with_too_many_parts_is_refused(tmp_path: Path, children: Children) -> None:
    error = refused(documents.docx_many_parts(tmp_path))
    assert error.code == "zip_bomb" and "5,017 parts" in error.title


@pytest.mark.parametrize("maker", [documents.docx_billion_laughs,
                                   documents.docx_external_entity])
def test_a_docx_with_a_dtd_is_refused(tmp_path: Path, maker: Any, children: Children) -> None:
    error = refused(maker(tmp_path))
    assert error.code == "unsafe_xml" and "has an unsafe XML declaration" in error.title
    assert "root:" not in error.user_text()


def test_a_pdf_stream_inflating_to_gigabytes_is_stopped_by_the_childs_memory_limit(
        bombs: Path, children: Children) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # "too_slow" would mean that the limit never bit and the timeout stopped it.
    error = refused(bombs / "bomb.pdf", Limits(memory_bytes=768 << 20))
    assert error.code in ("crashed", "too_much_memory")
    assert "memory allowance" in error.title or "more memory" in error.title
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100 * 1024, "the app's own memory grew"


def test_a_slow_file_is_killed_at_the_timeout(bombs: Path, children: Children) -> None:
    error = refused(bombs / "bomb.pdf", Limits(timeout_s=0.5))
    assert error.code == "too_slow"
    assert error.title == "bomb.pdf took too long to read (over 0.5 seconds)."


def test_cancelling_kills_and_reaps_the_child(bombs: Path, children: Children) -> None:
    asyncio.run(cancel_once_started(bombs / "bomb.pdf", children))
    assert len(children.pids) == 1  # the fixture checks that it was reaped


def test_a_truncated_pdf_is_refused(tmp_path: Path, children: Children) -> None:
    error = refused(documents.truncated_pdf(tmp_path))
    assert error.code == "damaged" and "ends too early" in error.title


def test_a_pdf_of_garbage_is_damaged(tmp_path: Path, children: Children) -> None:
    path = tmp_path / "garbage.pdf"
    path.write_bytes(b"%PDF-1.7\n" + os.urandom(5_000) + b"\n%%EOF\n")
    error = refused(path)
    assert error.code == "damaged" and error.title == (
        "garbage.pdf is damaged and can't be read as a PDF.")


def test_binary_named_txt_is_not_text(tmp_path: Path, children: Children) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(bytes(range(256)) * 40)
    assert refused(path).code == "not_text"


def test_the_child_limits_itself() -> None:
    code = ("import resource; from app.core.documents import extract_child as c; "
            "c.limit_resources(1 << 30, 7); "
            "print(resource.getrlimit(resource.RLIMIT_AS)[0], "
            "resource.getrlimit(resource.RLIMIT_CPU)[0], resource.getrlimit(resource.RLIMIT_CORE))")
    import subprocess
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out[:2] == [str(1 << 30), "7"] and out[2:] == ["(0,", "0)"]
    assert extract_child.CPU_GRACE_S > 0


def test_a_frozen_build_reads_through_the_apps_own_entry_point(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frozen, the child is the app itself with `--extract-document`; `python -m app`
    stands in for the frozen executable here."""
    from app.core.documents import extract as extract_module
    from tests.fixtures.documents import marker, pdf_with_pages

    monkeypatch.setattr(extract_module, "child_command",
                        lambda: [sys.executable, "-m", "app", "--extract-document"])
    monkeypatch.chdir(Path(__file__).parents[2])
    document = asyncio.run(extract_module.extract(pdf_with_pages(tmp_path, pages=2)))
    assert [marker(1) in document.pages[0].text, marker(2) in document.pages[1].text] == \
        [True, True]


def test_a_password_protected_pdf_is_refused_with_its_own_words(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        # fpdf2 warns that it can't sanitise SVG images without defusedxml; we draw none.
        warnings.filterwarnings("ignore", "defusedxml", UserWarning)
        from fpdf import FPDF

    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="secret")
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.cell(text="Confidential")
    path = tmp_path / "locked.pdf"
    pdf.output(str(path))
    with pytest.raises(errors.DocumentRejected) as caught:
        asyncio.run(extract(path))
    assert caught.value.code == "password"
    assert "protected by a password" in caught.value.reason


# ------------------------------------------------------------------ a bomb further in


def _long_pdf_with_a_bomb(folder: Path, pages: int, bomb_page: int) -> Path:
    """`pages` pages of one line each; page `bomb_page`'s content inflates to 4 GiB."""
    font = 3 + pages * 2
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
                   b" ".join(b"%d 0 R" % (3 + 2 * n) for n in range(pages)), pages)]
    for number in range(1, pages + 1):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                       b"/Contents %d 0 R /Resources << /Font << /F1 %d 0 R >> >> >>"
                       % (4 + 2 * (number - 1), font))
        line = b"BT /F1 12 Tf 72 720 Td (Page %d) Tj ET\n" % number
        if number == bomb_page:
            stream, _ = _deflate_repeated(line, bytes(MIB), 4 * 1024, b"\n",
                                          zlib_wrapper=True)
            objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
                           + stream + b"\nendstream")
        else:
            objects.append(b"<< /Length %d >>\nstream\n" % len(line) + line + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    path = folder / "long-bomb.pdf"
    path.write_bytes(_pdf(objects))
    return path


def test_a_bomb_on_a_later_page_refuses_the_whole_document(
        tmp_path: Path, children: Children) -> None:
    """The pages before it read well; the document is still refused, not cut short."""
    path = _long_pdf_with_a_bomb(tmp_path, pages=120, bomb_page=110)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(errors.DocumentRejected) as caught:
        read(path, Limits(memory_bytes=768 << 20))
    assert caught.value.code in ("crashed", "too_much_memory")
    assert len(children.pids) == 1  # reaped: the fixture checks
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100 * 1024, "the app's own memory grew"


# ------------------------------------------------------------------ a child gone wrong
# What a compromised or broken child might write, from a stand-in child process: each is
# refused as damage (or a crash) in plain words, not at the timeout, with the child
# reaped.

GONE_WRONG = r"""
import os, sys, time
mode = sys.argv[1]
def line(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
if mode == "junk":
    line("this is not JSON")
elif mode == "closes_output":
    sys.stdout.close()
    os.close(1)
elif mode == "too_long":
    sys.stdout.write("x" * 300_000)
    sys.stdout.flush()
elif mode == "not_pages":
    line('{"ok": true, "pages": ["one", 2], "truncated": false}')
elif mode == "exits":
    sys.exit(0)
elif mode == "bad_facts":
    line('{"ok": false, "code": "zip_bomb", "facts": {"entries": "many", "limit": 1}}')
time.sleep(60)  # and stays alive, unless it exited above
"""


@pytest.mark.parametrize(("mode", "code"), [
    ("junk", "damaged"),
    ("closes_output", "damaged"),  # given a moment to exit, then killed
    ("too_long", "damaged"),
    ("not_pages", "damaged"),
    ("exits", "crashed"),
    ("bad_facts", "damaged"),
])
def test_a_child_gone_wrong_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, children: Children, mode: str,
        code: str) -> None:
    script = tmp_path / "gone_wrong.py"
    script.write_text(GONE_WRONG, encoding="utf-8")
    monkeypatch.setattr(extract_module, "child_command",
                        lambda: [sys.executable, str(script), mode])
    pdf = documents.pdf_with_pages(tmp_path, 2)
    # Its stand-in sleeps for a minute: "too_slow" would mean it was waited for.
    error = refused(pdf, Limits(max_pages=10, max_chars=10, timeout_s=30))
    assert error.code == code
    assert error.title.startswith("known.pdf ")
    assert len(children.pids) == 1  # reaped: the fixture checks
