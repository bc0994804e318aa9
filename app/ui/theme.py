"""How the windows look: as the system does, or always light or dark (`apply_theme`); and
the few colours of Switchboard's own (errors, notes, the error banner, status tones,
chart series), made from the palette in force so that they read in light and dark alike.

The only module of app/ui, with chat_colours, that names colours; a test keeps it so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QLabel, QWidget

Role = QPalette.ColorRole
Group = QPalette.ColorGroup

SCHEMES = {"system": Qt.ColorScheme.Unknown, "light": Qt.ColorScheme.Light,
           "dark": Qt.ColorScheme.Dark}

# Text colours for a state, light mode and dark mode: each contrasts at least 4.5:1 with
# the window and base colours of its mode (the dark ones are pale, the light ones deep).
TONES = {
    "error": ("#b3261e", "#ff8a80"),
    "warning": ("#8a5100", "#ffcc80"),
    "good": ("#1e7a34", "#81c995"),
}
# Fills for a state (a bar, a meter), light mode and dark mode: the palette's text reads
# on each, dark text on the light ones and light text on the deep ones.
FILLS = {
    "error": ("#e5645a", "#8c2f28"),
    "warning": ("#f2b233", "#7a5a12"),
    "good": ("#7cb87e", "#2e6b3a"),
}
# Chart series, colour-blind safe (Okabe–Ito); on dark, the sky blue for the blue.
SERIES = {"light": ("#0072B2", "#009E73", "#E69F00", "#CC79A7"),
          "dark": ("#56B4E9", "#009E73", "#E69F00", "#CC79A7")}


def apply_theme(theme: str) -> None:
    """Make the application light, dark or as the system is ("system", "light", "dark").

    Qt is asked first (QStyleHints.setColorScheme: Windows 11 and desktops that let an
    application choose follow it); where the platform ignores the request (the offscreen
    and plain X11 platforms, a desktop theme without a scheme), the palette is set here.
    A high-contrast system theme is always left as it is.
    """
    app = cast(QGuiApplication, QGuiApplication.instance())
    hints = app.styleHints()
    scheme = SCHEMES.get(theme, Qt.ColorScheme.Unknown)
    hints.setColorScheme(scheme)
    if app.testAttribute(Qt.ApplicationAttribute.AA_SetPalette):
        app.setPalette(QPalette())  # the platform's own palette, as the request left it
    high_contrast = (hints.accessibility().contrastPreference()
                     == Qt.ContrastPreference.HighContrast)
    if scheme == Qt.ColorScheme.Unknown or high_contrast:
        return
    dark = scheme == Qt.ColorScheme.Dark
    if is_dark(app.palette()) != dark:
        app.setPalette(dark_palette() if dark else light_palette())


def is_dark(palette: QPalette) -> bool:
    return palette.color(Role.Window).lightness() < 128


def dark_palette() -> QPalette:
    """A dark palette after Fusion's, for platforms that can't give one."""
    return _palette(window="#323232", text="#f0f0f0", base="#242424", alternate="#2c2c2c",
                    button="#3a3a3a", light="#4b4b4b", mid="#262626", dark="#1e1e1e",
                    shadow="#141414", highlight="#308cc6", link="#8ab4f8",
                    visited="#c58af9", placeholder="#9a9a9a", disabled="#7a7a7a")


def light_palette() -> QPalette:
    """Fusion's light palette, for a system that is dark and won't let an app be light."""
    return _palette(window="#efefef", text="#000000", base="#ffffff", alternate="#f7f7f7",
                    button="#efefef", light="#ffffff", mid="#b8b8b8", dark="#9f9f9f",
                    shadow="#767676", highlight="#308cc6", link="#0000ff",
                    visited="#ff00ff", placeholder="#6f6f6f", disabled="#9a9a9a")


def _palette(*, window: str, text: str, base: str, alternate: str, button: str, light: str,
             mid: str, dark: str, shadow: str, highlight: str, link: str, visited: str,
             placeholder: str, disabled: str) -> QPalette:
    p = QPalette()
    for role, colour in (
            (Role.Window, window), (Role.WindowText, text), (Role.Base, base),
            (Role.AlternateBase, alternate), (Role.ToolTipBase, window),
            (Role.ToolTipText, text), (Role.PlaceholderText, placeholder), (Role.Text, text),
            (Role.Button, button), (Role.ButtonText, text), (Role.BrightText, "#ffffff"),
            (Role.Light, light), (Role.Midlight, mix(QColor(light), QColor(mid), 0.5)),
            (Role.Mid, mid), (Role.Dark, dark), (Role.Shadow, shadow),
            (Role.Highlight, highlight), (Role.HighlightedText, "#ffffff"),
            (Role.Accent, highlight), (Role.Link, link), (Role.LinkVisited, visited)):
        p.setColor(role, QColor(colour))
    for role in (Role.WindowText, Role.Text, Role.ButtonText):
        p.setColor(Group.Disabled, role, QColor(disabled))
    p.setColor(Group.Disabled, Role.Base, QColor(window))
    p.setColor(Group.Disabled, Role.Highlight, QColor(mid))
    return p


# -- colours from the palette ------------------------------------------------------------

def mix(a: QColor, b: QColor, t: float) -> QColor:
    """`a` moved a fraction `t` towards `b`: tints that follow the palette, light or dark."""
    return QColor.fromRgbF(
        a.redF() + (b.redF() - a.redF()) * t,
        a.greenF() + (b.greenF() - a.greenF()) * t,
        a.blueF() + (b.blueF() - a.blueF()) * t,
        1.0,
    )


def contrast(a: QColor, b: QColor) -> float:
    """The WCAG contrast ratio of two colours, 1 (none) to 21 (black on white)."""
    lighter, darker = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _luminance(c: QColor) -> float:
    def linear(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
    return 0.2126 * linear(c.redF()) + 0.7152 * linear(c.greenF()) + 0.0722 * linear(c.blueF())


def tone_colour(tone: str, palette: QPalette) -> QColor:
    """The text colour of "error", "warning" or "good" that reads on this palette."""
    light, dark = TONES[tone]
    return QColor(dark if is_dark(palette) else light)


def fill_colour(tone: str, palette: QPalette) -> QColor:
    """The fill of "error", "warning" or "good" under this palette's text."""
    light, dark = FILLS[tone]
    return QColor(dark if is_dark(palette) else light)


def series_colours(palette: QPalette) -> tuple[QColor, ...]:
    """Four chart colours that tell apart, and show, on this palette's base."""
    return tuple(QColor(c) for c in SERIES["dark" if is_dark(palette) else "light"])


def note_colour(palette: QPalette) -> QColor:
    """Quieter than the text around it, yet readable."""
    return mix(palette.color(Role.WindowText), palette.color(Role.Window), 0.4)


# -- style sheets that follow the palette -------------------------------------------------

def error_style(palette: QPalette) -> str:
    return f"color: {tone_colour('error', palette).name()};"


def note_style(palette: QPalette) -> str:
    return f"color: {note_colour(palette).name()};"


def banner_style(palette: QPalette) -> str:
    """The error banner (object name "errorBanner"): a tint of the error colour, its
    text dark red on light and pale red on dark."""
    base, error = palette.color(Role.Base), tone_colour("error", palette)
    dark = is_dark(palette)
    background = mix(base, error, 0.22 if dark else 0.12)
    border = mix(base, error, 0.45)
    text = mix(palette.color(Role.Text), error, 0.3 if dark else 0.45)
    return (f"#errorBanner {{ background: {background.name()}; color: {text.name()}; "
            f"border: 1px solid {border.name()}; border-radius: 4px; padding: 6px; }}")


TONE_STYLES: dict[str, Callable[[QPalette], str]] = {"error": error_style,
                                                     "note": note_style}
_LIVE = "switchboard-live-style"


class _LiveStyle(QObject):
    """Keeps its widget's style sheet made from the application palette, remade when that
    changes: Qt leaves a widget with a style sheet out when a new palette spreads."""

    def __init__(self, widget: QWidget, style: Callable[[QPalette], str]) -> None:
        super().__init__(widget)
        self.setObjectName(_LIVE)
        self.make_sheet = style
        cast(QGuiApplication, QGuiApplication.instance()).paletteChanged.connect(self.restyle)
        self.restyle()

    def restyle(self) -> None:
        widget = cast(QWidget, self.parent())
        palette = QGuiApplication.palette()
        sheet = self.make_sheet(palette)
        if widget.styleSheet() != sheet:  # setting it, even unchanged, re-polishes
            # The new palette first, for what the sheet leaves to it (a label's links, a
            # selection): it does not spread to a widget with a sheet, and this runs
            # before it spreads to the others.
            widget.setStyleSheet("")
            widget.setPalette(palette)
            widget.setStyleSheet(sheet)
            if isinstance(widget, QLabel) and widget.text() \
                    and widget.textFormat() != Qt.TextFormat.PlainText:
                text = widget.text()  # a label colours its links as it reads its text
                widget.clear()
                widget.setText(text)

    def stop(self) -> None:
        cast(QGuiApplication, QGuiApplication.instance()).paletteChanged.disconnect(
            self.restyle)
        widget = cast(QWidget, self.parent())
        self.setParent(None)
        self.deleteLater()
        widget.setStyleSheet("")
        widget.setPalette(QPalette())  # the parent's again, as it changes


def follow_palette(widget: QWidget, style: Callable[[QPalette], str]) -> None:
    """Give `widget` the style sheet `style(palette)`, made again whenever the
    application's palette changes (a theme chosen, the system's turning dark)."""
    live = widget.findChild(_LiveStyle, _LIVE, Qt.FindChildOption.FindDirectChildrenOnly)
    if live is None:
        _LiveStyle(widget, style)
    else:
        live.make_sheet = style
        live.restyle()


def show_tone(widget: QWidget, tone: str | None) -> None:
    """Colour a label's text as an "error" or a "note", or as usual with None."""
    if tone is not None:
        follow_palette(widget, TONE_STYLES[tone])
        return
    live = widget.findChild(_LiveStyle, _LIVE, Qt.FindChildOption.FindDirectChildrenOnly)
    if live is not None:
        live.stop()
