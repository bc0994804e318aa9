"""No window names a colour of its own: outside app/ui/theme.py and chat_colours.py,
colours come from the palette, so light and dark themes both work. The scan reads the
source (string literals and calls), not comments."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

import app.ui

UI = Path(app.ui.__file__).parent
MAY_NAME_COLOURS = {"theme.py", "chat_colours.py"}

_HEX = r"#(?:[0-9a-fA-F]{8}|[0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b"
WHOLE_HEX = re.compile(rf"^\s*{_HEX}\s*$")
HEX_IN_STYLE = re.compile(rf"[:=(,]\s*['\"]?{_HEX}")  # color: #fff, color="#fff", rgb(…
FUNCTION = re.compile(r"\b(?:rgba?|hsla?|hsva?)\s*\(", re.IGNORECASE)
STYLE_VALUE = re.compile(r"\b(?:[\w-]*colou?r|background|border[\w-]*|outline|gridline)"
                         r"\s*[:=]\s*['\"]?([^;{}'\"]*)", re.IGNORECASE)
NAMES = {n.lower() for n in QColor.colorNames()} - {"transparent"}
GLOBAL_COLOURS = {name for name in dir(Qt.GlobalColor) if not name.startswith("_")}
COLOUR_CALLS = {"QColor", "fromRgb", "fromRgbF", "fromRgba", "fromHsv", "fromHsvF", "fromHsl",
                "fromHslF", "fromCmyk", "fromString", "mkColor", "mkPen", "mkBrush"}
COLOUR_KEYWORDS = {"color", "colour", "brush", "pen", "background", "foreground"}


def colours_named(source: str, name: str = "<source>") -> list[str]:
    """Where `source` names a colour itself: "name:line: what"."""
    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [f"{where}: {what}" for what in _in_text(node.value)]
        elif isinstance(node, ast.Attribute) and (
                node.attr == "GlobalColor"
                or (isinstance(node.value, ast.Name) and node.value.id == "Qt"
                    and node.attr in GLOBAL_COLOURS)):
            found.append(f"{where}: Qt.{node.attr}")
        elif isinstance(node, ast.Call):
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else \
                getattr(node.func, "id", "")
            literal = [a for a in node.args if _is_literal(a)]
            if callee in COLOUR_CALLS and literal and len(literal) == len(node.args):
                found.append(f"{where}: {callee}({ast.unparse(literal[0])}, …)")
            found += [f"{where}: {k.arg}={ast.unparse(k.value)}" for k in node.keywords
                      if k.arg in COLOUR_KEYWORDS and isinstance(k.value, ast.Constant)
                      and isinstance(k.value.value, str)]
    return found


def _in_text(text: str) -> list[str]:
    found = []
    if WHOLE_HEX.match(text) or HEX_IN_STYLE.search(text):
        found.append(f"hex colour in {text.strip()[:60]!r}")
    if FUNCTION.search(text):
        found.append(f"colour function in {text.strip()[:60]!r}")
    for value in STYLE_VALUE.findall(text):
        named = [word for word in re.findall(r"[a-zA-Z]+", value) if word.lower() in NAMES]
        if named and "palette" not in value:
            found.append(f"named colour {named[0]!r} in {text.strip()[:60]!r}")
    return found


def _is_literal(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str | int | float) and not isinstance(node.value, bool)
    if isinstance(node, ast.Tuple):
        return all(_is_literal(e) for e in node.elts)
    return False


def test_the_windows_take_their_colours_from_the_palette() -> None:
    found = []
    for path in sorted(UI.glob("*.py")):
        if path.name not in MAY_NAME_COLOURS:
            found += colours_named(path.read_text(encoding="utf-8"), path.name)
    assert found == []


def test_the_scan_finds_each_kind_of_colour() -> None:
    sample = '''
banner.setStyleSheet("#errorBanner { background: #fdecea; color: #611a15; }")
label.setStyleSheet("color: darkred;")
note.setStyleSheet(f"QLabel {{ border: 1px solid grey; }}")
html = '<span style="color: rgb(200, 0, 0)">x</span>'
html2 = '<font color="red">x</font>'
BAR = QColor("#4f7fbf")
GREY = QColor(200, 200, 200)
TEAL = QColor.fromRgbF(0.1, 0.5, 0.5)
painter.setPen(Qt.GlobalColor.red)
painter.setBrush(Qt.black)
COLOURS = {"ok": "#7cb87e"}
chart = pg.PlotWidget(background="w")
pen = pg.mkPen("#E69F00", width=2)
'''
    found = colours_named(sample)
    lines = sorted({int(f.split(":")[1]) for f in found})
    assert lines == list(range(2, 15)), found


def test_the_scan_leaves_palette_colours_and_plain_words_alone() -> None:
    sample = '''
self.setObjectName("errorBanner")
sheet = "QProgressBar { border: 1px solid palette(mid); background: transparent; }"
text = "See issue #123; the red level is 100%, the amber one 80%."
LEVELS = {"ok": "good", "amber": "warning", "red": "error"}
shade = QColor(palette.color(QPalette.ColorRole.Base))
tint = mix(base, QColor(highlight), 0.2)
# a comment naming #ffffff and Qt.red is not code
'''
    assert colours_named(sample) == []
