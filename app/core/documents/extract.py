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
Windows) and CPU time and writes what it read as JSON lines to stdout, each read up to
a bound. The parent kills it at the wall-clock timeout, always reaps it, and removes
the private temporary folder it was given. Every refusal is an `errors.DocumentRejected`
in plain words.

A PDF is read in runs of pages that the parent hands out (`_Plan`), and a long one by
several such children at once from the same handed-over file, under the same limits
(`reader_count`): PDFium's text layout, ~1.5 ms a page, is most of the time, and one
process uses one core. Handing out short runs as children ask, instead of fixed
shares, lets a child on a faster (or less busy) core read more: two children on two
cores often finish 30-50% apart otherwise. A refusal or crash ends all of them (one on
a run of pages, once the runs before it show whether its pages are in the document).
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
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.core import errors
from app.core.documents.extract_child import spec_arguments
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
_HEAD_BYTES = 8_192
_STDERR_TAIL = 4_096
# A PDF smaller than this is read by one child: it can't have enough pages (a page of
# plain text takes at least ~0.7 kB) for a second child to save more than its own
# start-up (~30-50 ms). A bigger one with few pages costs the extra children only that,
# on other cores: they count the pages, are given none and end.
SPLIT_MIN_BYTES = 50_000
_CHILD_MAIN = "from app.core.documents.extract_child import main; raise SystemExit(main())"
# A PDF reader is asked for runs of at most this many pages (~25 ms), shrinking towards
# the end so that the children finish close together, and holds two runs at a time so
# that it never waits for the next.
MAX_RUN_PAGES = 16
_RUNS_AHEAD = 2
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

    def __repr__(self) -> str:
        # Without the text: asyncio.run formats the repr of its task's result when it
        # ends (restoring the SIGINT handler), which for a 300-page document was a
        # 1.3 MB string and 17 ms of the CLI's and the benchmark's time; logs stay short.
        return (f"Document(path={self.path!r}, kind={self.kind!r}, pages={len(self.pages)}, "
                f"chars={sum(len(page.text) for page in self.pages)}, "
                f"sha256={self.sha256[:12]!r}…, size_bytes={self.size_bytes}, "
                f"truncated={self.truncated})")


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
    # Hashed here, beside the children: the hash is only read, never parsed.
    hashing = asyncio.ensure_future(asyncio.to_thread(file_sha256, opened))
    try:
        if opened.kind == "pdf":
            plan = _Plan(reader_count(opened, limits), limits)
            result = await _run_children(opened, limits, plan)
            if result.get("ok"):
                result = plan.result()
        else:
            result = await _run_child(opened, limits, _read_whole)
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
    open file's own offset is shared with the children, which could move it."""
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


def reader_count(opened: Opened, limits: Limits) -> int:
    """How many children read `opened`: one, or for a PDF big enough to be long, one a
    core up to `limits.max_readers`, and only as many as fit in half of the machine's
    memory at their memory limit each, so that all of them at their limit (a bomb in a
    page every child may read) still leave the rest of the machine room."""
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
    """How to start the extraction child: this interpreter running extract_child.main,
    or, frozen, the app itself (whose entry point must hand `--extract-document ARGS` to
    extract_child.main). `-S`: no `site` (its .pth files and editable-install finders
    were ~25 ms of each child's start-up); the child's PYTHONPATH is this process's
    import path instead. `-c`, not `-m`: runpy's imports were another ~3 ms."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--extract-document"]
    python = sys.executable
    if sys.platform == "win32":
        # A venv's python.exe there is a launcher that runs the real interpreter as its
        # own child, which killing the launcher would leave running. With the import
        # path given explicitly, the base interpreter serves.
        python = getattr(sys, "_base_executable", python)
    return [python, "-S", "-c", _CHILD_MAIN]


def _child_env(temp: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("TMPDIR", "TEMP", "TMP"):
        env[name] = temp  # anything a library spills lands where it is removed after
    root = str(Path(__file__).resolve().parents[3])  # the folder holding `app`
    if getattr(sys, "frozen", False):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    else:  # what `site` would have added, and anything else this process may import
        env["PYTHONPATH"] = os.pathsep.join(
            dict.fromkeys([root, *(entry for entry in sys.path if os.path.exists(entry))]))
    env["PYTHONIOENCODING"] = "utf-8"
    if sys.platform.startswith("linux"):
        # glibc hands freed heap back to the system at once and faults it in again for
        # the next page: PDFium's per-page character arrays made 10-15% of a child's CPU
        # time page faults. Growing the heap in 16 MiB steps keeps it (within the limit).
        tunables = [env.get("GLIBC_TUNABLES", ""), "glibc.malloc.top_pad=16777216"]
        env["GLIBC_TUNABLES"] = ":".join(filter(None, tunables))
    return env


Reply = dict[str, Any]  # one JSON line from a child, "ok" true or a refusal's code
Conversation = Callable[[asyncio.subprocess.Process], Awaitable[Reply | None]]
_DAMAGED: Reply = {"ok": False, "code": "damaged", "facts": {}}


class _Plan:
    """The pages of one PDF, handed out in runs to the children reading it as each
    asks, and the runs they sent back. Runs are handed out in page order and only
    while nothing has stopped reading (a cap, a truncated run), so the runs read
    always make up the document's first pages."""

    def __init__(self, readers: int, limits: Limits) -> None:
        self.readers = readers
        self._limits = limits
        self._count: int | None = None
        self._next = 0
        self._runs: dict[int, tuple[list[str], bool]] = {}
        self._chars = 0
        self._cut = False  # a run came back truncated (a cap inside the child)
        self._failed_at: int | None = None  # the first page of the earliest failed run

    def agree(self, head: Reply) -> bool:
        """Takes a child's first line, its page count; false when that doesn't fit with
        what the others counted."""
        count = head.get("count")
        if not isinstance(count, int) or count < 1:
            return False
        if self._count is None:
            self._count = count
        return count == self._count

    def take(self) -> tuple[int, int] | None:
        """The next run of pages [first, stop) to ask for, or None: nothing is left."""
        assert self._count is not None
        stop = min(self._count, self._limits.max_pages)
        if (self._next >= stop or self._chars >= self._limits.max_chars or self._cut
                or self._failed_at is not None):
            return None
        size = max(1, min(MAX_RUN_PAGES, (stop - self._next) // (4 * self.readers)))
        first, self._next = self._next, self._next + size
        return first, self._next

    def budget(self) -> int:
        """The characters a run may still bring: what the character cap leaves."""
        return max(0, self._limits.max_chars - self._chars)

    def needed(self, first_page: int) -> bool:
        """Whether pages from `first_page` on can still be in the document: false once
        the pages before it are known to reach a cap, or a run before it failed."""
        if self._failed_at is not None and first_page > self._failed_at:
            return False
        chars = 0
        for first, pages, truncated in self._in_order():
            chars += sum(len(text) for text in pages)
            if truncated or chars >= self._limits.max_chars:
                return first_page < first + len(pages)
        return True

    def failed(self, run: tuple[int, int]) -> None:
        """Notes that reading `run` failed; no run after it is handed out any more."""
        if self._failed_at is None or run[0] < self._failed_at:
            self._failed_at = run[0]

    def _in_order(self) -> Iterator[tuple[int, list[str], bool]]:
        """The runs read, from the first page on, as far as they follow each other."""
        expected = 0
        for first in sorted(self._runs):
            if first != expected:
                return  # a run before it is still being read
            pages, truncated = self._runs[first]
            yield first, pages, truncated
            expected += len(pages)

    def put(self, run: tuple[int, int], reply: Reply) -> bool:
        """Keeps the pages a child sent for `run`; false when they aren't that run."""
        pages, truncated = reply.get("pages"), reply.get("truncated") is True
        if (reply.get("first") != run[0] or not isinstance(pages, list)
                or not all(isinstance(text, str) for text in pages)
                or len(pages) > run[1] - run[0]
                or (len(pages) < run[1] - run[0] and not truncated)):
            return False
        self._runs[run[0]] = (pages, truncated)
        self._chars += sum(len(text) for text in pages)
        self._cut |= truncated
        return True

    def result(self) -> Reply:
        """The pages read, in order, as one reply (as a child reading a whole file
        sends it); `truncated` when a cap stopped reading before the last page."""
        assert self._count is not None
        texts: list[str] = []
        truncated = False
        for _, pages, truncated in self._in_order():
            texts += pages
            if truncated:
                break  # runs asked for after a truncated one don't count
        truncated = truncated or len(texts) < self._count
        return {"ok": True, "pages": texts, "truncated": truncated}


async def _run_children(opened: Opened, limits: Limits, plan: _Plan) -> Reply:
    """Runs `plan.readers` children on the opened PDF at once, each reading the runs of
    pages `plan` gives it; {"ok": True}, or a refusal. Every child is reaped before this
    returns, even when it is cancelled.

    A refusal before any page (a password, a damaged file) ends the others at once. A
    failure reading a run (a bomb, a crash) ends them once the runs before it are read:
    if those reach a cap, the failed pages aren't in the document and it is read as one
    child reading page after page would have read it."""
    readers = [_Reader(plan) for _ in range(plan.readers)]
    tasks: dict[asyncio.Future[Reply], _Reader] = {
        asyncio.ensure_future(_run_child(opened, limits, reader)): reader
        for reader in readers}
    try:
        failures: list[tuple[int, Reply]] = []
        pending: set[asyncio.Future[Reply]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                result, failed_at = task.result(), tasks[task].failed_at
                if result.get("ok"):
                    continue
                if failed_at is None:
                    return result
                failures.append((failed_at, result))
        for failed_at, result in sorted(failures, key=lambda failure: failure[0]):
            if plan.needed(failed_at):
                return result
        return {"ok": True}
    finally:
        for task in tasks:
            task.cancel()  # each kills and reaps its child
        settling = asyncio.gather(*tasks, return_exceptions=True)
        try:
            await asyncio.shield(settling)
        except asyncio.CancelledError:
            await settling  # cancelled again: still reap before giving up the task
            raise


class _Reader:
    """One PDF child's part (a `Conversation`): its page count, then runs of pages as
    the plan hands them out, two asked for at a time (each with the characters it may
    still bring); then its stdin is closed, which ends it. Runs no longer needed (past
    a cap another run reached) are not waited for. `failed_at`: the first page of the
    run it failed on, if it failed reading one."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.failed_at: int | None = None

    async def __call__(self, process: asyncio.subprocess.Process) -> Reply | None:
        plan, stdin = self.plan, process.stdin
        assert stdin is not None
        head = await _reply(process)
        if head is None or not head.get("ok"):
            return head
        if not plan.agree(head):
            return _DAMAGED
        asked: deque[tuple[int, int]] = deque()

        def ask() -> None:
            if (run := plan.take()) is not None:
                stdin.write(b"%d %d %d\n" % (*run, plan.budget()))
                asked.append(run)

        for _ in range(_RUNS_AHEAD):
            ask()
        while asked and plan.needed(asked[0][0]):
            reply = await _reply(process)
            run = asked.popleft()
            if reply is None or not reply.get("ok") or not plan.put(run, reply):
                self.failed_at = run[0]
                plan.failed(run)
                return reply if reply is None or not reply.get("ok") else _DAMAGED
            ask()
        stdin.close()
        return {"ok": True}


async def _read_whole(process: asyncio.subprocess.Process) -> Reply | None:
    """A DOCX, text or HTML child's part: one line with all its pages."""
    return await _reply(process)


async def _run_child(opened: Opened, limits: Limits, converse: Conversation) -> Reply:
    """Runs a child on the opened file, talking to it with `converse`; its last reply,
    or a refusal's (a crash, the timeout). Once it has answered, it is stopped (it
    would end by itself) and reaped."""
    caps = limits.caps()
    spec: dict[str, object] = {
        "kind": opened.kind, "memory": limits.memory_bytes,
        "cpu": math.ceil(limits.timeout_s),
        **{name: getattr(caps, name) for name in caps.__slots__},
        **({"fd": opened.fd} if opened.fd is not None else {"path": str(opened.real)})}
    temp = tempfile.mkdtemp(prefix="switchboard-extract-")
    try:
        process = await asyncio.create_subprocess_exec(
            *child_command(), *spec_arguments(spec), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=_child_env(temp), cwd=temp, limit=limits.output_bytes(),
            pass_fds=(opened.fd,) if opened.fd is not None else ())
        assert process.stderr is not None
        tail = asyncio.ensure_future(_read_tail(process.stderr))
        try:
            async with asyncio.timeout(limits.timeout_s):
                reply = await converse(process)
                if reply is not None:
                    return reply  # its answer, or its own refusal, whatever its exit
                # Its output ended early: it died, or closed its output and lives on.
                assert process.stdin is not None
                process.stdin.close()
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
    """The child's next line, parsed; None where its output ended first. A line that is
    not a JSON object, or longer than any honest one, is damage (the child killed)."""
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
              limits: Limits) -> Document:
    """The document from the children's pages; anything malformed is damage."""
    texts = result.get("pages")
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise _rejected(opened.name, "damaged")
    truncated = result.get("truncated") is True
    # The character cap is the whole document's, however its pages were read.
    chars = 0
    for index, text in enumerate(texts):
        if chars + len(text) > limits.max_chars:
            texts[index:] = [text[: limits.max_chars - chars]]
            truncated = True
            break
        chars += len(text)
    return Document(path=path, kind=opened.kind,
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
