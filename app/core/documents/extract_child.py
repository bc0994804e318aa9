"""The extraction child: reads one document (or one share of a long PDF's pages) under
memory and CPU limits and writes its pages to stdout as one JSON object. Started only by
`extract.extract()`:

    python -m app.core.documents.extract_child --fd 5 --kind pdf --caps '{...}' --share 0/2

It limits itself before it touches the file; if a parser still blows up (PDFium
aborting on a failed allocation, a segfault), only this process dies.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from typing import IO, Any

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

    def readinto(self, buffer: Any) -> int:
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


def sha256(file: IO[bytes]) -> str:
    import hashlib  # only the first share hashes: its OpenSSL load is the others' saving

    file.seek(0)
    digest = hashlib.sha256()
    while block := file.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()


def run(kind: str, file: IO[bytes], caps: readers.Caps,
        share: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """The JSON-ready result: the pages, or a refusal's code and facts. Only the first
    share hashes the file (the others would hash the same bytes again)."""
    try:
        pages = readers.read(kind, file, caps, share)
        return {"ok": True, "kind": kind, "pages": pages.texts, "truncated": pages.truncated,
                "first": pages.first, "count": pages.count,
                "sha256": sha256(file) if share[0] == 0 else None}
    except readers.Refusal as refusal:
        return {"ok": False, "code": refusal.code, "facts": refusal.facts}
    except MemoryError:
        return {"ok": False, "code": "too_much_memory", "facts": {}}
    except Exception as error:  # any parser's failure on a malformed file
        return {"ok": False, "code": "damaged",
                "facts": {"error": f"{type(error).__name__}: {error}"[:300]}}


def _open(fd: int | None, path: str | None) -> IO[bytes]:
    if fd is not None:
        return io.BufferedReader(AtOffsets(fd), 1 << 16)
    assert path is not None
    return open(path, "rb")  # noqa: SIM115 - closed by the caller's `with`


def _share(text: str) -> tuple[int, int]:
    index, _, shares = text.partition("/")
    share = int(index), int(shares)
    if not 0 <= share[0] < share[1]:
        raise argparse.ArgumentTypeError(f"not a share: {text}")
    return share


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="extract_child")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fd", type=int, help="an open, already checked file descriptor")
    source.add_argument("--path", help="the checked file (where descriptors can't be passed)")
    parser.add_argument("--kind", required=True)
    parser.add_argument("--caps", required=True, help="JSON: readers.Caps")
    parser.add_argument("--memory", type=int, required=True, help="address space, bytes")
    parser.add_argument("--cpu", type=int, required=True, help="CPU seconds")
    parser.add_argument("--share", type=_share, default=(0, 1),
                        help="INDEX/COUNT: read this share of a PDF's pages")
    args = parser.parse_args(argv)

    # Our JSON owns stdout: anything a C library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="replace")
    os.dup2(2, 1)
    limit_resources(args.memory, args.cpu + CPU_GRACE_S)
    caps = readers.Caps(**json.loads(args.caps))
    with _open(args.fd, args.path) as file:
        result = run(args.kind, file, caps, args.share)
    try:
        text = json.dumps(result, ensure_ascii=False)
    except MemoryError:
        text = '{"ok": false, "code": "too_much_memory", "facts": {}}'
    out.write(text)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
