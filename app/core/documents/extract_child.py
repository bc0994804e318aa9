"""The extraction child: reads one document under memory and CPU limits and writes what
it read to stdout as JSON lines. Started only by `extract.extract()`, with one argument,
a JSON object naming the handed-over file (`fd`, or `path` where descriptors can't be
passed), its `kind`, the readers' `caps` and the `memory` and `cpu` limits:

    python -m app.core.documents.extract_child '{"fd": 5, "kind": "pdf", …}'

A DOCX, text or HTML file is read whole: one line, its pages. A PDF is read in runs of
pages the parent asks for, so that several children can read one long PDF and the
faster ones read more: the first line gives the page count, then each
line "FIRST STOP" on stdin is answered by one line with those pages, until stdin ends.
A refusal is a line too, and the last.

It limits itself before it touches the file; if a parser still blows up (PDFium
aborting on a failed allocation, a segfault), only this process dies.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Buffer
from typing import IO

from app.core.documents import readers

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


def serve(spec: dict[str, object], file: IO[bytes], out: IO[str],
          requests: IO[bytes]) -> None:
    """Reads `file` as `spec` says, answering on `out` (and, for a PDF, `requests`)."""
    caps = readers.Caps(**spec["caps"])  # type: ignore[arg-type]
    try:
        if spec["kind"] != "pdf":
            pages = readers.read(str(spec["kind"]), file, caps)
            _write(out, {"ok": True, "pages": pages.texts, "truncated": pages.truncated})
            return
        pdf = readers.open_pdf(file)
    except Exception as error:  # noqa: BLE001 - every failure is answered as a refusal
        _write(out, refusal(error))
        return
    with pdf:
        _write(out, {"ok": True, "count": len(pdf)})
        while request := requests.readline():
            first, stop = (int(number) for number in request.split())
            try:
                pages = readers.pdf_pages(pdf, first, stop, caps.max_chars)
            except Exception as error:  # noqa: BLE001
                _write(out, refusal(error))
                return
            _write(out, {"ok": True, "first": first, "pages": pages.texts,
                         "truncated": pages.truncated})


def _write(out: IO[str], message: dict[str, object]) -> None:
    try:
        line = json.dumps(message, ensure_ascii=False)
    except MemoryError:
        line = json.dumps(refusal(MemoryError()))
    out.write(line + "\n")
    out.flush()


def _open(spec: dict[str, object]) -> IO[bytes]:
    if spec.get("fd") is not None:
        return io.BufferedReader(AtOffsets(int(spec["fd"])), 1 << 16)  # type: ignore[call-overload]
    return open(str(spec["path"]), "rb")  # noqa: SIM115 - closed by the caller's `with`


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: extract_child SPEC_JSON (started by the app, not by hand)",
              file=sys.stderr)
        return 2
    spec = json.loads(args[0])
    # Our JSON owns stdout: anything a C library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="replace")
    os.dup2(2, 1)
    limit_resources(int(spec["memory"]), int(spec["cpu"]) + CPU_GRACE_S)
    with _open(spec) as file:
        serve(spec, file, out, sys.stdin.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
