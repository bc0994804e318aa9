"""A small bar chart of one month's cloud planning spend, a bar a day, painted with
QPainter (QtCharts is not in PySide6-Essentials)."""

from __future__ import annotations

from datetime import date

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.core.money import format_usd
from app.ui.theme import mix

LABELLED_DAYS = (1, 5, 10, 15, 20, 25)  # and the month's last day


class SpendChart(QWidget):
    """This month's spend by day. `set_days` takes `Ledger.daily_spend`'s list; `bar_rects`
    is where each day's bar is drawn (tests measure it)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.days: list[tuple[date, int]] = []
        self.today: date | None = None
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("What cloud planning was charged each day this month (UTC)")

    def sizeHint(self) -> QSize:  # noqa: N802 — Qt's name
        return QSize(420, 140)

    def set_days(self, days: list[tuple[date, int]], today: date | None = None) -> None:
        self.days = list(days)
        self.today = today
        self.update()

    @property
    def max_micro_usd(self) -> int:
        return max((amount for _, amount in self.days), default=0)

    def _plot_area(self) -> QRectF:
        fm = self.fontMetrics()
        left = fm.horizontalAdvance("$00.00") + 8
        return QRectF(self.rect()).adjusted(left, fm.height() / 2 + 2, -4, -(fm.height() + 4))

    def bar_rects(self) -> list[QRectF]:
        """One rectangle per day, in order; a day without spend has height 0."""
        area = self._plot_area()
        if not self.days or area.width() <= 0 or area.height() <= 0:
            return []
        top = self.max_micro_usd
        slot = area.width() / len(self.days)
        gap = min(2.0, slot / 4)
        rects = []
        for i, (_, amount) in enumerate(self.days):
            height = area.height() * amount / top if top else 0.0
            rects.append(QRectF(area.left() + i * slot + gap / 2, area.bottom() - height,
                                slot - gap, height))
        return rects

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 — Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        palette = self.palette()
        text = palette.color(QPalette.ColorRole.Text)
        grid = palette.color(QPalette.ColorRole.Mid)
        # Today in the highlight colour, the other days a paler (or, on dark, deeper) one.
        today = palette.color(QPalette.ColorRole.Highlight)
        other = mix(palette.color(QPalette.ColorRole.Base), today, 0.6)
        area = self._plot_area()
        fm = self.fontMetrics()

        # Axis labels: the largest day at the top, zero at the bottom.
        painter.setPen(text)
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        for y, amount in ((area.top(), self.max_micro_usd), (area.bottom(), 0)):
            painter.drawText(QRectF(0, y - fm.height() / 2, area.left() - 6, fm.height()),
                             right, format_usd(amount))
        painter.setPen(QPen(grid, 1, Qt.PenStyle.DotLine))
        painter.drawLine(QPointF(area.left(), area.top()), QPointF(area.right(), area.top()))
        painter.setPen(QPen(grid, 1))
        painter.drawLine(QPointF(area.left(), area.bottom()),
                         QPointF(area.right(), area.bottom()))

        rects = self.bar_rects()
        painter.setPen(Qt.PenStyle.NoPen)
        for (day, _), rect in zip(self.days, rects, strict=True):
            if rect.height() > 0:
                painter.setBrush(today if day == self.today else other)
                painter.drawRect(rect)

        # Day numbers under a few bars.
        painter.setPen(text)
        centre = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop
        last = len(self.days)
        for (day, _), rect in zip(self.days, rects, strict=True):
            if day.day in LABELLED_DAYS or day.day == last:
                label = QRectF(rect.center().x() - 15, area.bottom() + 2, 30, fm.height())
                painter.drawText(label, centre, str(day.day))
        if not self.max_micro_usd:
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "No cloud planning this month")
        painter.end()
