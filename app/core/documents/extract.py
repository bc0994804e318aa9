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

One child (`extract_child`) reads one document: it limits its own address space
(RLIMIT_AS; a Job Object on Windows) and CPU time, and writes what it read as one line
of JSON to stdout, which is read up to a bound. The parent kills it at the wall-clock
timeout or when the awaiting task is cancelled, always reaps it, and removes the
private temporary folder it was given. Every refusal is an `errors.DocumentRejected`
in plain words.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import stat
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from app.core import errors
from app.core.documents.extract_child import spec_arguments
from app.core.documents.formats import Caps

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
_HEAD_BYTES = 8_192
_STDERR_TAIL = 4_096
# A child whose output ended may take this long to exit before it counts as gone wrong.
_EXIT_GRACE_S = 2.0
# How a child killed at its CPU limit ends (POSIX only: Windows has neither signal, and
# there the wall-clock timeout stops a slow child).
_KILLED = frozenset(-number for name in ("SIGKILL", "SIGXCPU")
                    if (number := getattr(signal, name, None)) is not None)


@dataclass(frozen=True, slots=True)
class Page:
    """One page's text; `number` counts from 1."""

    number: int
    text: str


@dataclass(frozen=True, slots=True, repr=False)
class ExtractedDocument:
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

    def __repr__(self) -> str:
        # Without the text: it is private, and megabytes long; asyncio.run formats the
        # repr of its task's result when it ends, and a log line may name a document.
        return (f"ExtractedDocument(path={self.path!r}, kind={self.kind!r}, "
                f"pages={len(self.pages)}, "
                f"chars={sum(len(page.text) for page in self.pages)}, "
                f"sha256={self.sha256[:12]!r}…, size_bytes={self.size_bytes}, "
                f"truncated={self.truncated})")


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one document may cost. The defaults fit a desktop reading office files."""

    max_file_bytes: int = 200_000_000  # checked with stat before anything is read
    timeout_s: float = 60.0  # wall clock for the child; it is killed after this
    memory_bytes: int = 2 << 30  # the child's address space (RLIMIT_AS)
    max_pages: int = 5_000  # reading stops here (ExtractedDocument.truncated)
    max_chars: int = 10_000_000  # reading stops here too; also bounds the child's output
    max_zip_entries: int = 2_000  # a DOCX with more parts is refused as a zip bomb
    max_unpacked_bytes: int = 500_000_000  # a DOCX whose parts unpack to more is too
    max_zip_ratio: float = 100.0  # …or with a part (over 1 MiB) that grows more than this

    def caps(self) -> Caps:
        return Caps(max_pages=self.max_pages, max_chars=self.max_chars,
                    max_zip_entries=self.max_zip_entries,
                    max_unpacked_bytes=self.max_unpacked_bytes,
                    max_zip_ratio=self.max_zip_ratio)

    def output_bytes(self) -> int:
        """The most JSON an honest child writes: 4 UTF-8 bytes a character at most."""
        return 4 * self.max_chars + 8 * self.max_pages + 65_536


DEFAULT_LIMITS = Limits()


async def extract(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> ExtractedDocument:
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
    # Hashed here, beside the child: the hash is only read, never parsed.
    hashing = asyncio.ensure_future(asyncio.to_thread(file_sha256, opened))
    try:
        result = await _run_child(opened, limits)
        if not result.get("ok"):
            raise _refused(opened, result, limits)
        try:
            digest = await asyncio.shield(hashing)  # cancelled, the thread still runs
        except OSError as error:
            raise _rejected(opened.name, "unreadable", {"error": str(error)}) from None
    finally:
        # Once the hashing thread, which can't be stopped, is done with the file.
        hashing.add_done_callback(functools.partial(_close_when_hashed, opened.fd))
    return _document(path, opened, result, digest, limits)


def _close_when_hashed(fd: int | None, hashing: asyncio.Future[str]) -> None:
    if not hashing.cancelled():
        hashing.exception()  # retrieved: after a refusal, a failed hash doesn't matter
    if fd is not None:
        os.close(fd)


def file_sha256(opened: Opened) -> str:
    """The SHA-256 of the opened file's bytes; blocking. Read at explicit offsets: the
    open file's own offset is shared with the child, which moves it."""
    if opened.fd is None:
        with open(opened.real, "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    digest, offset = hashlib.sha256(), 0
    while block := os.pread(opened.fd, 1 << 20, offset):
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


def _refused(opened: Opened, result: Reply, limits: Limits) -> errors.DocumentRejected:
    """A child's refusal in words; one whose facts don't fit its code (a child gone
    wrong) is damage."""
    facts = result.get("facts")
    try:
        return _rejected(opened.name, str(result.get("code")),
                         facts if isinstance(facts, dict) else {}, opened.kind, limits)
    except (TypeError, ValueError, KeyError):
        return _rejected(opened.name, "damaged", kind=opened.kind, limits=limits)


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
    """How to start the extraction child: this interpreter running extract_child, or,
    frozen, the app itself (whose entry point must hand `--extract-document ARGS` to
    extract_child.main)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--extract-document"]
    python = sys.executable
    if sys.platform == "win32":
        # A venv's python.exe there is a launcher that runs the real interpreter as its
        # own child, which killing the launcher would leave running. With the import
        # path given explicitly (`_child_env`), the base interpreter serves.
        python = getattr(sys, "_base_executable", python)
    return [python, "-m", "app.core.documents.extract_child"]


def _child_env(temp: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("TMPDIR", "TEMP", "TMP"):
        env[name] = temp  # anything a library spills lands where it is removed after
    if not getattr(sys, "frozen", False):
        # The child imports what this process imports: this `app` and these libraries,
        # wherever it is started from (its working folder is `temp`), and from the base
        # interpreter on Windows (`child_command`).
        root = str(Path(__file__).resolve().parents[3])  # the folder holding `app`
        env["PYTHONPATH"] = os.pathsep.join(
            dict.fromkeys([root, *(entry for entry in sys.path if os.path.exists(entry))]))
    if sys.platform.startswith("linux"):
        # glibc hands freed heap back to the system at once and faults it in again for
        # the next page, and PDFium allocates and frees each page's text arrays: that
        # churn was a large share of a PDF child's time. Growing the heap in 16 MiB
        # steps keeps the memory (still within the child's limit).
        tunables = [env.get("GLIBC_TUNABLES", ""), "glibc.malloc.top_pad=16777216"]
        env["GLIBC_TUNABLES"] = ":".join(filter(None, tunables))
    return env


Reply = dict[str, Any]  # the child's JSON line: "ok" true with its pages, or a refusal's code
_DAMAGED: Reply = {"ok": False, "code": "damaged", "facts": {}}


async def _run_child(opened: Opened, limits: Limits) -> Reply:
    """Runs a child on the opened file; its reply, or a refusal's (a crash, the timeout).
    Once it has answered, it is stopped (it would end by itself) and reaped, also when
    this is cancelled."""
    spec: dict[str, object] = {
        "kind": opened.kind, "memory": limits.memory_bytes,
        "cpu": math.ceil(limits.timeout_s), **asdict(limits.caps()),
        **({"fd": opened.fd} if opened.fd is not None else {"path": str(opened.real)})}
    temp = tempfile.mkdtemp(prefix="switchboard-extract-")
    try:
        process = await asyncio.create_subprocess_exec(
            *child_command(), *spec_arguments(spec), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=_child_env(temp), cwd=temp, limit=limits.output_bytes(),
            pass_fds=(opened.fd,) if opened.fd is not None else ())
        assert process.stderr is not None
        tail = asyncio.ensure_future(_read_tail(process.stderr))
        try:
            async with asyncio.timeout(limits.timeout_s):
                reply = await _reply(process)
                if reply is not None:
                    return reply  # its answer, or its own refusal, whatever its exit
                # Its output ended early: it died, or closed its output and lives on.
                try:
                    code = await asyncio.wait_for(process.wait(), _EXIT_GRACE_S)
                except TimeoutError:
                    return _DAMAGED
                return _failure(code, await tail)
        except TimeoutError:
            return {"ok": False, "code": "too_slow", "facts": {}}
        finally:
            await _reap(process)
            tail.cancel()
    finally:
        shutil.rmtree(temp, ignore_errors=True)


async def _reply(process: asyncio.subprocess.Process) -> Reply | None:
    """The child's line, parsed; None where its output ended first. A line that is not
    a JSON object, or longer than any honest one, is damage (the child killed)."""
    assert process.stdout is not None
    try:
        line = await process.stdout.readline()
    except ValueError:  # over the stream's limit, Limits.output_bytes
        log.warning("extraction child wrote an over-long line; killed")
        return _killed(process)
    if not line.endswith(b"\n"):
        return None
    try:
        reply = json.loads(line)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        log.warning("extraction child wrote something other than its answer; killed")
        return _killed(process)
    return reply


def _killed(process: asyncio.subprocess.Process) -> Reply:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    return _DAMAGED


def _failure(code: int, tail: bytes) -> Reply:
    """A refusal for a child that ended without a (complete) answer."""
    if code in _KILLED:
        return {"ok": False, "code": "too_slow", "facts": {}}  # its own CPU limit
    log.warning("extraction child ended with %s: %s", code, tail[-1_000:])
    if b"MemoryError" in tail:
        return {"ok": False, "code": "too_much_memory", "facts": {}}
    # Most often PDFium's allocator aborting at the memory limit; a crash on a malformed
    # file looks the same from here.
    return {"ok": False, "code": "crashed", "facts": {"exit": code}}


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


def _document(path: Path, opened: Opened, result: Reply, digest: str,
              limits: Limits) -> ExtractedDocument:
    """The document from the child's pages; anything malformed is damage. The caps hold
    here too, whatever the child sent."""
    texts = result.get("pages")
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise _rejected(opened.name, "damaged")
    truncated = result.get("truncated") is True or len(texts) > limits.max_pages
    del texts[limits.max_pages:]
    chars = 0
    for index, text in enumerate(texts):
        if chars + len(text) > limits.max_chars:
            texts[index:] = [text[: limits.max_chars - chars]]
            truncated = True
            break
        chars += len(text)
    return ExtractedDocument(path=path, kind=opened.kind,
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
