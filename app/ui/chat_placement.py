"""Where each row of the chat view sits: its height and its top, in content coordinates (the
top of the first row is 0). Pure bookkeeping, no Qt: the view places rows, the delegate sizes
them."""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate


class RowLayout:
    """The rows' heights and tops, kept as plain lists.

    A row's height changes by set_heights(), which moves only the rows below it: their tops are
    summed again from there in one C loop (itertools.accumulate), and no row is asked for its
    size again.
    """

    def __init__(self) -> None:
        self._heights: list[int] = []
        self._tops: list[int] = [0]  # one more than rows: the last is the total height

    def __len__(self) -> int:
        return len(self._heights)

    def set_all(self, heights: list[int]) -> None:
        """Place these rows, from the top."""
        self._heights = heights
        self._tops = [0, *accumulate(heights)]

    def set_heights(self, heights: dict[int, int]) -> list[int]:
        """Give these rows (row: height) new heights; the rows whose height changed, in order."""
        changed = sorted(row for row, h in heights.items() if self._heights[row] != h)
        for row in changed:
            self._heights[row] = heights[row]
        if changed:
            self._restack(changed[0])
        return changed

    def insert(self, row: int, heights: list[int]) -> None:
        """New rows before `row` (at the end when `row` is the row count)."""
        self._heights[row:row] = heights
        self._restack(row)

    def remove(self, first: int, last: int) -> None:
        """Take out rows `first` to `last`, both included."""
        del self._heights[first : last + 1]
        self._restack(first)

    def height(self, row: int) -> int:
        return self._heights[row]

    def top(self, row: int) -> int:
        return self._tops[row]

    @property
    def total(self) -> int:
        return self._tops[-1]

    def row_at(self, y: int) -> int:
        """The row that covers content position `y`, or -1 if none does."""
        if not 0 <= y < self._tops[-1]:
            return -1
        return bisect_right(self._tops, y) - 1

    def rows_between(self, top: int, bottom: int) -> range:
        """The rows that cover any of content positions `top` to `bottom`, both included."""
        if not self._heights or bottom < 0 or top >= self._tops[-1]:
            return range(0)
        first = max(bisect_right(self._tops, top) - 1, 0)
        last = min(bisect_right(self._tops, bottom) - 1, len(self._heights) - 1)
        return range(first, last + 1)

    def _restack(self, row: int) -> None:
        self._tops[row:] = accumulate(self._heights[row:], initial=self._tops[row])
