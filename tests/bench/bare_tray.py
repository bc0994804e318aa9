"""The start-up and idle baseline: a bare PySide6 tray icon (the app's own icon files)
and, with `--window`, a 960 × 680 window holding a text box, and nothing else.

Run: `python tests/bench/bare_tray.py [--window] [--name NAME]`; SIGTERM ends it."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QApplication,
    QLineEdit,
    QSystemTrayIcon,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

ICONS = Path(__file__).resolve().parents[2] / "resources" / "icons"


def main() -> int:
    name = sys.argv[sys.argv.index("--name") + 1] if "--name" in sys.argv else "Bare tray"
    qapp = QApplication(sys.argv[:1])
    qapp.setApplicationName(name)  # the tray icon's X window takes this name
    qapp.setQuitOnLastWindowClosed(False)
    icon = QIcon()
    for path in sorted(ICONS.glob("tray-idle*.png")):
        icon.addFile(str(path))
    tray = QSystemTrayIcon(icon)
    tray.show()
    window = None
    if "--window" in sys.argv:
        window = QWidget()
        window.setWindowTitle(name)
        window.resize(960, 680)
        layout = QVBoxLayout(window)
        layout.addWidget(QTextBrowser())
        layout.addWidget(QLineEdit())
        window.show()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: QApplication.exit(0))
    wakeup = QTimer(interval=250)  # lets Python see SIGTERM, as the app's does
    wakeup.timeout.connect(lambda: None)
    wakeup.start()
    return qapp.exec()


if __name__ == "__main__":
    sys.exit(main())
