"""The tray app's main. The tray icon comes first, from this small module; the window, the
core and everything they import are built once the event loop runs, so the icon is there
at once and the rest follows behind it."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from app.ui.resources import icon
from app.ui.single_instance import (
    SingleInstance,
    ask_first_instance_for_quick_ask,
    ask_first_instance_to_show,
)
from app.ui.tray import Tray

if TYPE_CHECKING:
    from app.ui.application import SwitchboardApp

log = logging.getLogger(__name__)


def could_not_start(error: Exception) -> None:
    """Say why in a dialog (not only in the log) and end with an error: a tray icon with
    nothing behind it would look as if Switchboard were running."""
    from PySide6.QtWidgets import QMessageBox

    from app.core.errors import SwitchboardError

    log.critical("Switchboard could not start", exc_info=error)
    words = error.user_text() if isinstance(error, SwitchboardError) else \
        f"{type(error).__name__}: {error}. The log has the details."
    QMessageBox.critical(None, "Switchboard", f"Switchboard could not start. {words}")
    QApplication.exit(1)


def lean_imports() -> None:
    """Keep what is imported after this from loading what Switchboard never uses."""
    # httpx imports its command-line tool's needs (click, pygments) whenever they happen to
    # be installed; a None in sys.modules fails that import, which httpx allows for.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    # To learn whether a module selects a `__feature__` (snake_case and such), PySide6
    # (6.12, shibokensupport/feature.py: _mod_uses_pyside) reads the source of every module
    # imported after it, and linecache keeps it all: megabytes of text once the window and
    # the core are in, in a run from source (a frozen build has none). Switchboard selects
    # no feature, so every module may be what a module without PySide is to it: ignored.
    feature = sys.modules.get("shibokensupport.feature")
    if feature is not None and hasattr(feature, "_mod_uses_pyside"):
        feature._mod_uses_pyside = lambda module: False  # type: ignore[attr-defined]


def run_tray_app(show_window: bool = False, quick_ask: bool = False) -> int:
    """One instance per user; returns the exit code. `show_window`, `quick_ask`: open
    that at start (in the instance already running, if there is one)."""
    lean_imports()
    qapp = QApplication.instance() or QApplication(sys.argv)
    assert isinstance(qapp, QApplication)
    qapp.setApplicationName("Switchboard")
    qapp.setQuitOnLastWindowClosed(False)  # closing the window leaves the tray icon
    qapp.setWindowIcon(icon("app"))

    instance = SingleInstance()
    if not instance.acquire():
        asked = ask_first_instance_for_quick_ask() if quick_ask else ask_first_instance_to_show()
        return 0 if asked else 1
    tray = Tray()
    tray.show()
    built: list[SwitchboardApp] = []

    def build() -> None:
        from app.core import logs
        from app.ui.application import build_app

        log_file = logs.setup()
        # An exception in a Qt slot would otherwise go to a stderr nobody sees.
        sys.excepthook = lambda *info: log.critical("uncaught exception", exc_info=info)
        try:
            app = build_app(tray, log_file)
        except Exception as error:  # noqa: BLE001 - said to the user, then the app ends
            could_not_start(error)
            return
        built.append(app)
        instance.activated.connect(app.show_main)
        instance.quitRequested.connect(app.quit)
        instance.quickAskRequested.connect(app.open_quick_ask)
        if not QSystemTrayIcon.isSystemTrayAvailable():
            app.main_window.quit_on_close = True
        if show_window or app.main_window.quit_on_close:
            app.show_main()
        if quick_ask:
            app.open_quick_ask()
        # Said once everything is built and the loop runs: what a script (or a test)
        # waits for before --quit.
        QTimer.singleShot(0, lambda: log.info("ready"))

    QTimer.singleShot(0, build)
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1` dumps every thread's stack, for bug reports
        faulthandler.register(signal.SIGUSR1)
    # Let Python see SIGTERM/SIGINT while Qt's loop runs: a timer wakes the interpreter.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: QApplication.exit(0))
    wakeup = QTimer(interval=250)
    wakeup.timeout.connect(lambda: None)
    wakeup.start()

    code = qapp.exec()
    log.info("quitting (exit code %d)", code)
    for app in built:
        app.shutdown()
    instance.release()
    return code
