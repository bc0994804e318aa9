"""Measures a chat's estimated rows exactly in the background, a few at a time and nearest the
screen first, so that scrolling meets real heights without a long pause anywhere."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Final

from PySide6.QtCore import QObject, QTimer, Signal

from app.ui.chat_heights import RowHeights
from app.ui.chat_model import ChatModel


class RefinementScheduler(QObject):
    """Replaces estimated row heights by exact ones on timer ticks, from the screen outward.

    Each tick measures at most BATCH rows or BUDGET_S of work, whichever comes first, then
    yields to the event loop; only rows within RADIUS of the screen are measured at all. It
    starts `delay_ms` after restart(), so that a drag-resize settles first.

    Signals:
        rowsMeasured(list): the rows a tick measured; the view places them at their new heights.
    """

    rowsMeasured = Signal(list)

    INTERVAL_MS: Final = 15
    BATCH: Final = 24
    BUDGET_S: Final = 0.008
    RADIUS: Final = 250

    def __init__(
        self,
        model: ChatModel,
        heights: RowHeights,
        viewport_width: Callable[[], int],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._model = model
        self._heights = heights
        self._viewport_width = viewport_width
        self.delay_ms = 250
        self.focus_rows = range(0)  # the rows on screen, from the view: refinement starts there
        self._rows: Iterator[int] | None = None  # the rows still to measure, in order
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._tick)

    def reset(self) -> None:
        """Forget the rows still to measure; the next tick starts from the screen again."""
        self._rows = None

    def restart(self) -> None:
        """Measure estimated rows again, from the screen outward, after delay_ms."""
        self._rows = None
        self._timer.start(self.delay_ms)

    @property
    def active(self) -> bool:
        """Whether it has rows left to measure (or is about to start)."""
        return self._timer.isActive()

    def _rows_outward(self, rows: int) -> Iterator[int]:
        """Rows nearest the screen first, alternating below and above, within RADIUS."""
        focus = self.focus_rows
        center = (focus.start + focus.stop) // 2 if focus else rows - 1
        yield center
        for d in range(1, self.RADIUS + 1):
            yield from (row for row in (center + d, center - d) if 0 <= row < rows)

    def _tick(self) -> None:
        """Measure a bounded batch of estimated rows and hand them to the view."""
        if self._rows is None:
            self._rows = self._rows_outward(self._model.rowCount())
        width = self._viewport_width()
        deadline = time.perf_counter() + self.BUDGET_S
        measured: list[int] = []
        for row in self._rows:
            if not 0 <= row < self._model.rowCount() or self._heights.exact(row, width) is not None:
                continue
            self._heights.measure(row, width, keep=False)
            measured.append(row)
            if len(measured) >= self.BATCH or time.perf_counter() > deadline:
                self._timer.start(self.INTERVAL_MS)
                break
        else:
            self._rows = None
        if measured:
            self.rowsMeasured.emit(measured)
