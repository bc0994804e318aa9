"""Light, dark and the system's look: choosing dark makes the windows dark even where the
platform ignores Qt's colour-scheme request (offscreen, as here), "system" gives the
platform's palette back, and Switchboard's own colours (the error banner, the budget
meter, error and note text) stay readable in both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPalette
from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget
from pytestqt.qtbot import QtBot

from app.core.budget import MonthSummary
from app.core.errors import SwitchboardError
from app.ui.budget_meter import BudgetMeter, BudgetReading, meter_colours
from app.ui.chat_colours import bubble_colour
from app.ui.theme import (
    TONES,
    apply_theme,
    banner_style,
    contrast,
    dark_palette,
    is_dark,
    light_palette,
    note_colour,
    show_tone,
    tone_colour,
)
from app.ui.widgets import ErrorBanner
from tests.gui.conftest import BuildApp

READABLE = 4.5  # WCAG AA for text
Role = QPalette.ColorRole


@pytest.fixture(autouse=True)
def system_theme_after(qapp: QApplication) -> Iterator[None]:
    yield
    apply_theme("system")


def palettes() -> list[QPalette]:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    style = app.style()
    assert style is not None
    return [light_palette(), dark_palette(), style.standardPalette()]


def reading(charged_usd: float, cap_usd: float = 20) -> BudgetReading:
    summary = MonthSummary(month="2025-03", spent_micro_usd=int(charged_usd * 1e6),
                           reserved_micro_usd=0, flagged_micro_usd=0, flagged_count=0,
                           calls=3, cap_micro_usd=int(cap_usd * 1e6))
    return BudgetReading(summary, int(cap_usd * 1e6))


def extreme_pixel(image: QImage, against: QColor) -> QColor:
    """The pixel that differs most from `against`: the heart of a glyph on a background."""
    best, best_ratio = against, 1.0
    for y in range(image.height()):
        for x in range(image.width()):
            c = image.pixelColor(x, y)
            ratio = contrast(c, against)
            if ratio > best_ratio:
                best, best_ratio = c, ratio
    return best


def test_dark_gives_dark_windows_and_system_gives_the_platforms_back(qtbot: QtBot) -> None:
    window = QWidget()
    qtbot.addWidget(window)
    window.setAutoFillBackground(True)
    window.resize(120, 60)
    window.show()
    qtbot.waitExposed(window)
    assert not is_dark(window.palette())  # offscreen's own palette is light

    apply_theme("dark")
    qtbot.waitUntil(lambda: window.grab().toImage().pixelColor(60, 30).lightness() < 80)
    assert QGuiApplication.palette().color(Role.Window).lightness() < 80
    apply_theme("dark")  # again (Settings saved with nothing changed): still dark
    assert is_dark(window.palette())

    apply_theme("system")
    qtbot.waitUntil(lambda: window.grab().toImage().pixelColor(60, 30).lightness() > 200)
    assert not QGuiApplication.instance().testAttribute(  # type: ignore[union-attr]
        Qt.ApplicationAttribute.AA_SetPalette)  # the platform's palette, not one of ours
    apply_theme("light")
    assert not is_dark(window.palette())


def test_in_dark_the_banner_and_the_meter_read_clearly(qtbot: QtBot) -> None:
    window = QWidget()
    qtbot.addWidget(window)
    layout = QVBoxLayout(window)
    banner = ErrorBanner()
    meter = BudgetMeter()
    layout.addWidget(banner)
    layout.addWidget(meter)
    banner.show_error(SwitchboardError("connection refused"))
    meter.set_reading(reading(17))  # 85%: amber
    window.show()
    qtbot.waitExposed(window)

    apply_theme("dark")  # after the widgets exist: they follow the change
    qtbot.waitUntil(lambda: banner.grab().toImage().pixelColor(banner.width() // 2, 3)
                    .lightness() < 100)
    image = banner.grab().toImage()
    background = image.pixelColor(banner.width() // 2, 3)
    assert contrast(extreme_pixel(image, background), background) >= READABLE

    assert meter.level == "amber"
    image = meter.grab().toImage()
    middle = image.height() // 2
    chunk = image.pixelColor(3, middle)
    groove = image.pixelColor(image.width() - 3, middle)
    assert chunk.lightness() < 128 and groove.lightness() < 128
    assert chunk != groove
    assert contrast(extreme_pixel(image, chunk), chunk) >= READABLE


@pytest.mark.parametrize("which", ["light", "dark", "platform"])
def test_our_colours_contrast_with_the_palette(which: str) -> None:
    palette = palettes()[["light", "dark", "platform"].index(which)]
    for surface in (palette.color(Role.Window), palette.color(Role.Base)):
        for tone in TONES:
            assert contrast(tone_colour(tone, palette), surface) >= READABLE, tone
        assert contrast(note_colour(palette), surface) >= READABLE
    # Retry, Continue, Regenerate and Edit are drawn in the link colour on the bubble.
    for role in ("user", "assistant"):
        assert contrast(palette.color(Role.Link), bubble_colour(role, palette)) >= READABLE, role
    for level in ("off", "ok", "amber", "red"):
        groove, chunk, text = meter_colours(level, palette)
        assert contrast(text, groove) >= READABLE and contrast(text, chunk) >= READABLE, level
        assert contrast(chunk, groove) > 1.15, level  # the filled part shows


@pytest.mark.parametrize("which", ["light", "dark"])
def test_the_banner_style_reads_in_both(which: str) -> None:
    palette = light_palette() if which == "light" else dark_palette()
    style = banner_style(palette)
    colours = dict(part.strip().split(": ") for part in style.split("{")[1].split(";")
                   if part.strip().startswith(("background", "color")))
    background, text = QColor(colours["background"]), QColor(colours["color"])
    assert is_dark(palette) == (background.lightness() < 128)
    assert contrast(text, background) >= READABLE


def test_an_error_label_follows_a_theme_change_and_can_go_back_to_plain(
        qtbot: QtBot) -> None:
    label = QLabel("The key store is locked.")
    qtbot.addWidget(label)
    show_tone(label, "error")
    light = label.styleSheet()
    assert TONES["error"][0] in light
    apply_theme("dark")
    qtbot.waitUntil(lambda: TONES["error"][1] in label.styleSheet())
    show_tone(label, None)
    assert label.styleSheet() == ""
    apply_theme("system")
    assert label.styleSheet() == ""  # no longer followed


def test_the_app_starts_in_the_saved_look_and_changes_when_settings_are_saved(
        qtbot: QtBot, build_app: BuildApp) -> None:
    app = build_app(theme="dark")
    assert is_dark(app.main_window.palette())
    app.open_usage()
    usage = app.usage_window
    assert usage is not None
    charts = (usage.tokens_chart, usage.money_chart)
    assert all(chart.backgroundBrush().color().lightness() < 128 for chart in charts)
    app.open_settings()
    dialog = app.settings_dialog
    assert dialog is not None
    dialog.theme.setCurrentIndex(dialog.theme.findText("Light"))
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        dialog.save()
    qtbot.waitUntil(lambda: not is_dark(app.main_window.palette()))
    # The charts are drawn in colours they are given: they follow too.
    qtbot.waitUntil(lambda: all(chart.backgroundBrush().color().lightness() > 128
                                for chart in charts))
