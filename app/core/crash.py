"""Crash reports: when Switchboard dies of a fatal error (a segfault in Qt or in a native
library, an abort), Python's faulthandler writes every thread's stack to a file in the
log folder; the next start finds it, keeps it under `crashes/`, and the app offers to
open it or its folder.

`arm` runs from the first lines of `main`: each process writes to a file of its own
(`crash-<kind>-<pid>.txt`), removed again when the process ends normally. A file left
non-empty by a process that is gone is a crash; one left empty (the process was killed,
not crashed) is just removed. The model runtime child writes its stacks to its own log
(runtime.log), which the supervisor already reports.
"""

from __future__ import annotations

import atexit
import faulthandler
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import IO

from app.core import paths

log = logging.getLogger(__name__)

REPORTS = "crashes"
_FILE = re.compile(r"crash-(?P<kind>[a-z]+)-(?P<pid>\d+)\.txt")
_armed: IO[str] | None = None


def arm(kind: str) -> Path | None:
    """Write this process's stacks to a crash file if it dies of a fatal error. Returns
    the file (None when the log folder can't be written: then to stderr, as before)."""
    global _armed
    try:
        path = paths.log_dir() / f"crash-{kind}-{os.getpid()}.txt"
        _armed = open(path, "w", encoding="utf-8")  # noqa: SIM115 — open for the process's life
    except OSError:
        faulthandler.enable()
        return None
    faulthandler.enable(file=_armed, all_threads=True)
    atexit.register(_disarm, path)
    return path


def _disarm(path: Path) -> None:
    """A normal end: no crash to report."""
    global _armed
    faulthandler.disable()
    if _armed is not None:
        _armed.close()
        _armed = None
    try:
        if path.stat().st_size == 0:
            path.unlink()
    except OSError:
        pass


def reports_left() -> list[Path]:
    """Crash files left by processes that are gone, kept as `crashes/<kind>-<UTC>.txt`
    (newest last); empty ones (a process killed, not crashed) are removed."""
    found: list[Path] = []
    folder = paths.log_dir()
    for path in sorted(folder.glob("crash-*-*.txt"), key=_mtime):
        match = _FILE.fullmatch(path.name)
        if match is None or int(match["pid"]) == os.getpid() or _alive(int(match["pid"])):
            continue
        try:
            if path.stat().st_size == 0:
                path.unlink()
                continue
            kept = folder / REPORTS / time.strftime(f"{match['kind']}-%Y%m%dT%H%M%SZ.txt",
                                                    time.gmtime(path.stat().st_mtime))
            kept.parent.mkdir(exist_ok=True)
            path.replace(kept)
            found.append(kept)
            log.error("Switchboard (%s) stopped unexpectedly last time; report: %s",
                      match["kind"], kept)
        except OSError as e:
            log.warning("a crash report could not be kept: %s", e)
    return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _alive(pid: int) -> bool:
    if sys.platform == "win32":
        return _alive_on_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process with that number
    return True


def _alive_on_windows(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
