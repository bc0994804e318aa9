"""The heights of a chat's rows, cached per message, content version and viewport width: exact
where a row was laid out, estimated from its length everywhere else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from app.core.history import Message
from app.ui.chat_bubble import BubbleGeometry
from app.ui.chat_documents import DocumentCache, MessageDocument
from app.ui.chat_model import ChatModel
from app.ui.chat_stats import LayoutStats


@dataclass(slots=True)
class _Sizes:
    """A message's row heights at the last few viewport widths, for one content version."""

    version: int
    exact: dict[int, int] = field(default_factory=dict)
    estimated: dict[int, int] = field(default_factory=dict)


def _keep[T](by_width: dict[int, T], width: int, value: T) -> None:
    if width not in by_width and len(by_width) >= 4:
        # Two or three widths are what resizing goes back and forth between.
        del by_width[next(iter(by_width))]
    by_width[width] = value


class RowHeights:
    """Row heights that cost a layout only where one is wanted.

    A row is measured exactly (its document laid out) when it is wanted exact: every row of a
    short chat and a streaming answer, and whatever rows the view asks for (those on screen).
    Any other row gets an estimate until it is measured, by the view or in the background
    (RefinementScheduler). Only heights, a few ints, are kept for every row.
    """

    EXACT_ALL_ROWS: Final = 120  # a chat this short is always measured exactly

    def __init__(
        self,
        model: ChatModel,
        documents: DocumentCache,
        geometry: BubbleGeometry,
        stats: LayoutStats,
    ) -> None:
        self._model = model
        self._documents = documents
        self._geometry = geometry
        self._stats = stats
        self._sizes: dict[int, _Sizes] = {}  # by message id

    def clear(self) -> None:
        self._sizes = {}

    def forget(self, message_id: int) -> None:
        """Drop the message's heights: its document changed within one version."""
        self._sizes.pop(message_id, None)

    def height(self, row: int, width: int) -> int:
        """The row's height: exact if known or wanted, else an estimate.

        The view asks this of every row when it places them all, so a known height costs two
        dict lookups.
        """
        msg, version = self._model.message_at(row), self._model.version_at(row)
        sizes = self._sizes.get(msg.id)
        if sizes is not None and sizes.version == version:
            known = sizes.exact.get(width) or sizes.estimated.get(width)
            if known:
                return known
        if self._wants_exact(msg):
            return self.measure(row, width)[1]
        height = self._geometry.estimated_height(self._model.shown_at(row), width)
        _keep(self._sizes_of(msg, version).estimated, width, height)
        return height

    def exact(self, row: int, width: int) -> int | None:
        """The row's height if it was laid out at `width` in its current version, else None."""
        sizes = self._sizes.get(self._model.message_at(row).id)
        if sizes is None or sizes.version != self._model.version_at(row):
            return None
        return sizes.exact.get(width)

    def measure(self, row: int, width: int, *, keep: bool = True) -> tuple[MessageDocument, int]:
        """The row's document laid out at `width`, and the row's exact height there.

        With keep=False a document that had to be built is not cached (see DocumentCache).
        """
        msg, version = self._model.shown_at(row), self._model.version_at(row)
        document = self._documents.document_for(msg, version, keep=keep)
        text_w = self._geometry.text_width(msg, width)
        exact = self.exact(row, width)
        if exact is not None and document.is_laid_out_at(text_w):
            return document, exact
        document.lay_out(text_w)
        self._stats.layouts_done += 1
        height = self._geometry.row_height(document.doc_h, msg, text_w)
        _keep(self._sizes_of(msg, version).exact, width, height)
        return document, height

    def _sizes_of(self, msg: Message, version: int) -> _Sizes:
        sizes = self._sizes.get(msg.id)
        if sizes is None or sizes.version != version:
            sizes = self._sizes[msg.id] = _Sizes(version)
        return sizes

    def _wants_exact(self, msg: Message) -> bool:
        return self._model.rowCount() <= self.EXACT_ALL_ROWS or msg.status == "streaming"
