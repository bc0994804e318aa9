"""The chat transcript's colours, derived from the palette so that light and dark modes both
work."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

from app.ui.theme import mix, tone_colour


def code_shade(palette: QPalette) -> QColor:
    """A code block's background."""
    # A shade towards the text colour rather than a fixed grey, so dark mode works.
    return mix(palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text), 0.1)


def bubble_colour(role: str, palette: QPalette) -> QColor:
    """A message bubble's background: the user's tinted with the highlight, answers barely."""
    base = palette.color(QPalette.ColorRole.Base)
    if role == "user":
        return mix(base, palette.color(QPalette.ColorRole.Highlight), 0.22)
    if role == "system":
        return palette.color(QPalette.ColorRole.Window)
    return mix(base, palette.color(QPalette.ColorRole.Text), 0.05)


def copy_button_border(palette: QPalette) -> QColor:
    return mix(palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text), 0.35)


def status_colour(status: str, palette: QPalette) -> QColor:
    """The colour of the lines under an answer: red for a failure, amber for an interruption."""
    if status not in ("error", "interrupted"):  # cancelled, or a complete answer's footer
        return palette.color(QPalette.ColorRole.PlaceholderText)
    return tone_colour("error" if status == "error" else "warning", palette)
