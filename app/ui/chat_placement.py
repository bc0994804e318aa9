"""Keeps the chat view's layout in step with its rows' heights: the sizes the list view placed its
rows with in its last layout pass, and one coalesced request for a new pass when those changed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Final

from PySide6.QtCore import QObject, QSize, QTimer, Signal

from app.ui.chat_heights import RowHeights
from app.ui.chat_model import ChatModel
from app.ui.chat_stats import LayoutStats


class RowPlacement(QObject):
    """The sizes the view's rows were placed with, and when to ask it to place them again.

    QListView re-lays out every row whenever any row's size hint changes, so a change is
    announced only when a row's real height differs from the one it was placed with, and
    requests that come close together are merged into one. A streaming answer asks at most
    every STREAM_RELAYOUT_MS.

    Signals:
        relayoutWanted(int): a row whose size changed; the delegate passes it on to the view
            as sizeHintChanged, which makes the view lay out all its rows again.
    """

    relayoutWanted = Signal(int)

    STREAM_RELAYOUT_MS: Final = 100

    def __init__(
        self,
        model: ChatModel,
        heights: RowHeights,
        stats: LayoutStats,
        viewport_width: Callable[[], int],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._model = model
        self._heights = heights
        self._stats = stats
        self._viewport_width = viewport_width
        self._in_layout = False
        self._pass_width = 0
        self._relayout_timer = QTimer(self)
        self._relayout_timer.setSingleShot(True)
        self._relayout_timer.timeout.connect(self._emit_relayout)
        self._relayout_after = 0  # the layout pass count when it was asked for
        self._last_relayout = 0.0
        self.reset()

    def reset(self) -> None:
        """Forget what was placed: the view will place every row again."""
        # The sizes the rows were placed with in the view's last layout pass, by row, and the
        # rows whose size must be worked out again in the next pass.
        self._placed: list[QSize | None] = []
        self._stale: set[int] = set()
        self._pass_key = (-1, -1)  # (width, rows) of the last layout pass
        self._relayout_row: int | None = None

    def begin_pass(self) -> bool:
        """The view starts a layout pass; True if it is at a new width."""
        self._in_layout = True
        self._stats.layout_passes += 1
        width = self._pass_width = self._viewport_width()
        rows = self._model.rowCount()
        old_width, old_rows = self._pass_key
        if width == old_width and rows >= old_rows:
            # A ChatModel only grows at the end (anything else is a reset): rows keep their sizes.
            self._placed.extend([None] * (rows - old_rows))
        else:
            self._placed = [None] * rows
            self._stale = {row for row in self._stale if row < rows}
        self._pass_key = (width, rows)
        return width != old_width

    def end_pass(self) -> None:
        self._in_layout = False

    def size_hint(self, row: int) -> QSize:
        """The row's size for the view: inside a layout pass, the one it is placed with.

        QListView also asks for sizes outside a layout pass (its visualRect() does, for every
        row it paints), so only sizes given during a pass are the ones the rows were placed with.
        """
        # QListView asks for every row on every layout pass, thousands of calls a pass, so
        # within a pass a row whose size is known costs a list lookup.
        placed = self._placed
        if self._in_layout and row < len(placed):
            size = placed[row]
            stale = row in self._stale  # its message or its place on screen changed
            if size is None or stale:
                size = placed[row] = self._heights.size(row, self._pass_width, recheck=stale)
                self._stale.discard(row)
            return size
        size = self._heights.size(row, self._viewport_width())
        if self.placed_height(row) != size.height():
            self.request_relayout(row)  # the row was placed with another size: stale layout
        return size

    def placed_height(self, row: int) -> int | None:
        """The height the row was placed with in the last layout pass, if it was."""
        size = self._placed[row] if 0 <= row < len(self._placed) else None
        return None if size is None else size.height()

    def mark_stale(self, rows: Iterable[int]) -> None:
        """Work these rows' sizes out again in the next pass instead of reusing them."""
        self._stale.update(rows)

    def row_measured(self, row: int, height: int) -> None:
        """The row's exact height is now known: ask for a new pass if it was placed otherwise."""
        self._stale.add(row)
        if self.placed_height(row) != height:
            self.request_relayout(row)

    def request_relayout(self, row: int) -> None:
        """Ask the view to place its rows again, soon, merged with any request pending."""
        self._stale.add(row)
        self._relayout_row = row
        self._relayout_after = self._stats.layout_passes
        if self._relayout_timer.isActive():
            return
        delay = 0
        if self._model.message_at(row).status == "streaming":
            since_ms = (time.perf_counter() - self._last_relayout) * 1000
            delay = max(0, int(self.STREAM_RELAYOUT_MS - since_ms))
        self._relayout_timer.start(delay)

    def _emit_relayout(self) -> None:
        row, self._relayout_row = self._relayout_row, None
        if self._stats.layout_passes != self._relayout_after:
            return  # the view laid out its rows since (a resize, say): the stale rows are done
        if row is None or row >= self._model.rowCount():
            return
        self._last_relayout = time.perf_counter()
        self.relayoutWanted.emit(row)
