"""`switchboard --selftest`: build the whole GUI offscreen in a throw-away home, make
one round trip through the core loop, and report what failed."""

from __future__ import annotations

import os
import sys
import tempfile


def selftest() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory(prefix="switchboard-selftest-") as home:
        os.environ["SWITCHBOARD_HOME"] = home
        try:
            _run()
        except Exception as e:  # noqa: BLE001 — the reason goes to stderr, exit non-zero
            print(f"switchboard selftest failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    print("switchboard selftest: ok")
    return 0


def _run() -> None:
    from PySide6.QtWidgets import QApplication

    from app.core.workspace import Workspace
    from app.ui.application import SwitchboardApp

    qapp = QApplication.instance() or QApplication(sys.argv)
    app = SwitchboardApp(Workspace.open())
    try:
        app.start()
        app.show_main()
        app.quick_ask.open()
        chat = app.bridge.call(app.workspace.history.create_chat, "selftest").result(10)
        if app.bridge.call(app.workspace.history.chat, chat.id).result(10) != chat:
            raise RuntimeError("the chat store did not keep a chat")
        qapp.processEvents()
        if app.tray.icon().isNull():
            raise RuntimeError("the tray icon did not load")
        if not app.main_window.isVisible():
            raise RuntimeError("the main window did not show")
    finally:
        app.shutdown()
