"""A second launch talks to the running Switchboard: `--quick-ask` opens its quick ask,
a plain launch shows its window."""

from __future__ import annotations

import os
import subprocess
import sys

from PySide6.QtCore import QCoreApplication
from pytestqt.qtbot import QtBot

from app.ui.single_instance import SingleInstance

SECOND_LAUNCH = """
import sys
from PySide6.QtCore import QCoreApplication
from app.ui import single_instance
app = QCoreApplication([])
sys.exit(0 if getattr(single_instance, sys.argv[1])() else 1)
"""


def launch(ask: str) -> subprocess.Popen[bytes]:
    """A second process (as a second launch is), asking the first with `ask`."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.Popen([sys.executable, "-c", SECOND_LAUNCH, ask], env=env)


def test_quick_ask_and_show_reach_the_running_instance(qtbot: QtBot) -> None:
    assert QCoreApplication.instance() is not None
    first = SingleInstance()
    assert first.acquire()
    try:
        with qtbot.waitSignal(first.quickAskRequested, timeout=20_000):
            quick = launch("ask_first_instance_for_quick_ask")
        with qtbot.waitSignal(first.activated, timeout=20_000):
            show = launch("ask_first_instance_to_show")
        assert quick.wait(20) == 0 and show.wait(20) == 0
    finally:
        first.release()
        # Gone before the test's QApplication is: Qt objects outliving it crash the exit.
        with qtbot.waitSignal(first.destroyed):
            first.deleteLater()
