"""A crash leaves a report: the real app process, killed by a segfault, leaves its
threads' stacks in the log folder; the next start keeps the report and nothing else (a
process that was killed, not crashed, leaves none)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core import crash, paths

ROOT = Path(__file__).parents[2]


def start_app(home: Path) -> subprocess.Popen[bytes]:
    """The app, started; returned once its event loop runs (its log says "ready")."""
    log = home / "logs" / "switchboard.log"
    before = _readies(log)
    env = {**os.environ, "SWITCHBOARD_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60  # a hang becomes a failure, not a wait
    while _readies(log) == before:
        assert process.poll() is None, "the app ended before it started"
        assert time.monotonic() < deadline, "the app never started"
        time.sleep(0.05)
    return process


def _readies(log: Path) -> int:
    return log.read_text(errors="replace").count(" ready\n") if log.exists() else 0


@pytest.mark.skipif(sys.platform == "win32", reason="a SIGSEGV sent from outside is POSIX's")
def test_a_segfault_leaves_a_report_the_next_start_keeps(switchboard_home: Path) -> None:
    process = start_app(switchboard_home)
    process.send_signal(signal.SIGSEGV)  # what a crash in Qt or a native library is
    assert process.wait(timeout=60) == -signal.SIGSEGV
    (report,) = crash.reports_left()
    assert report.parent == paths.log_dir() / "crashes"
    text = report.read_text()
    assert "Segmentation fault" in text and "most recent call first" in text
    assert crash.reports_left() == []  # offered once


def test_a_process_killed_or_ended_normally_leaves_none(switchboard_home: Path) -> None:
    process = start_app(switchboard_home)
    process.kill()  # SIGKILL: not a crash
    process.wait(timeout=60)
    assert crash.reports_left() == []
    assert list(paths.log_dir().glob("crash-*")) == []  # the empty file is gone too

    process = start_app(switchboard_home)
    env = {**os.environ, "SWITCHBOARD_HOME": str(switchboard_home),
           "QT_QPA_PLATFORM": "offscreen"}
    # Asked to quit (as the installer does): it ends normally and tidies up.
    subprocess.run([sys.executable, "-m", "app", "--quit"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=60)
    assert process.wait(timeout=60) == 0
    assert list(paths.log_dir().glob("crash-*")) == []
