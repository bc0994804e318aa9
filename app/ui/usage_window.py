"""The Usage page: where this month's model calls ran, what the cloud cost beside what
the same work would have cost in the cloud alone, what that saved, and how often a call
had to fall back; for all work or one workflow, for any month with calls.

Charts are pyqtgraph's (imported when the page is first opened): tokens a day by tier,
and the month's cloud spend beside the cloud-only baseline, both added up day by day.
The figures come from the record of calls through `Workspace.usage`, on the core loop.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.money import format_usd
from app.core.routing.report import MonthReport
from app.core.routing.tiers import Tier, Workflow
from app.core.workspace import Usage, Workspace
from app.ui.bridge import Bridge
from app.ui.theme import series_colours

# Which of the theme's chart colours each series takes.
SERIES = {Tier.OFFICE_NODE: 0, Tier.LOCAL_GPUS: 1, Tier.CLOUD: 2, "baseline": 3}
TOKENS_CHART = ("Tokens a day", "tokens")
MONEY_CHART = ("The month so far: cloud spend and the cloud-only cost", "US dollars")
ALL_WORK = "All work"
WORKFLOW_LABELS = {None: ALL_WORK, Workflow.CHAT: "Chats", Workflow.SUMMARY: "Summaries",
                   Workflow.DOCUMENT_QUESTION: "Document questions",
                   Workflow.PLANNED_TASK: "Planned tasks"}


class UsageWindow(QWidget):
    """The Usage page. `refresh()` reads the figures again (on show, and on Refresh).

    Signals: none; it reads through the bridge and redraws when the figures arrive.
    """

    def __init__(self, bridge: Bridge, workspace: Workspace,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.bridge = bridge
        self.workspace = workspace
        self.usage: Usage | None = None
        self.setWindowTitle("Switchboard — Usage")
        self.resize(820, 640)

        self.month = QComboBox()
        self.month.activated.connect(lambda _: self.refresh(self.month.currentText()))
        self.workflow = QComboBox()
        for workflow, label in WORKFLOW_LABELS.items():
            self.workflow.addItem(label, workflow)
        self.workflow.currentIndexChanged.connect(lambda _: self._show())
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(lambda: self.refresh(self.month.currentText() or None))
        top = QHBoxLayout()
        top.addWidget(QLabel("Month (UTC):"))
        top.addWidget(self.month)
        top.addWidget(QLabel("Show:"))
        top.addWidget(self.workflow)
        top.addStretch(1)
        top.addWidget(refresh)

        self.figures: dict[str, QLabel] = {}
        grid = QGridLayout()
        for i, (key, title) in enumerate((
                ("local_share", "Run on the office's hardware"), ("calls", "Model calls"),
                ("cloud", "Cloud spend"), ("baseline", "Cloud-only cost"),
                ("savings", "Saved"), ("fallback", "Fell back"))):
            name = QLabel(title)
            value = QLabel("…")
            value.setObjectName(f"usage_{key}")
            font = value.font()
            font.setPointSizeF(font.pointSizeF() * 1.4)
            font.setBold(True)
            value.setFont(font)
            grid.addWidget(name, (i // 3) * 2, i % 3)
            grid.addWidget(value, (i // 3) * 2 + 1, i % 3)
            self.figures[key] = value
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.PlainText)

        self.tokens_chart = _plot()
        self.tokens_legend = self.tokens_chart.addLegend(offset=(10, 10))
        self.tier_bars: dict[Tier, pg.BarGraphItem] = {}
        for tier in Tier:
            bars = pg.BarGraphItem(x=[], height=[], width=0.8, name=tier.label, pen=None)
            self.tokens_chart.addItem(bars)
            self.tier_bars[tier] = bars
        self.money_chart = _plot()
        self.money_legend = self.money_chart.addLegend(offset=(10, 10))
        self.spend_line = self.money_chart.plot([], [], name="Cloud spend")
        self.baseline_line = self.money_chart.plot([], [], name="Had it all run in the cloud")
        self._recolour()

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(grid)
        layout.addWidget(self.note)
        layout.addWidget(self.tokens_chart, 1)
        layout.addWidget(self.money_chart, 1)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 — Qt's name
        if event.type() == QEvent.Type.PaletteChange:  # a theme chosen, or the system's
            self._recolour()
        super().changeEvent(event)

    def _recolour(self) -> None:
        """Colour the charts from the palette: pyqtgraph draws in colours it is given."""
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        foreground = palette.color(QPalette.ColorRole.Text)
        colours = series_colours(palette)
        for chart, legend, (title, units) in (
                (self.tokens_chart, self.tokens_legend, TOKENS_CHART),
                (self.money_chart, self.money_legend, MONEY_CHART)):
            _colour_plot(chart, title, units, background, foreground)
            legend.setLabelTextColor(foreground)
            for _, label in legend.items:
                label.setText(label.text)  # pyqtgraph applies a new colour on the next text
        for tier, bars in self.tier_bars.items():
            bars.setOpts(brush=colours[SERIES[tier]])
        self.spend_line.setPen(pg.mkPen(colours[SERIES[Tier.CLOUD]], width=2))
        self.baseline_line.setPen(pg.mkPen(colours[SERIES["baseline"]], width=2,
                                           style=Qt.PenStyle.DashLine))

    def showEvent(self, event: Any) -> None:  # noqa: N802 — Qt's name
        super().showEvent(event)
        self.refresh(self.month.currentText() or None)

    def refresh(self, month: str | None = None) -> None:
        self.bridge.run(self.workspace.usage(month), on_done=self._on_usage,
                        on_error=self._on_error)

    def _on_error(self, error: BaseException) -> None:
        self.note.setText(f"The record of model calls could not be read: {error}")

    def _on_usage(self, usage: Usage) -> None:
        self.usage = usage
        self.month.blockSignals(True)
        self.month.clear()
        self.month.addItems(usage.months)
        self.month.setCurrentText(usage.month)
        self.month.blockSignals(False)
        self._show()

    def report(self) -> MonthReport | None:
        """The figures shown: the month's, for the workflow chosen."""
        if self.usage is None:
            return None
        workflow = self.workflow.currentData()
        return self.usage.total if workflow is None else self.usage.by_workflow[workflow]

    def _show(self) -> None:
        report = self.report()
        if report is None:
            return
        total = report.total
        self.figures["local_share"].setText(f"{total.local_share:.0%} of tokens"
                                            if total.tokens else "—")
        self.figures["calls"].setText(f"{total.calls:,}")
        self.figures["cloud"].setText(format_usd(total.cloud_cost_micro_usd))
        self.figures["baseline"].setText(format_usd(total.baseline_micro_usd))
        self.figures["savings"].setText(format_usd(total.savings_micro_usd))
        self.figures["fallback"].setText(f"{total.fallback_rate:.0%} of calls"
                                         if total.calls else "—")
        self.note.setText(_note(report))
        days = sorted(report.by_day)
        x = [d.day for d in days]
        bottom = [0] * len(days)
        for tier in Tier:
            heights = [report.by_day[d].tokens_by_tier.get(tier.value, 0) for d in days]
            self.tier_bars[tier].setOpts(x=x, height=heights, y0=list(bottom), width=0.8)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        spend, baseline = _running(report, days)
        self.spend_line.setData(x, spend)
        self.baseline_line.setData(x, baseline)
        # Whole days on the axis: every day in a short month so far, else every fifth.
        ticks = [(day, str(day)) for day in x if len(x) <= 10 or day == 1 or day % 5 == 0]
        for chart in (self.tokens_chart, self.money_chart):
            chart.getAxis("bottom").setTicks([ticks])
            chart.enableAutoRange()


def _plot() -> pg.PlotWidget:
    chart = pg.PlotWidget()
    chart.showGrid(y=True, alpha=0.25)
    chart.setMouseEnabled(x=False, y=False)
    chart.setMenuEnabled(False)
    return chart


def _colour_plot(chart: pg.PlotWidget, title: str, units: str, background: QColor,
                 foreground: QColor) -> None:
    chart.setBackground(background)
    chart.setTitle(title, color=foreground)
    chart.setLabel("left", units, color=foreground)
    chart.setLabel("bottom", "day of the month", color=foreground)
    for side in ("left", "bottom"):
        axis = chart.getAxis(side)
        axis.setPen(foreground)
        axis.setTextPen(foreground)


def _running(report: MonthReport, days: list[date]) -> tuple[list[float], list[float]]:
    """Cloud spend and the cloud-only baseline, in dollars, added up day by day."""
    spend: list[float] = []
    baseline: list[float] = []
    s = b = 0
    for day in days:
        s += report.by_day[day].cloud_cost_micro_usd
        b += report.by_day[day].baseline_micro_usd
        spend.append(s / 1_000_000)
        baseline.append(b / 1_000_000)
    return spend, baseline


def _note(report: MonthReport) -> str:
    total = report.total
    if not total.calls:
        return "No model calls were recorded for this."
    tiers = total.tokens_by_tier
    text = (f"{total.tokens:,} tokens: {tiers['office_node']:,} on office nodes, "
            f"{tiers['local_gpus']:,} on your GPUs, {tiers['cloud']:,} in the cloud. "
            "The cloud-only cost prices every token at the cloud planner's rate.")
    if total.local_cost_micro_usd:
        text += (f" The savings count {format_usd(total.local_cost_micro_usd)} of running "
                 "cost IT set for its nodes.")
    return text
