"""The extraction child: reads one document under memory and CPU limits and writes what
it read to stdout as one line of JSON. Started only by `extract.extract()`, with
NAME=VALUE arguments naming the handed-over file (`fd`, or `path` where descriptors
can't be passed), its `kind`, the `memory` and `cpu` limits and the readers' caps
(`Caps`):

    python -m app.core.documents.extract_child fd=5 kind=pdf memory=2147483648 …

The line is {"ok": true, "pages": [...], "truncated": false}, or a refusal:
{"ok": false, "code": "zip_bomb", "facts": {...}}.

It limits itself before it touches the file; if a parser still blows up (PDFium
aborting on a failed allocation, a segfault), only this process dies.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO

from app.core.documents import formats

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


def refusal(error: BaseException) -> dict[str, object]:
    """What a reader's failure is to the parent: a refusal's code, and plain facts."""
    if isinstance(error, formats.Refusal):
        return {"ok": False, "code": error.code, "facts": error.facts}
    if isinstance(error, MemoryError):
        return {"ok": False, "code": "too_much_memory", "facts": {}}
    # Any parser's failure on a malformed file.
    return {"ok": False, "code": "damaged",
            "facts": {"error": f"{type(error).__name__}: {error}"[:300]}}


def read(spec: dict[str, str], file: IO[bytes]) -> dict[str, object]:
    """The reply for `file` read as `spec` says: its pages, or a refusal."""
    try:
        pages = formats.read(spec["kind"], file, caps_of(spec))
    except Exception as error:  # noqa: BLE001 - every failure is answered as a refusal
        return refusal(error)
    return {"ok": True, "pages": pages.texts, "truncated": pages.truncated}


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


def caps_of(spec: dict[str, str]) -> formats.Caps:
    return formats.Caps(
        max_pages=int(spec["max_pages"]), max_chars=int(spec["max_chars"]),
        max_zip_entries=int(spec["max_zip_entries"]),
        max_unpacked_bytes=int(spec["max_unpacked_bytes"]),
        max_zip_ratio=float(spec["max_zip_ratio"]))


def _open(spec: dict[str, str]) -> IO[bytes]:
    if "fd" in spec:
        # The file the parent checked, open already: nothing can be swapped in between.
        return os.fdopen(int(spec["fd"]), "rb")
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
        reply = read(spec, file)
    try:
        line = json.dumps(reply, ensure_ascii=False)
    except MemoryError:
        line = json.dumps(refusal(MemoryError()))
    with out:
        out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
