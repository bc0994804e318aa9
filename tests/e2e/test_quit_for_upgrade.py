"""`switchboard --quit`, what the installer runs before it replaces the files of a running
Switchboard: the running app saves its work and exits cleanly, and the command returns
only once it has."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from app.core import paths
from tests.e2e.test_tray import switchboard_command
from tests.fixtures.desktop import wait_for


def _log_text() -> str:
    return "".join(p.read_text(errors="replace") for p in paths.log_dir().glob("*.log*"))


def test_quit_asks_the_running_app_to_exit_and_waits_for_it(tmp_path: Path) -> None:
    out = open(tmp_path / "app.out", "w")  # noqa: SIM115 — closed below
    # QT_QPA_PLATFORM=offscreen and this test's SWITCHBOARD_HOME come from the environment.
    app = subprocess.Popen(switchboard_command(), stdout=out, stderr=out)
    try:
        wait_for(lambda: " ready" in _log_text() or None, 60, "the app's event loop to run")
        assert app.poll() is None, "the app ended by itself"
        quit_cmd = subprocess.run([*switchboard_command(), "--quit"], capture_output=True,
                                  text=True, timeout=60)
        # --quit returns only after the app has let go of its lock, i.e. after shutdown.
        assert quit_cmd.returncode == 0, quit_cmd.stderr
        assert app.wait(timeout=10) == 0
        assert "quitting (exit code 0)" in _log_text()
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        out.close()


def test_quit_with_no_running_app_succeeds_at_once() -> None:
    started = time.monotonic()
    done = subprocess.run([*switchboard_command(), "--quit"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
