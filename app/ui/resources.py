"""Finding the bundled icons and style sheets, from a checkout or a frozen build."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtGui import QIcon


def resources_dir() -> Path:
    # PyInstaller unpacks bundled data under sys._MEIPASS.
    frozen = getattr(sys, "_MEIPASS", None)
    base = Path(frozen) if frozen else Path(__file__).resolve().parents[2]
    return base / "resources"


def icon(name: str) -> QIcon:
    """`icon("tray-busy")`: the PNGs of that name at every size we ship."""
    folder = resources_dir() / "icons"
    result = QIcon()
    for path in sorted(folder.glob(f"{name}*.png")):
        if path.stem == name or path.stem[len(name):].lstrip("-").isdigit():
            result.addFile(str(path))
    if result.isNull():
        raise FileNotFoundError(f"icon {name!r} is missing from {folder}")
    return result
