"""The tray icon is shown before anything heavy is imported: the model tools (numpy, gguf,
llama_cpp), the PDF reader and the key store's backends load when first used, after."""

from __future__ import annotations

import os
import subprocess
import sys

HEAVY = ("numpy", "gguf", "llama_cpp", "pypdfium2", "keyring.backends", "yaml")

# The real start, stopped at the moment the tray icon is shown: what is loaded by then.
PROBE = f"""
import os, sys
import app.ui.tray

def shown(self):
    loaded = sorted(m for m in sys.modules if m.startswith({HEAVY!r}))
    print("LOADED", ",".join(loaded), flush=True)
    os._exit(0)

app.ui.tray.Tray.show = shown
from app.__main__ import main
main([])
"""


def test_nothing_heavy_is_loaded_when_the_tray_appears() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("LOADED")]
    assert lines, done.stdout + done.stderr  # the tray was reached
    assert lines[0] == "LOADED ", lines[0]


def test_the_probe_sees_a_heavy_import() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    probe = PROBE.replace("import app.ui.tray", "import app.ui.tray, numpy")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, timeout=120)
    assert "LOADED numpy" in done.stdout, done.stdout + done.stderr


FAILING_START = """
import sys
from PySide6.QtWidgets import QMessageBox
import app.ui.application
from app.core.errors import HistoryDamaged

def fails(*args):
    raise HistoryDamaged("the disk said no")

app.ui.application.build_app = fails
QMessageBox.critical = staticmethod(lambda parent, title, text: print("SAID", text))
from app.__main__ import main
sys.exit(main([]))
"""


def test_a_start_that_fails_says_why_and_ends_with_an_error() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", FAILING_START], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "SAID Switchboard could not start." in done.stdout
    assert "the disk said no" in done.stdout
