"""The checks made before any extraction child starts, and the readers' pure parts:
links, folders, pipes, sizes and types refused in plain words; sniffing; pages; how a
PDF's pages are handed out in runs to the children reading it (a faster child reads
more), and what happens when one child fails."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from app.core import errors
from app.core.documents import extract as extract_module
from app.core.documents import extract_child, readers
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


def test_the_file_is_closed_after_a_refusal(tmp_path: Path, no_child: None) -> None:
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    for _ in range(5):
        rejected(documents.not_really_pdf(tmp_path))
    after = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    assert after == before


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
    pages = readers.paginate([*blocks[:2], readers.PAGE_BREAK, *blocks[2:]], CAPS)
    assert len(pages.texts[0].split("\n")) == 2  # the explicit break
    assert all(len(text) <= readers.SOFT_PAGE_CHARS for text in pages.texts)
    assert "\n".join(pages.texts) == "\n".join(blocks)
    long = readers.paginate(["x " * 5_000], CAPS)  # one 10,000-character paragraph
    assert len(long.texts) == 4 and all(len(t) <= 3_000 for t in long.texts)


def test_pages_stop_at_the_caps() -> None:
    caps = Limits(max_pages=2, max_chars=100_000).caps()
    pages = readers.paginate(["a", readers.PAGE_BREAK, "b", readers.PAGE_BREAK, "c"], caps)
    assert pages.texts == ["a", "b"] and pages.truncated
    caps = Limits(max_chars=10).caps()
    pages = readers.paginate(["0123456", "789abcdef"], caps)
    assert pages.truncated and sum(map(len, pages.texts)) <= 10


def test_decoding_text() -> None:
    text = documents.TEXT * 5
    for encoding in ("utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32", "cp1252"):
        assert readers.decode(text.encode(encoding)) == text, encoding
    with pytest.raises(readers.Refusal):
        readers.decode(bytes(1000))


def test_xml_prolog_check_finds_a_dtd_in_any_encoding() -> None:
    safe = b'<?xml version="1.0"?><root>&amp;</root>'
    readers.check_xml_prolog(io.BytesIO(safe))
    hostile = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY a "b">]><r/>'
    for data in (hostile.encode("utf-16"), hostile.replace("UTF-16", "UTF-8").encode()):
        with pytest.raises(readers.Refusal) as caught:
            readers.check_xml_prolog(io.BytesIO(data))
        assert caught.value.code == "unsafe_xml"


def test_html_drops_scripts_styles_and_loads_nothing(tmp_path: Path) -> None:
    with open(documents.html_file(tmp_path), "rb") as file:
        pages = readers.read_html(file, CAPS)
    text = "\n".join(pages.texts)
    assert text == "Office news\nHeading & more\nFirst paragraph wraps.\nCell A | Cell B\nCafé €5"


# ---------------------------------------------------------------------------- shares


def take(plan: extract_module._Plan) -> tuple[int, int]:
    run = plan.take()
    assert run is not None
    return run


def runs_of(count: int, readers: int, limits: Limits = DEFAULT_LIMITS) -> list[tuple[int, int]]:
    plan = extract_module._Plan(readers, limits)
    assert plan.agree({"ok": True, "count": count})
    runs = []
    while (run := plan.take()) is not None:
        runs.append(run)
    return runs


def test_runs_cover_every_page_once_in_order_and_shrink_towards_the_end() -> None:
    for count in (1, 2, 7, 40, 81, 300, 5_000):
        for readers_ in (1, 2, 3, 4):
            runs = runs_of(count, readers_)
            assert runs[0][0] == 0 and runs[-1][1] == min(count, DEFAULT_LIMITS.max_pages)
            assert all(a[1] == b[0] for a, b in zip(runs, runs[1:], strict=False))
            sizes = [stop - first for first, stop in runs]
            assert all(1 <= size <= extract_module.MAX_RUN_PAGES for size in sizes)
            assert sizes == sorted(sizes, reverse=True)  # the last runs are the shortest
    assert runs_of(300, 2)[-1] == (299, 300)
    assert runs_of(10, 1, Limits(max_pages=4)) == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_a_plan_takes_only_pages_that_fit_together() -> None:
    plan = extract_module._Plan(2, DEFAULT_LIMITS)
    assert not plan.agree({"ok": True, "count": 0})
    assert plan.agree({"ok": True, "count": 3})
    assert not plan.agree({"ok": True, "count": 4})  # the other child counts differently
    run = take(plan)
    assert run == (0, 1)
    assert not plan.put(run, {"ok": True, "first": 1, "pages": ["x"]})  # another run
    assert not plan.put(run, {"ok": True, "first": 0, "pages": ["x", "y"]})  # too many
    assert not plan.put(run, {"ok": True, "first": 0, "pages": []})  # too few, untruncated
    assert not plan.put(run, {"ok": True, "first": 0, "pages": [3]})  # not text
    assert plan.put(run, {"ok": True, "first": 0, "pages": ["one"]})
    later = [take(plan), take(plan)]
    assert later == [(1, 2), (2, 3)]
    assert plan.put(later[1], {"ok": True, "first": 2, "pages": ["three"]})
    assert plan.put(later[0], {"ok": True, "first": 1, "pages": ["two"]})  # out of order
    assert plan.result() == {"ok": True, "pages": ["one", "two", "three"], "truncated": False}


def test_nothing_is_asked_for_after_a_cap_and_runs_after_a_truncated_one_dont_count() -> (
        None):
    plan = extract_module._Plan(1, Limits(max_chars=10))
    plan.agree({"ok": True, "count": 100})
    first, second = take(plan), take(plan)
    assert plan.put(first, {"ok": True, "first": first[0], "truncated": False,
                            "pages": ["0123456789"] * (first[1] - first[0])})
    assert plan.take() is None  # the character cap is reached: nothing more is asked
    assert plan.put(second, {"ok": True, "first": second[0], "pages": ["late"],
                             "truncated": True})
    result = plan.result()
    assert result["truncated"] and result["pages"][-1] == "late"

    plan = extract_module._Plan(2, DEFAULT_LIMITS)
    plan.agree({"ok": True, "count": 100})
    runs = [take(plan) for _ in range(3)]
    assert plan.put(runs[0], {"ok": True, "first": runs[0][0], "pages": ["cut"],
                              "truncated": True})
    assert plan.take() is None  # a truncated run ends the reading
    for run in runs[1:]:
        assert plan.put(run, {"ok": True, "first": run[0], "pages": ["x"] * (run[1] - run[0])})
    assert plan.result()["pages"] == ["cut"]  # the runs after the cut one are dropped


class PagedChild:
    """A PDF extraction child as the parent sees it (stdin, stdout): `count` pages of
    `text(page)`, read at `seconds_a_page` (so the parent's hand-out can be timed),
    within the characters each run may bring; a run holding a page of `fails_on` is
    refused. `read`: the pages it read."""

    def __init__(self, count: int, text: Any, seconds_a_page: float = 0.0,
                 fails_on: frozenset[int] = frozenset()) -> None:
        self.count, self.text = count, text
        self.seconds_a_page, self.fails_on = seconds_a_page, fails_on
        self.requests: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue()
        self.read: list[int] = []
        self.stdin, self.stdout = self, self
        self.head_sent = False

    def write(self, data: bytes) -> None:  # the parent asking for a run
        first, stop, budget = (int(number) for number in data.split())
        self.requests.put_nowait((first, stop, budget))

    def close(self) -> None:  # the parent's "no more"
        pass

    async def readline(self) -> bytes:
        if not self.head_sent:
            self.head_sent = True
            return json.dumps({"ok": True, "count": self.count}).encode() + b"\n"
        first, stop, budget = await self.requests.get()
        await asyncio.sleep(self.seconds_a_page * (stop - first))
        if self.fails_on & set(range(first, stop)):
            return b'{"ok": false, "code": "too_much_memory", "facts": {}}\n'
        pages, chars, truncated = [], 0, False
        for page in range(first, stop):
            text = self.text(page)
            if chars + len(text) > budget:
                pages.append(text[: budget - chars])
                truncated = True
                break
            chars += len(text)
            pages.append(text)
        self.read += range(first, first + len(pages))
        reply = {"ok": True, "first": first, "pages": pages, "truncated": truncated}
        return json.dumps(reply).encode() + b"\n"


def test_a_faster_child_reads_more_pages_and_the_document_is_whole() -> None:
    """One child three times as fast as the other (a busier or slower core): it reads
    about three quarters of the pages, and both finish close together, where fixed
    halves would keep the fast one idle for half the time."""
    plan = extract_module._Plan(2, DEFAULT_LIMITS)
    def text(page: int) -> str:
        return f"page {page + 1}"

    fast, slow = PagedChild(200, text, 0.002), PagedChild(200, text, 0.006)

    async def run() -> list[Any]:
        return await asyncio.gather(*(extract_module._Reader(plan)(child)  # type: ignore[arg-type]
                                      for child in (fast, slow)))

    assert asyncio.run(run()) == [{"ok": True}, {"ok": True}]
    assert sorted(fast.read + slow.read) == list(range(200))
    assert 125 <= len(fast.read) <= 170  # 150 if the hand-out follows their speeds
    result = plan.result()
    assert result["pages"] == [f"page {n}" for n in range(1, 201)] and not result["truncated"]


def opened(kind: extract_module.Kind, size: int) -> extract_module.Opened:
    return extract_module.Opened("x", Path("x"), None, kind, size)


def test_only_a_long_pdf_is_shared_out_and_within_cores_and_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract_module, "_cores", lambda: 16)
    monkeypatch.setattr(extract_module, "_physical_memory", lambda: 64 << 30)
    big = extract_module.SPLIT_MIN_BYTES
    assert extract_module.reader_count(opened("pdf", big), DEFAULT_LIMITS) == 4
    assert extract_module.reader_count(opened("pdf", big - 1), DEFAULT_LIMITS) == 1
    assert extract_module.reader_count(opened("docx", 10 * big), DEFAULT_LIMITS) == 1
    assert extract_module.reader_count(opened("pdf", big), Limits(max_readers=1)) == 1
    monkeypatch.setattr(extract_module, "_cores", lambda: 2)
    assert extract_module.reader_count(opened("pdf", big), DEFAULT_LIMITS) == 2
    # Children at their memory limit may take at most half of the machine's memory.
    monkeypatch.setattr(extract_module, "_cores", lambda: 16)
    monkeypatch.setattr(extract_module, "_physical_memory", lambda: 12 << 30)
    assert extract_module.reader_count(opened("pdf", big), DEFAULT_LIMITS) == 3  # 2 GiB
    monkeypatch.setattr(extract_module, "_physical_memory", lambda: 3 << 30)
    assert extract_module.reader_count(opened("pdf", big), DEFAULT_LIMITS) == 1


def test_the_first_refusal_ends_every_other_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child 1 is refused at once while children 0 and 2 would read for ever: the refusal
    comes back without waiting for them, and they are stopped (their children killed)."""
    stopped: list[int] = []
    started: list[int] = []

    async def child(opened: Any, limits: Limits, converse: Any) -> dict[str, Any]:
        index = len(started)
        started.append(index)
        if index == 1:
            return {"ok": False, "code": "password", "facts": {}}
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(index)
        raise AssertionError("not reached")

    monkeypatch.setattr(extract_module, "_run_child", child)

    async def run() -> dict[str, Any]:
        async with asyncio.timeout(5):
            return await extract_module._run_children(
                opened("pdf", 1), DEFAULT_LIMITS, extract_module._Plan(3, DEFAULT_LIMITS))

    assert asyncio.run(run()) == {"ok": False, "code": "password", "facts": {}}
    assert sorted(stopped) == [0, 2]


@pytest.mark.skipif(sys.platform == "win32", reason="no descriptors are handed on there")
def test_each_child_reads_the_one_open_file_at_its_own_offset(tmp_path: Path) -> None:
    """The children reading one PDF hold the same open file (one file offset between
    them); each reads at its own offset and leaves the shared one alone."""
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 64)
    fd = os.open(path, os.O_RDONLY)
    try:
        first = io.BufferedReader(extract_child.AtOffsets(os.dup(fd)))
        second = io.BufferedReader(extract_child.AtOffsets(os.dup(fd)))
        with first, second:
            first.seek(100)
            second.seek(-10, os.SEEK_END)
            assert first.read(3) == bytes([100, 101, 102])
            assert second.read() == bytes(range(246, 256))
            assert first.read(2) == bytes([103, 104])
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
    finally:
        os.close(fd)


def test_a_documents_repr_is_short_and_holds_none_of_its_text() -> None:
    """asyncio.run formats its task's result when it ends, and a log line may name a
    document: neither should copy the document's text (megabytes, and private)."""
    pages = [extract_module.Page(number, f"secret text of page {number} " * 100)
             for number in range(1, 301)]
    document = extract_module.Document(Path("report.pdf"), "pdf", pages, "ab" * 32, 1_000)
    shown = repr(document)
    assert "secret" not in shown and len(shown) < 200
    assert "pages=300" in shown and "report.pdf" in shown


def test_the_childs_json_is_what_json_dumps_writes() -> None:
    replies: list[object] = [
        {"ok": True, "first": 3, "truncated": False,
         "pages": ['quote " backslash \\ newline \n tab \t NUL \x00 \x1f \x7f', "",
                   "é € 😀 \u2028 \ud7ff"]},
        {"ok": False, "code": "zip_bomb",
         "facts": {"entries": 3_000, "limit": 2_000, "ratio": 1234.5, "none": None}},
        [["nested"], {"k": [1, 2.5, True]}],
    ]
    for reply in replies:
        assert extract_child.to_json(reply) == json.dumps(reply, ensure_ascii=False)
        assert json.loads(extract_child.to_json(reply)) == reply
    assert extract_child.to_json(float("inf")) == "null"  # not JSON: never sent


def test_the_childs_arguments_round_trip() -> None:
    spec: dict[str, object] = {"kind": "pdf", "path": "/a b/c=d.pdf", "memory": 1 << 30,
                               "max_zip_ratio": 100.0}
    assert extract_child.parse_spec(extract_child.spec_arguments(spec)) == {
        "kind": "pdf", "path": "/a b/c=d.pdf", "memory": str(1 << 30), "max_zip_ratio": "100.0"}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        extract_child.parse_spec(["kind"])


def test_a_pdf_reading_child_imports_little() -> None:
    """Every document, and every reader of a long PDF, pays the child's start-up: the
    PDF path loads PDFium, but not json, re, enum, typing or collections (~20 ms)."""
    import subprocess
    import tempfile

    code = ("import sys; from app.core.documents import extract_child, pdfium_text; "
            "pdfium_text.library(); "
            "print(sorted({'json', 're', 'enum', 'typing', 'collections'} & set(sys.modules)))")
    with tempfile.TemporaryDirectory() as temp:
        python = extract_module.child_command()[:2]  # with the child's own flags (-S)
        out = subprocess.run([*python, "-c", code], capture_output=True, text=True,
                             env=extract_module._child_env(temp), check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def read_with(children_: list[PagedChild], limits: Limits,
              monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`_run_children` over stand-in children, in the order they are started."""
    waiting = list(children_)

    async def child(opened: Any, limits: Limits, converse: Any) -> dict[str, Any]:
        reply = await converse(waiting.pop(0))
        return reply if reply is not None else {"ok": False, "code": "crashed", "facts": {}}

    monkeypatch.setattr(extract_module, "_run_child", child)
    plan = extract_module._Plan(len(children_), limits)

    async def run() -> dict[str, Any]:
        async with asyncio.timeout(5):
            result = await extract_module._run_children(opened("pdf", 1), limits, plan)
        return plan.result() if result.get("ok") else result

    return asyncio.run(run())


def test_a_failure_past_a_cap_doesnt_refuse_the_document(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first child's first run (pages 1-12) reaches the character cap, slowly; the
    second child's first run (pages 25-36) holds a bomb and fails at once. Read page
    after page, the bomb would never have been reached: the document is the capped
    pages, not a refusal."""
    def text(page: int) -> str:
        return f"page {page} " * 10  # 70 characters

    first = PagedChild(100, text, seconds_a_page=0.005)
    second = PagedChild(100, text, fails_on=frozenset({30}))
    result = read_with([first, second], Limits(max_chars=150), monkeypatch)
    assert result["ok"] and result["truncated"]
    assert result["pages"] == [text(0), text(1), text(2)[:10]]
    # The same bomb before the cap refuses the document.
    first = PagedChild(100, text, seconds_a_page=0.005)
    second = PagedChild(100, text, fails_on=frozenset({30}))
    result = read_with([first, second], Limits(max_chars=1_000_000), monkeypatch)
    assert result == {"ok": False, "code": "too_much_memory", "facts": {}}


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
