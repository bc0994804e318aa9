"""The extraction child: reads one document under memory and CPU limits and writes its
pages to stdout as one JSON object. Started only by `extract.extract()`:

    python -m app.core.documents.extract_child --fd 5 --kind pdf --caps '{...}'

It limits itself before it touches the file; if a parser still blows up (PDFium
aborting on a failed allocation, a segfault), only this process dies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from typing import IO, Any

from app.core.documents import readers

CPU_GRACE_S = 2


def limit_resources(memory_bytes: int, cpu_s: int) -> None:
    """Caps this process's address space and CPU time, and turns off core dumps."""
    if sys.platform == "win32":
        # TODO(windows): there is no setrlimit; the parent must put this process in a Job
        # Object with JOB_OBJECT_LIMIT_PROCESS_MEMORY. Until then only the wall-clock
        # timeout guards extraction on Windows.
        return
    import resource

    def cap(which: int, value: int, hard_extra: int = 0) -> None:
        _, hard = resource.getrlimit(which)
        ceiling = hard if hard != resource.RLIM_INFINITY else value + hard_extra
        resource.setrlimit(which, (min(value, ceiling), min(value + hard_extra, ceiling)))

    cap(resource.RLIMIT_AS, memory_bytes)
    cap(resource.RLIMIT_CPU, cpu_s, hard_extra=1)  # SIGXCPU, then SIGKILL a second later
    cap(resource.RLIMIT_CORE, 0)  # a crash leaves no core file behind


def sha256(file: IO[bytes]) -> str:
    file.seek(0)
    digest = hashlib.sha256()
    while block := file.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()


def run(kind: str, file: IO[bytes], caps: readers.Caps) -> dict[str, Any]:
    """The JSON-ready result: the pages, or a refusal's code and facts."""
    try:
        pages = readers.read(kind, file, caps)
        return {"ok": True, "kind": kind, "pages": pages.texts, "truncated": pages.truncated,
                "sha256": sha256(file)}
    except readers.Refusal as refusal:
        return {"ok": False, "code": refusal.code, "facts": refusal.facts}
    except MemoryError:
        return {"ok": False, "code": "too_much_memory", "facts": {}}
    except Exception as error:  # any parser's failure on a malformed file
        return {"ok": False, "code": "damaged",
                "facts": {"error": f"{type(error).__name__}: {error}"[:300]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="extract_child")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fd", type=int, help="an open, already checked file descriptor")
    source.add_argument("--path", help="the checked file (where descriptors can't be passed)")
    parser.add_argument("--kind", required=True)
    parser.add_argument("--caps", required=True, help="JSON: readers.Caps")
    parser.add_argument("--memory", type=int, required=True, help="address space, bytes")
    parser.add_argument("--cpu", type=int, required=True, help="CPU seconds")
    args = parser.parse_args(argv)

    # Our JSON owns stdout: anything a C library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="replace")
    os.dup2(2, 1)
    limit_resources(args.memory, args.cpu + CPU_GRACE_S)
    caps = readers.Caps(**json.loads(args.caps))
    with os.fdopen(args.fd, "rb") if args.fd is not None else open(args.path, "rb") as file:
        result = run(args.kind, file, caps)
    try:
        text = json.dumps(result, ensure_ascii=False)
    except MemoryError:
        text = '{"ok": false, "code": "too_much_memory", "facts": {}}'
    out.write(text)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
