"""The extraction child: reads one document under memory and CPU limits and writes what
it read to stdout as JSON lines. Started only by `extract.extract()`, with NAME=VALUE
arguments naming the handed-over file (`fd`, or `path` where descriptors can't be
passed), its `kind`, the `memory` and `cpu` limits and the readers' caps (`Caps`):

    python -S -c "from app.core.documents.extract_child import main; …" fd=5 kind=pdf …

A DOCX, text or HTML file is read whole: one line, its pages. A PDF is read in runs of
pages the parent asks for, so that several children can read one long PDF and the
faster ones read more: the first line gives the page count, then each line
"FIRST STOP CHARS" on stdin is answered by one line with those pages (at most CHARS
characters of them), until stdin ends.
A refusal is a line too, and the last.

It limits itself before it touches the file; if a parser still blows up (PDFium
aborting on a failed allocation, a segfault), only this process dies.

Every document, and every reader of a long PDF, pays this process's start-up again, so
reading a PDF imports little beyond PDFium: no json (with the re and enum modules it
brings, ~8 ms), typing or collections; `to_json` writes the replies.
"""

from __future__ import annotations

import io
import os
import sys

from app.core.documents import readers

try:
    from _json import encode_basestring  # what json.dumps uses, without json's imports
except ImportError:  # an interpreter without CPython's accelerator
    from json.encoder import py_encode_basestring as encode_basestring

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Buffer
    from typing import IO

CPU_GRACE_S = 2


def limit_resources(memory_bytes: int, cpu_s: int) -> None:
    """Caps this process's memory and CPU time, and turns off core dumps (POSIX); on
    Windows, puts it in a Job Object with the memory limit (its time is bounded by the
    parent's wall-clock timeout, which a single-threaded child reaches first anyway)."""
    if sys.platform == "win32":
        from app.core.documents import job_object

        job_object.limit_this_process(memory_bytes)
        return
    import resource

    def cap(which: int, value: int, hard_extra: int = 0) -> None:
        _, hard = resource.getrlimit(which)
        ceiling = hard if hard != resource.RLIM_INFINITY else value + hard_extra
        resource.setrlimit(which, (min(value, ceiling), min(value + hard_extra, ceiling)))

    cap(resource.RLIMIT_AS, memory_bytes)
    cap(resource.RLIMIT_CPU, cpu_s, hard_extra=1)  # SIGXCPU, then SIGKILL a second later
    cap(resource.RLIMIT_CORE, 0)  # a crash leaves no core file behind


class AtOffsets(io.RawIOBase):
    """The handed-over descriptor, read with pread at this reader's own offset: the
    children reading shares of one PDF hold the same open file, whose shared offset
    one child's seek would otherwise move under another's read."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._offset = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._offset

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._offset,
                os.SEEK_END: os.fstat(self._fd).st_size}[whence]
        if base + offset < 0:
            raise OSError("negative seek position")
        self._offset = base + offset
        return self._offset

    def readinto(self, buffer: Buffer) -> int:
        if sys.platform == "win32":  # never handed a descriptor there (see extract.py)
            raise io.UnsupportedOperation("pread")
        if hasattr(os, "preadv"):
            done = os.preadv(self._fd, [buffer], self._offset)
        else:  # macOS before 11
            view = memoryview(buffer).cast("B")
            data = os.pread(self._fd, len(view), self._offset)
            done = len(data)
            view[:done] = data
        self._offset += done
        return done

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def refusal(error: BaseException) -> dict[str, object]:
    """What a reader's failure is to the parent: a refusal's code, and plain facts."""
    if isinstance(error, readers.Refusal):
        return {"ok": False, "code": error.code, "facts": error.facts}
    if isinstance(error, MemoryError):
        return {"ok": False, "code": "too_much_memory", "facts": {}}
    # Any parser's failure on a malformed file.
    return {"ok": False, "code": "damaged",
            "facts": {"error": f"{type(error).__name__}: {error}"[:300]}}


def serve(spec: dict[str, str], file: IO[bytes], out: IO[str], requests: IO[bytes]) -> None:
    """Reads `file` as `spec` says, answering on `out` (and, for a PDF, `requests`)."""
    caps = caps_of(spec)
    try:
        if spec["kind"] != "pdf":
            pages = readers.read(spec["kind"], file, caps)
            _write(out, {"ok": True, "pages": pages.texts, "truncated": pages.truncated})
            return
        pdf = readers.open_pdf(file)
    except Exception as error:  # noqa: BLE001 - every failure is answered as a refusal
        _write(out, refusal(error))
        return
    with pdf:
        _write(out, {"ok": True, "count": len(pdf)})
        while request := requests.readline():
            first, stop, budget = (int(number) for number in request.split())
            try:
                pages = readers.pdf_pages(pdf, first, stop, min(budget, caps.max_chars))
            except Exception as error:  # noqa: BLE001
                _write(out, refusal(error))
                return
            _write(out, {"ok": True, "first": first, "pages": pages.texts,
                         "truncated": pages.truncated})


def spec_arguments(spec: dict[str, object]) -> list[str]:
    """The child's arguments for `spec` (what `parse_spec` reads back)."""
    return [f"{name}={value}" for name, value in spec.items()]


def parse_spec(args: list[str]) -> dict[str, str]:
    spec = {}
    for arg in args:
        name, equals, value = arg.partition("=")
        if not equals:
            raise ValueError(f"not NAME=VALUE: {arg!r}")
        spec[name] = value
    return spec


def caps_of(spec: dict[str, str]) -> readers.Caps:
    return readers.Caps(
        max_pages=int(spec["max_pages"]), max_chars=int(spec["max_chars"]),
        max_zip_entries=int(spec["max_zip_entries"]),
        max_unpacked_bytes=int(spec["max_unpacked_bytes"]),
        max_zip_ratio=float(spec["max_zip_ratio"]))


def to_json(value: object) -> str:
    """`value` (str, int, float, bool, None, and lists and dicts of them) as JSON, as
    json.dumps(value, ensure_ascii=False) writes it, without importing json."""
    if isinstance(value, str):
        return encode_basestring(value)
    if value is True or value is False or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        # JSON has no infinities or NaN; a fact (a ratio) can't be either in practice.
        return float.__repr__(value) if abs(value) < float("inf") else "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(to_json, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{to_json(str(key))}: {to_json(item)}"
                               for key, item in value.items()) + "}"
    return to_json(str(value))


def _write(out: IO[str], message: dict[str, object]) -> None:
    try:
        line = to_json(message)
    except MemoryError:
        line = to_json(refusal(MemoryError()))
    out.write(line + "\n")
    out.flush()


def _open(spec: dict[str, str]) -> IO[bytes]:
    if "fd" in spec:
        return io.BufferedReader(AtOffsets(int(spec["fd"])), 1 << 16)
    return open(spec["path"], "rb")  # noqa: SIM115 - closed by the caller's `with`


def main(argv: list[str] | None = None) -> int:
    try:
        spec = parse_spec(sys.argv[1:] if argv is None else argv)
        memory, cpu = int(spec["memory"]), int(spec["cpu"])
    except (KeyError, ValueError) as error:
        print(f"extract_child: {error} (it is started by the app, not by hand)",
              file=sys.stderr)
        return 2
    # Our JSON owns stdout: anything a C library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="replace")
    os.dup2(2, 1)
    limit_resources(memory, cpu + CPU_GRACE_S)
    with _open(spec) as file:
        serve(spec, file, out, sys.stdin.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
