"""The tray icon is shown before anything heavy is imported: the model tools (numpy, gguf,
llama_cpp), the PDF reader and the key store's backends load when first used, after."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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


SOURCE_SCAN = """
import linecache, sys
import PySide6.QtWidgets
import module_before
from app.ui.start import lean_imports
lean_imports()
import module_after
print("CACHED", *(m.__file__ in linecache.cache for m in (module_before, module_after)))
"""


def test_pyside_does_not_keep_the_source_of_modules_imported_after_the_start(
        tmp_path: Path) -> None:
    for name in ("module_before", "module_after"):
        (tmp_path / f"{name}.py").write_text("WORDS = 'a module of its own'\n")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", SOURCE_SCAN], env=env, capture_output=True,
                          text=True, timeout=120)
    # Before: PySide6 read the module's source and linecache kept it; after: not.
    assert "CACHED True False" in done.stdout, done.stdout + done.stderr


# The real start, stopped when the main window is shown: what its imports brought in.
WINDOW_SHOWN = """
import os, sys
from PySide6.QtWidgets import QMainWindow

def shown(self):
    print("LOADED", ",".join(sorted(m for m in sys.modules
                                    if m.partition(".")[0] in ("click", "pygments"))))
    print("HTTPX", "httpx" in sys.modules, flush=True)
    os._exit(0)

QMainWindow.show = shown
from app.__main__ import main
main(["--show"])
"""


def test_httpx_brings_no_command_line_tool(tmp_path: Path) -> None:
    assert importlib.util.find_spec("click") and importlib.util.find_spec("pygments"), \
        "installed, or this test proves nothing"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "SWITCHBOARD_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", WINDOW_SHOWN], env=env,
                          capture_output=True, text=True, timeout=120)
    assert "HTTPX True" in done.stdout, done.stdout + done.stderr  # the core was imported
    assert "LOADED \n" in done.stdout, done.stdout


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
