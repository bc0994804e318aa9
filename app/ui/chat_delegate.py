"""Paints the chat transcript's messages as bubbles and keeps sizing cheap at thousands of rows.

The delegate is the Qt face of the transcript's parts and wires them together: rendered
documents (chat_documents), bubble measurements (chat_bubble), row heights (chat_heights),
background refinement (chat_refinement), painting (chat_painter) and clicks (chat_hit_test).
The view places the rows (chat_placement) with the heights the delegate gives it.
"""

from __future__ import annotations

from typing import Any, cast

from PySide6.QtCore import QEvent, QModelIndex, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QMouseEvent, QPainter
from PySide6.QtWidgets import QAbstractItemView, QStyledItemDelegate, QStyleOptionViewItem

from app.core.history import Message
from app.ui.chat_bubble import WAITING, Bubble, BubbleGeometry, status_text
from app.ui.chat_documents import DocumentCache
from app.ui.chat_heights import RowHeights
from app.ui.chat_hit_test import CodeClipboard, target_at
from app.ui.chat_markdown import SafeDocument
from app.ui.chat_model import ChatModel, ModelIndex
from app.ui.chat_painter import BubblePainter
from app.ui.chat_refinement import RefinementScheduler
from app.ui.chat_stats import LayoutStats

__all__ = ["WAITING", "ChatDelegate"]


class ChatDelegate(QStyledItemDelegate):
    """Paints a ChatView's messages as bubbles of rendered Markdown and keeps their layouts cheap.

    The user's messages are right-aligned and tinted with the palette's highlight; answers are
    left-aligned. A code block gets a monospace font, a shaded background and a Copy button;
    clicking a link only emits linkActivated, the delegate never opens anything.

    A row gets an exact layout when the view asks for one (the rows on screen), when it is
    wanted exact (see RowHeights), or a few rows at a time in the background
    (RefinementScheduler); every other row is sized by an estimate. `stats` counts the layout
    work done, for tests and benchmarks.

    Signals:
        rowsChanged(list): rows whose height or document changed without a change to their
            message (measured in the background; a finished answer's Markdown now laid out):
            the view places and repaints them.
        codeCopied(str): the text of the code block whose Copy button was clicked.
        linkActivated(str): the URL of a link the user clicked in a message.
        actionRequested(str, int): an action under a message ("edit", "regenerate",
            "continue", "retry-plan") was clicked, and the message's id.
    """

    rowsChanged = Signal(list)
    codeCopied = Signal(str)
    linkActivated = Signal(str)
    actionRequested = Signal(str, int)

    def __init__(self, view: QAbstractItemView, model: ChatModel) -> None:
        super().__init__(view)
        self._view = view
        self._model = model
        self.stats = LayoutStats()
        self._geometry = BubbleGeometry(view)
        self._documents = DocumentCache(view, self.stats)
        self._heights = RowHeights(model, self._documents, self._geometry, self.stats)
        self._refinement = RefinementScheduler(
            model, self._heights, self._viewport_width, parent=self
        )
        self._painter = BubblePainter(self._geometry)
        self._clipboard = CodeClipboard(lambda: self._view.viewport().update(), parent=self)
        self._refinement.rowsMeasured.connect(self.rowsChanged)
        self._documents.markdownReady.connect(self._on_markdown_ready)
        self._clipboard.codeCopied.connect(self.codeCopied)

    # -- for the view and tests ----------------------------------------------------------------

    def reset_caches(self) -> None:
        """Forget every document and height, e.g. after a model reset or a font change."""
        self._documents.clear()
        self._heights.clear()
        self._refinement.reset()
        self._geometry.update_metrics()

    def drop_documents(self) -> None:
        """Forget rendered documents but keep heights: the palette (colours only) changed."""
        self._documents.drop_rendered()

    def set_focus_rows(self, rows: range) -> None:
        """Tell the delegate which rows are on screen: background refinement starts there."""
        if rows != self._refinement.focus_rows:
            self._refinement.focus_rows = rows
            self._refinement.restart()

    @property
    def refine_delay_ms(self) -> int:
        """How long background refinement waits after a resize or scroll before it starts."""
        return self._refinement.delay_ms

    @refine_delay_ms.setter
    def refine_delay_ms(self, delay_ms: int) -> None:
        self._refinement.delay_ms = delay_ms

    def restart_refinement(self) -> None:
        """Measure estimated rows again, from the screen outward, after refine_delay_ms."""
        self._refinement.restart()

    @property
    def refining(self) -> bool:
        """Whether background refinement has rows left to measure (or is about to start)."""
        return self._refinement.active

    @property
    def finishing(self) -> bool:
        """Whether a finished answer's Markdown is still being laid out (see DocumentCache)."""
        return self._documents.finishing

    def row_heights(self, width: int) -> list[int]:
        """Every row's height at viewport `width`: exact where known or wanted, else estimated."""
        height = self._heights.height
        return [height(row, width) for row in range(self._model.rowCount())]

    def row_height(self, row: int, width: int) -> int:
        """The row's height at viewport `width`: exact where known or wanted, else estimated."""
        return self._heights.height(row, width)

    def exact_heights(self, rows: range, width: int) -> dict[int, int]:
        """Lay out those of `rows` not yet measured at `width`; their exact heights, by row."""
        return {
            row: self._heights.measure(row, width)[1]
            for row in rows
            if self._heights.exact(row, width) is None
        }

    def document(self, index: QModelIndex) -> SafeDocument:
        """The row's document, laid out at the view's current width (built if needed)."""
        return self._heights.measure(index.row(), self._viewport_width())[0].doc

    def code_blocks(self, index: QModelIndex) -> list[str]:
        """The text of each code block of the row, as its Copy button copies it."""
        document = self._heights.measure(index.row(), self._viewport_width())[0]
        return [block.text for block in document.code_blocks]

    def copy_button_rects(self, index: QModelIndex) -> list[QRect]:
        """Where the row's Copy buttons are, in viewport coordinates, one per code block."""
        rect = self._view.visualRect(index)
        return self._geometry.copy_rects(self._bubble(index.row(), rect)) if rect.isValid() else []

    def action_rects(self, index: QModelIndex) -> dict[str, QRect]:
        """Where the row's actions are ("regenerate": its rect), in viewport coordinates."""
        rect = self._view.visualRect(index)
        if not rect.isValid():
            return {}
        return {action: where for action, _, where in self._bubble(index.row(), rect).actions}

    def content_rect(self, index: QModelIndex) -> QRect:
        """Where the row's document is drawn, in viewport coordinates (empty if not laid out)."""
        rect = self._view.visualRect(index)
        return self._bubble(index.row(), rect).content if rect.isValid() else QRect()

    def exact_height(self, index: QModelIndex) -> int | None:
        """The row's height if it was laid out at the current width; None if only estimated."""
        return self._heights.exact(index.row(), self._viewport_width())

    def status_text(self, message: Message) -> str:
        """The lines under an answer (see chat_bubble.status_text)."""
        return status_text(message)

    def clickable_at(self, index: QModelIndex, pos: QPoint) -> bool:
        """Whether viewport position `pos` is over a Copy button or a link of row `index`."""
        rect = self._view.visualRect(index)
        if not rect.isValid():
            return False
        return target_at(self._geometry, self._bubble(index.row(), rect), pos) is not None

    def message_changed(self, row: int, width: int) -> tuple[int, int]:
        """The row's message changed (streamed text, finished): its new height, and how far
        down the row what changed begins (0: all of it).

        Only this row is laid out, and a streaming answer only from the text appended, so the
        view repaints only the lines that text went to.
        """
        document, height = self._heights.measure(row, width)
        changed = self._geometry.content_top() + document.changed_y if document.changed_y else 0
        return height, changed

    # -- Qt overrides --------------------------------------------------------------------------

    def sizeHint(self, option: QStyleOptionViewItem, index: ModelIndex) -> QSize:
        width = self._viewport_width()
        return QSize(width, self._heights.height(index.row(), width))

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: ModelIndex) -> None:
        row_rect = QRect(option.rect)
        visible = self._view.viewport().rect()
        if painter.hasClipping():  # the view clips to what it repaints: draw only that much
            visible = painter.clipBoundingRect().toAlignedRect()
        bubble = self._bubble(index.row(), row_rect)
        self._painter.paint(
            painter,
            bubble,
            row_rect,
            option.palette,
            visible,
            self._clipboard.copied_block(bubble.msg.id),
        )

    def editorEvent(
        self, event: QEvent, model: Any, option: QStyleOptionViewItem, index: ModelIndex
    ) -> bool:
        mouse = cast(QMouseEvent, event)
        if (
            event.type() in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease)
            and mouse.button() == Qt.MouseButton.LeftButton
        ):
            bubble = self._bubble(index.row(), QRect(option.rect))
            pos = mouse.position().toPoint()
            target = target_at(self._geometry, bubble, pos)
            if target is None and bubble.msg.kind == "step" and bubble.frame.contains(pos):
                if event.type() == QEvent.Type.MouseButtonRelease:
                    self._model.toggle(bubble.msg.id)  # a step opens and closes on a click
                return True
            # The press too is taken, so that the view starts no drag or selection.
            if target is not None and event.type() == QEvent.Type.MouseButtonRelease:
                if isinstance(target, int):
                    code = bubble.document.code_blocks[target].text
                    self._clipboard.copy(bubble.msg.id, target, code)
                elif target.startswith("action:"):
                    self.actionRequested.emit(target.removeprefix("action:"), bubble.msg.id)
                else:
                    self.linkActivated.emit(target)
            if target is not None:
                return True
        return super().editorEvent(event, model, option, index)

    # -- helpers -------------------------------------------------------------------------------

    def _bubble(self, row: int, rect: QRect) -> Bubble:
        """Row `row`, placed in `rect`, measured at the view's width."""
        width = self._viewport_width()
        document, height = self._heights.measure(row, width)
        return self._geometry.place(self._model.shown_at(row), document, height, rect, width)

    def _viewport_width(self) -> int:
        return max(self._view.viewport().width(), 1)

    def _on_markdown_ready(self, message_id: int) -> None:
        self._heights.forget(message_id)  # measured with the streamed text
        row = self._model.row_of(message_id)
        if row is not None:
            self._heights.measure(row, self._viewport_width())  # laid out already: cheap
            self.rowsChanged.emit([row])
