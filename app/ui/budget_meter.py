"""The cloud planning budget as the user sees it: the status bar's meter, the line in the
tray, and which 80% / 100% notifications are due. Readings come from `ChatController`'s
`budgetChanged`; nothing here touches the ledger."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

from PySide6.QtCore import Property
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QProgressBar, QWidget

from app.core.budget import MonthSummary
from app.core.money import format_usd
from app.ui.theme import fill_colour, follow_palette, mix

AMBER_AT = 0.8
RED_AT = 1.0

LEVEL_TONES = {"ok": "good", "amber": "warning", "red": "error"}
_SCALE = 1000  # the bar's resolution: tenths of a percent


class BudgetReading(NamedTuple):
    """This month's ledger summary and the cap it is measured against (0: planning off)."""

    summary: MonthSummary
    cap_micro_usd: int


def budget_level(reading: BudgetReading) -> str:
    """"off" (no budget), "ok", "amber" (≥ 80% charged) or "red" (≥ 100%)."""
    cap = reading.cap_micro_usd
    if cap <= 0:
        return "off"
    charged = reading.summary.charged_micro_usd
    if charged >= cap * RED_AT:
        return "red"
    if charged >= cap * AMBER_AT:
        return "amber"
    return "ok"


def meter_colours(level: str, palette: QPalette) -> tuple[QColor, QColor, QColor]:
    """The meter's groove, filled part and text for a level, from the palette: the
    palette's text reads on both, light or dark."""
    base, text = palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text)
    chunk = (fill_colour(LEVEL_TONES[level], palette) if level in LEVEL_TONES
             else mix(base, text, 0.25))
    return mix(base, text, 0.08), chunk, text


def meter_style(level: str, palette: QPalette) -> str:
    groove, chunk, text = meter_colours(level, palette)
    border = mix(palette.color(QPalette.ColorRole.Base), text, 0.3)
    # A whole style sheet, not only ::chunk: most styles ignore a chunk-only sheet.
    return (f"QProgressBar {{ border: 1px solid {border.name()}; border-radius: 3px;"
            f" background: {groove.name()}; color: {text.name()}; text-align: center; }}"
            f"QProgressBar::chunk {{ background-color: {chunk.name()}; border-radius: 2px; }}")


def amount_text(reading: BudgetReading) -> str:
    """"$3.12 of $20.00"."""
    return (f"{format_usd(reading.summary.charged_micro_usd)} of "
            f"{format_usd(reading.cap_micro_usd)}")


def tray_line(reading: BudgetReading) -> str:
    """"Cloud planning: $3.12 of $20.00 this month", for the tray's menu and tooltip."""
    if reading.cap_micro_usd <= 0:
        return "Cloud planning: off"
    return f"Cloud planning: {amount_text(reading)} this month"


def details(reading: BudgetReading) -> str:
    """Spent, reserved, to reconcile and left, one a line (a tooltip)."""
    s = reading.summary
    lines = [f"Cloud planning, {s.month} (UTC)",
             f"Spent: {format_usd(s.spent_micro_usd)}",
             f"Reserved for calls in progress: {format_usd(s.reserved_micro_usd)}"]
    if s.flagged_count:
        lines.append(f"Charged at the worst case, cost not yet known: "
                     f"{format_usd(s.flagged_micro_usd)} ({s.flagged_count} call(s))")
    left = max(0, reading.cap_micro_usd - s.charged_micro_usd)
    lines.append(f"Left: {format_usd(left)} of {format_usd(reading.cap_micro_usd)}")
    return "\n".join(lines)


class BudgetAlerts:
    """Which budget notifications are due: each threshold once per month, remembered for
    as long as the app runs."""

    def __init__(self) -> None:
        self._shown: set[tuple[str, str]] = set()

    def due(self, reading: BudgetReading) -> str | None:
        """The message to show now, or None; marks it (and any lower one) as shown."""
        now = budget_level(reading)
        if now not in ("amber", "red"):
            return None
        month = reading.summary.month
        if (month, now) in self._shown:
            return None
        self._shown.add((month, now))
        if now == "red":
            self._shown.add((month, "amber"))  # past 100% at once: the 80% one is moot
            return (f"This month's cloud planning budget is used up ({amount_text(reading)}). "
                    "Planning runs locally until next month, or raise the budget in Settings.")
        return (f"80% of this month's cloud planning budget is used ({amount_text(reading)}).")


class BudgetMeter(QProgressBar):
    """The status bar's "Cloud: $3.12 of $20.00", amber from 80% and red from 100%;
    hidden while cloud planning is off (a budget of 0). `level` is "ok", "amber", "red" or
    "off". Its colours follow the application's palette (`meter_style`)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(0, _SCALE)
        self.setTextVisible(True)
        self.setFixedWidth(190)
        self.setMaximumHeight(18)
        self._level = ""
        self._apply_level("off")
        self.setFormat("Cloud planning off")
        self.hide()

    def _get_level(self) -> str:
        return self._level

    level = Property(str, _get_level)

    def set_reading(self, reading: BudgetReading) -> None:
        now = budget_level(reading)
        self._apply_level(now)
        if now == "off":
            self.setValue(0)
            self.setFormat("Cloud planning off")
            self.setToolTip("Cloud planning is off: set a monthly budget in Settings.")
            self.hide()
            return
        charged = min(reading.summary.charged_micro_usd, reading.cap_micro_usd)
        self.setValue(round(charged * _SCALE / reading.cap_micro_usd))
        self.setFormat(f"Cloud: {amount_text(reading)}")  # no %: taken literally
        self.setToolTip(details(reading))
        self.show()

    def _apply_level(self, now: str) -> None:
        if now != self._level:
            self._level = now
            follow_palette(self, partial(meter_style, now))
