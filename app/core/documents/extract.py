"""Getting a dropped document's text in, safely: checks in this process before anything
is read, then parsing in a child process with memory and time limits.

    document = await extract(Path("report.pdf"))
    document.pages[11].number, document.pages[11].text   # 12, "…"

Before a child starts: the path must be a regular file (not a folder, pipe or device),
a link only to a file in the same folder, of a supported type, no bigger than
`Limits.max_file_bytes` and not empty. The type is then sniffed from its first bytes:
a PDF or Word file is read as what it really is whatever its name says (mail systems
and downloads mislabel files, and the child's limits are the same either way); a file
named .pdf or .docx that is neither is refused as damaged. The file is opened once
here and the child is handed that open file, so what was checked is what is read.

The child (`extract_child`) limits its own address space (RLIMIT_AS; a Job Object on
Windows) and CPU time and writes the pages as JSON to stdout, which is read up to a
bound. The parent kills it at the wall-clock timeout, always reaps it, and removes the
private temporary folder it was given. Every refusal is an `errors.DocumentRejected` in
plain words.

A long PDF is read by several such children at once, each reading its share of the
pages from the same handed-over file under the same limits (`reader_count`): PDFium's
text layout, ~1.5 ms a page, is most of the time, and one process uses one core. The
first refusal or crash ends all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from app.core import errors
from app.core.documents.readers import Caps

log = logging.getLogger(__name__)

Kind = Literal["pdf", "docx", "text", "markdown", "html"]

EXTENSIONS: dict[str, Kind] = {
    ".pdf": "pdf", ".docx": "docx", ".txt": "text", ".text": "text", ".md": "markdown",
    ".markdown": "markdown", ".html": "html", ".htm": "html",
}
KIND_NAMES: dict[Kind, str] = {
    "pdf": "PDF", "docx": "Word document", "text": "text file", "markdown": "Markdown file",
    "html": "web page",
}
# Formats that are surely not text, named only to refuse them with the right words.
_BINARY_MAGIC = (
    b"\x7fELF", b"MZ", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"\xd0\xcf\x11\xe0",
    b"7z\xbc\xaf", b"\x1f\x8b", b"Rar!", b"BZh", b"\xfd7zXZ",
)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEAD_BYTES = 8_192
_STDERR_TAIL = 4_096
# A PDF smaller than this is read by one child: it can't have two shares' worth of pages
# (readers.MIN_PAGES_PER_SHARE), a page of plain text taking at least ~0.7 kB. A bigger
# one with fewer pages costs the extra children only their start-up (~50 ms of CPU
# each, on other cores): they count the pages, find no share of their own and end.
SPLIT_MIN_BYTES = 50_000
# How a child killed at its CPU limit ends (POSIX only: Windows has neither signal, and
# there the wall-clock timeout stops a slow child).
_KILLED = frozenset(-number for name in ("SIGKILL", "SIGXCPU")
                    if (number := getattr(signal, name, None)) is not None)


@dataclass(frozen=True, slots=True)
class Page:
    """One page's text; `number` counts from 1."""

    number: int
    text: str


@dataclass(frozen=True, slots=True)
class Document:
    """A document's text, page by page.

    A PDF's pages are its real pages, numbered by position in the file (what a viewer's
    page box shows, not printed labels such as "iv"). DOCX, text, Markdown and HTML
    have no fixed pages, so one "page" is about 3,000 characters, ended early at an
    explicit page break (a Word page break or "page break before", a form feed in
    text); they are numbered from 1 too, so a summary's citations still point somewhere.
    `truncated` is true when a page or character limit stopped reading early.
    """

    path: Path
    kind: Kind
    pages: list[Page]
    sha256: str
    size_bytes: int
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one document may cost. The defaults fit a desktop reading office files."""

    max_file_bytes: int = 200_000_000  # checked with stat before anything is read
    timeout_s: float = 60.0  # wall clock for the child; it is killed after this
    memory_bytes: int = 2 << 30  # the child's address space (RLIMIT_AS)
    max_pages: int = 5_000  # reading stops here (Document.truncated)
    max_chars: int = 10_000_000  # reading stops here too; also bounds the child's output
    max_zip_entries: int = 2_000  # a DOCX with more parts is refused as a zip bomb
    max_unpacked_bytes: int = 500_000_000  # a DOCX whose parts unpack to more is too
    max_zip_ratio: float = 100.0  # …or with a part (over 1 MiB) that grows more than this
    max_readers: int = 4  # children reading one long PDF at once, each with these limits

    def caps(self) -> Caps:
        return Caps(max_pages=self.max_pages, max_chars=self.max_chars,
                    max_zip_entries=self.max_zip_entries,
                    max_unpacked_bytes=self.max_unpacked_bytes,
                    max_zip_ratio=self.max_zip_ratio)

    def output_bytes(self) -> int:
        """The most JSON an honest child writes: 4 UTF-8 bytes a character at most."""
        return 4 * self.max_chars + 8 * self.max_pages + 65_536


DEFAULT_LIMITS = Limits()


async def extract(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> Document:
    """The text of the document at `path`, page by page, read in a limited child.

    Raises errors.DocumentRejected, in plain words, for anything it refuses. Cancelling
    the awaiting task kills and reaps the child.
    """
    checking = asyncio.ensure_future(asyncio.to_thread(open_checked, path, limits))
    try:
        opened = await asyncio.shield(checking)
    except asyncio.CancelledError:
        checking.add_done_callback(_close_when_opened)  # the thread can't be stopped
        raise
    try:
        results = await _run_children(opened, limits, reader_count(opened, limits))
    finally:
        if opened.fd is not None:
            os.close(opened.fd)
    for result in results:
        if not result.get("ok"):
            raise _rejected(opened.name, str(result.get("code")),
                            result.get("facts") or {}, opened.kind, limits)
    return _document(path, opened, results, limits)


def reader_count(opened: Opened, limits: Limits) -> int:
    """How many children read `opened`: one, or for a PDF big enough to be long, one a
    core up to `limits.max_readers`, and only as many as fit in half of the machine's
    memory at their memory limit each, so that all of them at their limit (a bomb in a
    part every share reads) still leave the rest of the machine room."""
    if opened.kind != "pdf" or opened.size < SPLIT_MIN_BYTES:
        return 1
    count = min(limits.max_readers, _cores())
    memory = _physical_memory()
    if memory is not None:
        count = min(count, memory // 2 // max(limits.memory_bytes, 1))
    return max(1, count)


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))  # the cores this process may run on
    return os.cpu_count() or 1


def _physical_memory() -> int | None:
    if sys.platform == "win32":
        return None  # no sysconf: the cores and max_readers bound it
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def _close_when_opened(checking: asyncio.Future[Opened]) -> None:
    if not checking.cancelled() and checking.exception() is None:
        fd = checking.result().fd
        if fd is not None:
            os.close(fd)


# ------------------------------------------------------------------------------ checks


@dataclass(frozen=True, slots=True)
class Opened:
    """A file that passed the checks: open (where descriptors can be handed on) and sniffed."""

    name: str
    real: Path
    fd: int | None
    kind: Kind
    size: int


def open_checked(path: Path, limits: Limits = DEFAULT_LIMITS) -> Opened:
    """Every check that needs no parsing, in this process; blocking (file system calls)."""
    name = path.name or str(path)
    try:
        link = stat.S_ISLNK(os.lstat(path).st_mode)
        real = path.resolve(strict=True) if link else path.absolute()
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        raise _rejected(name, "missing") from None
    except (OSError, RuntimeError) as error:  # no permission, a link loop
        raise _rejected(name, "unreadable", {"error": str(error)}) from None
    if link and not real.is_relative_to(path.absolute().parent.resolve()):
        raise _rejected(name, "outside_link")
    if stat.S_ISDIR(mode):
        raise _rejected(name, "folder")
    if not stat.S_ISREG(mode):
        raise _rejected(name, "not_file")
    named = EXTENSIONS.get(path.suffix.lower())
    if named is None:
        raise _rejected(name, "unsupported", {"suffix": path.suffix})

    flags = (os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_NONBLOCK", 0))  # never wait on a pipe swapped in meanwhile
    try:
        fd = os.open(real, flags)
    except OSError as error:
        raise _rejected(name, "unreadable", {"error": str(error)}) from None
    try:
        facts = os.fstat(fd)  # the file now open: what was checked is what is read
        if not stat.S_ISREG(facts.st_mode):
            raise _rejected(name, "not_file")
        if facts.st_size > limits.max_file_bytes:
            raise _rejected(name, "too_big", {"size": facts.st_size}, named, limits)
        if facts.st_size == 0:
            raise _rejected(name, "empty")
        head = _head(fd)
        kind = sniff(head, named, name)
    except BaseException:
        os.close(fd)
        raise
    if not _can_pass_fds():
        os.close(fd)
        return Opened(name, real, None, kind, facts.st_size)
    return Opened(name, real, fd, kind, facts.st_size)


def sniff(head: bytes, named: Kind, name: str = "this file") -> Kind:
    """The kind to read a file as, from its first bytes and the kind its name says."""
    if head.startswith(b"%PDF-") or (named == "pdf" and b"%PDF-" in head[:1024]):
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return "docx"  # the child checks it really is one
    if named in ("pdf", "docx"):
        raise _rejected(name, "damaged", {"not_really": True}, named)
    if head.startswith(_BINARY_MAGIC):
        raise _rejected(name, "not_text", kind=named)
    return named


def _head(fd: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, _HEAD_BYTES, 0)
    head = os.read(fd, _HEAD_BYTES)
    os.lseek(fd, 0, os.SEEK_SET)
    return head


def _can_pass_fds() -> bool:
    # TODO(windows): asyncio can't hand a descriptor to a child there, so the child
    # reopens the checked path (a short window in which it could be swapped).
    return sys.platform != "win32"


# ------------------------------------------------------------------------------ child


def child_command() -> list[str]:
    """How to start the extraction child: this interpreter with `-m`, or, frozen, the app
    itself (whose entry point must hand `--extract-document ARGS` to extract_child.main)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--extract-document"]
    return [sys.executable, "-m", "app.core.documents.extract_child"]


def _child_env(temp: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("TMPDIR", "TEMP", "TMP"):
        env[name] = temp  # anything a library spills lands where it is removed after
    root = str(Path(__file__).resolve().parents[3])  # the folder holding `app`
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    env["PYTHONIOENCODING"] = "utf-8"
    if sys.platform.startswith("linux"):
        # glibc hands freed heap back to the system at once and faults it in again for
        # the next page: PDFium's per-page character arrays made 10-15% of a child's CPU
        # time page faults. Growing the heap in 16 MiB steps keeps it (within the limit).
        tunables = [env.get("GLIBC_TUNABLES", ""), "glibc.malloc.top_pad=16777216"]
        env["GLIBC_TUNABLES"] = ":".join(filter(None, tunables))
    return env


async def _run_children(opened: Opened, limits: Limits, count: int) -> list[dict[str, Any]]:
    """Runs `count` children on shares of the opened file, at once; all their results,
    or the first refusal alone (the others are killed then). Every child is reaped
    before this returns, even when it is cancelled."""
    if count == 1:
        return [await _run_child(opened, limits)]
    tasks = [asyncio.ensure_future(_run_child(opened, limits, (index, count)))
             for index in range(count)]
    try:
        pending: set[asyncio.Future[dict[str, Any]]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.result().get("ok"):
                    return [task.result()]
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()  # each kills and reaps its child
        settling = asyncio.gather(*tasks, return_exceptions=True)
        try:
            await asyncio.shield(settling)
        except asyncio.CancelledError:
            await settling  # cancelled again: still reap before giving up the task
            raise


async def _run_child(opened: Opened, limits: Limits,
                     share: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """Runs the child on (its share of) the opened file; its parsed JSON, or a refusal's
    code."""
    command = [*child_command(), "--kind", opened.kind,
               "--caps", json.dumps(limits.caps()._asdict()),
               "--memory", str(limits.memory_bytes), "--cpu", str(math.ceil(limits.timeout_s)),
               "--share", f"{share[0]}/{share[1]}"]
    command += (["--fd", str(opened.fd)] if opened.fd is not None
                else ["--path", str(opened.real)])
    temp = tempfile.mkdtemp(prefix="switchboard-extract-")
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=_child_env(temp), cwd=temp,
            pass_fds=(opened.fd,) if opened.fd is not None else ())
        try:
            return await _talk(process, limits)
        finally:
            await _reap(process)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


async def _talk(process: asyncio.subprocess.Process, limits: Limits) -> dict[str, Any]:
    assert process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(limits.timeout_s):
            out, tail = await asyncio.gather(
                _read_bounded(process, process.stdout, limits.output_bytes()),
                _read_tail(process.stderr))
            code = await process.wait()
    except TimeoutError:
        return {"ok": False, "code": "too_slow", "facts": {}}
    if out is None:
        log.warning("extraction child wrote more than %d bytes; killed", limits.output_bytes())
        return {"ok": False, "code": "damaged", "facts": {}}
    try:
        result = json.loads(out) if out else None
    except ValueError:
        result = None
    if isinstance(result, dict) and code == 0:
        return result
    if code in _KILLED:
        return {"ok": False, "code": "too_slow", "facts": {}}  # its own CPU limit
    log.warning("extraction child ended with %s: %s", code, tail[-1_000:])
    if b"MemoryError" in tail:
        return {"ok": False, "code": "too_much_memory", "facts": {}}
    # Most often PDFium's allocator aborting at the memory limit; a crash on a malformed
    # file looks the same from here.
    return {"ok": False, "code": "crashed", "facts": {"exit": code}}


async def _read_bounded(process: asyncio.subprocess.Process, stream: asyncio.StreamReader,
                        limit: int) -> bytes | None:
    """All of `stream`, or None (and the child killed) past `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(1 << 16):
        size += len(chunk)
        if size > limit:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_tail(stream: asyncio.StreamReader) -> bytes:
    tail = b""
    while chunk := await stream.read(1 << 16):
        tail = (tail + chunk)[-_STDERR_TAIL:]
    return tail


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Kills the child if it still runs and waits for it, even while being cancelled."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    waiting = asyncio.ensure_future(process.wait())
    try:
        await asyncio.shield(waiting)
    except asyncio.CancelledError:
        await waiting  # a second cancel: still reap before giving up the task
        raise


def _document(path: Path, opened: Opened, results: list[dict[str, Any]],
              limits: Limits) -> Document:
    """The document from its children's results, in share order; anything that doesn't
    fit together (a share missing, pages out of order, counts that differ) is damage."""
    digest, kind = results[0].get("sha256"), results[0].get("kind")
    counts = {result.get("count") for result in results}
    if (not isinstance(digest, str) or not _SHA256.fullmatch(digest)
            or kind not in KIND_NAMES or len(counts) != 1):
        raise _rejected(opened.name, "damaged")
    texts: list[str] = []
    truncated = False
    for result in results:
        pages = result.get("pages")
        if (not isinstance(pages, list) or not all(isinstance(text, str) for text in pages)
                or result.get("kind") != kind or result.get("first") != len(texts)):
            raise _rejected(opened.name, "damaged")
        texts += pages
        if result.get("truncated"):
            truncated = True  # a share that stopped early: the shares after it don't count
            break
    count = counts.pop()
    if not truncated and isinstance(count, int) and len(texts) != min(count, limits.max_pages):
        raise _rejected(opened.name, "damaged")
    # The character cap is the whole document's, however its pages were shared out.
    chars = 0
    for index, text in enumerate(texts):
        if chars + len(text) > limits.max_chars:
            texts[index:] = [text[: limits.max_chars - chars]]
            truncated = True
            break
        chars += len(text)
    return Document(path=path, kind=cast(Kind, kind),
                    pages=[Page(number, text) for number, text in enumerate(texts, 1)],
                    sha256=digest, size_bytes=opened.size, truncated=truncated)


# ------------------------------------------------------------------------------ words

_SUPPORTED = errors.SUPPORTED_DOCUMENTS
_HARMFUL = ("It may have been made to harm computers: don't open it elsewhere either, "
            "and tell IT where it came from.")
_RESAVE = ("Open it in the program that made it, save or export it again (as PDF, for "
           "example) and try again.")


def _mb(size: float, *, up: bool = False) -> str:
    megabytes = size / 1_000_000
    if megabytes < 10:
        return f"{(math.ceil(megabytes * 10) / 10 if up else megabytes):.1f} MB"
    return f"{math.ceil(megabytes) if up else round(megabytes):,} MB"


def _rejected(name: str, code: str, facts: dict[str, Any] | None = None,
              kind: Kind | None = None, limits: Limits = DEFAULT_LIMITS) -> (
        errors.DocumentRejected):
    """The refusal `code` in words a department user understands, with what to do."""
    facts = facts or {}
    what = KIND_NAMES[kind] if kind else "document"
    if code == "missing":
        reason, hint = f"{name} can't be found.", "It may have been moved or deleted."
    elif code == "unreadable":
        reason, hint = f"{name} can't be opened.", "Check that you may open it, then try again."
    elif code == "outside_link":
        reason = f"{name} is a link to a file outside its folder."
        hint = "Drop the original file instead of the link."
    elif code == "folder":
        reason, hint = f"{name} is a folder.", "Drop the files inside it one at a time."
    elif code == "not_file":
        reason = f"{name} isn't a regular file (it is a pipe or a device)."
        hint = "Save what it holds to a file first, then drop that file."
    elif code == "unsupported":
        suffix = facts.get("suffix") or "(no extension)"
        reason = f"Unsupported file type {suffix} — Switchboard reads {_SUPPORTED}."
        hint = "Save it as PDF or Word (.docx) and try again."
    elif code == "too_big":
        reason = (f"{name} is too big ({_mb(facts.get('size', 0), up=True)}; "
                  f"the limit is {_mb(limits.max_file_bytes)}).")
        hint = "Split it into smaller files, or ask IT to raise the document size limit."
    elif code == "empty":
        reason, hint = f"{name} is empty.", "Choose a file that has something in it."
    elif code == "damaged" and facts.get("incomplete"):
        reason = f"{name} is damaged: it ends too early."
        hint = "It may not have finished downloading or copying. Get it again and retry."
    elif code == "damaged" and facts.get("not_really"):
        reason, hint = f"{name} is damaged, or isn't really a {what}.", _RESAVE
    elif code == "damaged":
        reason, hint = f"{name} is damaged and can't be read as a {what}.", _RESAVE
    elif code == "not_text":
        reason = f"{name} isn't readable text."
        hint = f"Switchboard reads {_SUPPORTED}. {_RESAVE}"
    elif code == "password":
        reason = f"{name} is protected by a password."
        hint = "Remove the password (or print it to a new PDF) and try again."
    elif code == "zip_bomb":
        if "entries" in facts:
            why = f"it holds {facts['entries']:,} parts (the limit is {facts['limit']:,})"
        elif "unpacked" in facts:
            why = (f"it would unpack to {_mb(facts['unpacked'], up=True)} "
                   f"(the limit is {_mb(facts['limit'])})")
        else:
            why = (f"a part of it would grow {facts.get('ratio', 0):,.0f} times when "
                   f"unpacked (the limit is {facts.get('limit', 0):,.0f})")
        reason, hint = f"{name} looks like a zip bomb: {why}.", _HARMFUL
    elif code == "unsafe_xml":
        reason = f"{name} has an unsafe XML declaration (a DTD), so it was not opened."
        hint = _HARMFUL
    elif code == "too_slow":
        reason = f"{name} took too long to read (over {limits.timeout_s:g} seconds)."
        hint = "It may be damaged or very large. Try splitting it, or saving it again as PDF."
    elif code == "too_much_memory":
        reason = (f"{name} needed more memory to read than Switchboard allows "
                  f"({_mb(limits.memory_bytes)}).")
        hint = f"It may be damaged, or made to cause trouble. {_RESAVE}"
    elif code == "crashed":
        reason = (f"{name} is damaged or too complex to read safely: reading it used up "
                  f"its {_mb(limits.memory_bytes)} memory allowance or crashed the reader.")
        hint = f"It may also have been made to cause trouble. {_RESAVE}"
    else:
        code, reason, hint = "damaged", f"{name} can't be read.", _RESAVE
    log.info("document refused: %s %s", code, facts)  # facts: sizes and error names only
    return errors.DocumentRejected(reason=reason, code=code, hint=hint)
