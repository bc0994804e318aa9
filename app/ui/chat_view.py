"""The chat transcript: a view of one chat's messages, painted as Markdown bubbles, that follows
a streaming answer while the user is at the bottom and stays put while they read above."""

from __future__ import annotations

from functools import partial
from typing import Any, Final

from PySide6.QtCore import QEvent, QItemSelectionModel, QModelIndex, QPoint, QRect, Qt, Signal
from PySide6.QtGui import (
    QContextMenuEvent,
    QGuiApplication,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QRegion,
    QResizeEvent,
)
from PySide6.QtWidgets import QAbstractItemView, QListView, QMenu, QStyleOptionViewItem, QWidget

from app.ui.chat_bubble import message_actions
from app.ui.chat_delegate import ChatDelegate
from app.ui.chat_model import ChatModel, ModelIndex
from app.ui.chat_placement import RowLayout

__all__ = ["ChatDelegate", "ChatModel", "ChatView"]

_Cursor = QAbstractItemView.CursorAction
_Hint = QAbstractItemView.ScrollHint


class ChatView(QListView):
    """The transcript of one chat: a list view over a ChatModel, painted by a ChatDelegate.

    It places its rows itself (RowLayout), not with QListView's layout: that asks the model and
    the delegate, both in Python, about every row on every layout pass, and passes again
    whenever any row's height changes. Here a row's height change moves only the rows below
    it, and only the rows on screen are painted or measured exactly. It stays a QListView for
    what needs no layout: Qt gives a QListView's messages to screen readers as a list.
    The overrides that place rows call QAbstractItemView's implementation, never QListView's.

    It follows a streaming answer down only while the user is at the bottom; a user who has
    scrolled up to read stays where they are, even while rows above change height.

    Signals:
        codeCopied(str): the text of a code block copied with its Copy button.
        linkActivated(str): a link in a message was clicked; the view does not open it.
        messageCopied(int): the id of a message copied with "Copy message".
        actionRequested(str, int): "edit", "regenerate", "continue" or "retry-plan" for the
            message of that id, from under its bubble or its context menu.
    """

    codeCopied = Signal(str)
    linkActivated = Signal(str)
    messageCopied = Signal(int)
    actionRequested = Signal(str, int)

    BOTTOM_SLACK: Final = 4  # pixels from the end that still count as "at the bottom"
    FOCUS_ROWS: Final = 5  # rows beyond each edge of the screen also measured exactly

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # First: setModel() and the setters below already place rows (updateGeometries).
        self._at_bottom = True
        self._anchor: tuple[int, int] | None = None  # (message id, its top in the viewport)
        self._adjusting = 0  # > 0 while the view itself moves the scroll bar (it nests)
        self._rows = RowLayout()
        self._width = 0  # the viewport width the rows were placed at
        self._model = ChatModel(self)
        self._delegate = ChatDelegate(self, self._model)
        self.setModel(self._model)
        self.setItemDelegate(self._delegate)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.verticalScrollBar().setSingleStep(24)  # per-pixel scrolling's default step crawls
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setMouseTracking(True)  # a hand cursor over Copy buttons and links

        self._delegate.codeCopied.connect(self.codeCopied)
        self._delegate.linkActivated.connect(self.linkActivated)
        self._delegate.actionRequested.connect(self.actionRequested)
        self._delegate.rowsChanged.connect(self._on_rows_changed)
        self._model.modelReset.connect(self._on_reset)
        self._model.rowsRemoved.connect(self._on_rows_removed)
        self.verticalScrollBar().valueChanged.connect(self._on_scrolled)

    @property
    def chat_model(self) -> ChatModel:
        return self._model

    @property
    def chat_delegate(self) -> ChatDelegate:
        return self._delegate

    def is_at_bottom(self) -> bool:
        """Whether the view follows the end of the chat (where streamed text arrives)."""
        return self._at_bottom

    def scrollToBottom(self) -> None:
        """Show the end of the chat and follow it again, e.g. after the user sends a prompt."""
        self._at_bottom = True
        super().scrollToBottom()

    def context_menu_for(self, index: QModelIndex) -> QMenu:
        """The context menu for a message; the caller shows it (tests trigger its actions)."""
        menu = QMenu(self)
        message = self._model.message_at(index.row())
        menu.addAction("Copy message", lambda: self._copy_message(message.id))
        for action, label in message_actions(message):
            words = "Edit and send again" if action == "edit" else label
            menu.addAction(words, partial(self.actionRequested.emit, action, message.id))
        return menu

    def _copy_message(self, message_id: int) -> None:
        # Its text when the action is taken: a streaming answer may have grown since.
        row = self._model.row_of(message_id)
        if row is not None:
            QGuiApplication.clipboard().setText(self._model.message_at(row).content)
            self.messageCopied.emit(message_id)

    # -- where rows are (QAbstractItemView) ----------------------------------------------------

    def visualRect(self, index: ModelIndex) -> QRect:
        row = index.row() if index.isValid() else -1
        if not 0 <= row < len(self._rows):
            return QRect()
        top = self._rows.top(row) - self.verticalScrollBar().value()
        return QRect(0, top, self._width, self._rows.height(row))  # as placed, at this width

    def indexAt(self, point: QPoint) -> QModelIndex:
        row = self._rows.row_at(point.y() + self.verticalScrollBar().value())
        return self._model.index(row, 0) if row >= 0 else QModelIndex()

    def scrollTo(self, index: ModelIndex, hint: _Hint = _Hint.EnsureVisible) -> None:
        row = index.row() if index.isValid() else -1
        if not 0 <= row < len(self._rows):
            return
        top, height = self._rows.top(row), self._rows.height(row)
        value, page = self.verticalScrollBar().value(), self.viewport().height()
        if hint == _Hint.PositionAtTop or (hint == _Hint.EnsureVisible and top < value):
            value = top
        elif hint == _Hint.PositionAtBottom:
            value = top + height - page
        elif hint == _Hint.PositionAtCenter:
            value = top - (page - height) // 2
        elif top + height > value + page:  # below the screen: show its end, or its top at least
            value = min(top, top + height - page)
        self.verticalScrollBar().setValue(value)  # as a user's scroll: see _on_scrolled

    def moveCursor(self, action: _Cursor, modifiers: Qt.KeyboardModifier) -> QModelIndex:
        rows = len(self._rows)
        if rows == 0:
            return QModelIndex()
        current = self.currentIndex()
        if not current.isValid():  # the row at the top of the screen, as a start
            return self._model.index(max(self._rows.row_at(self.verticalOffset()), 0), 0)
        row, page = current.row(), self.viewport().height()
        if action in (_Cursor.MoveUp, _Cursor.MovePrevious):
            row -= 1
        elif action in (_Cursor.MoveDown, _Cursor.MoveNext):
            row += 1
        elif action == _Cursor.MoveHome:
            row = 0
        elif action == _Cursor.MoveEnd:
            row = rows - 1
        elif action == _Cursor.MovePageUp:
            row = self._rows.row_at(max(self._rows.top(row) - page, 0))
        elif action == _Cursor.MovePageDown:
            row = self._rows.row_at(min(self._rows.top(row) + page, self._rows.total - 1))
        return self._model.index(min(max(row, 0), rows - 1), 0)

    def horizontalOffset(self) -> int:
        return 0

    def verticalOffset(self) -> int:
        return self.verticalScrollBar().value()

    def isIndexHidden(self, index: ModelIndex) -> bool:
        return False

    def setSelection(self, rect: QRect, command: QItemSelectionModel.SelectionFlag) -> None:
        pass  # nothing is selected: text is copied with Copy buttons and the context menu

    def visualRegionForSelection(self, selection: Any) -> QRegion:
        return QRegion()

    # -- Qt overrides --------------------------------------------------------------------------

    def doItemsLayout(self) -> None:
        # Every row at the current width: heights cached per width, estimates for rows never
        # laid out at it. The rows then shown are measured exactly in updateGeometries().
        width = self._viewport_width()
        self._delegate.stats.layout_passes += 1
        self._rows.set_all(self._delegate.row_heights(width))
        if width != self._width:
            self._width = width
            self._delegate.restart_refinement()  # estimates at the old width say nothing here
        QAbstractItemView.doItemsLayout(self)  # updateGeometries() and a repaint

    def updateGeometries(self) -> None:
        # Runs after a layout pass and on every resize, once the rows are in their new places.
        QAbstractItemView.updateGeometries(self)
        self._place_and_repaint()

    def resizeEvent(self, event: QResizeEvent) -> None:
        QAbstractItemView.resizeEvent(self, event)
        if self._viewport_width() != self._width and len(self._rows) == self._model.rowCount():
            self.doItemsLayout()

    def paintEvent(self, event: QPaintEvent) -> None:
        if len(self._rows) != self._model.rowCount():
            return  # a reset not laid out yet
        exposed = event.rect()
        painter = QPainter(self.viewport())
        painter.setClipRect(exposed)  # the delegate draws only this much of a long answer
        option = QStyleOptionViewItem()
        self.initViewItemOption(option)
        value, width = self.verticalScrollBar().value(), self.viewport().width()
        for row in self._rows.rows_between(exposed.top() + value, exposed.bottom() + value):
            option.rect = QRect(0, self._rows.top(row) - value, width, self._rows.height(row))
            self._delegate.paint(painter, option, self._model.index(row, 0))
        painter.end()

    def scrollContentsBy(self, dx: int, dy: int) -> None:
        if not self._adjusting:  # the view's own moves repaint what they change themselves
            QAbstractItemView.scrollContentsBy(self, dx, dy)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        index = self.indexAt(event.pos())
        if index.isValid():
            menu = self.context_menu_for(index)
            menu.exec(event.globalPos())
            menu.deleteLater()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        super().mouseMoveEvent(event)
        pos = event.position().toPoint()
        index = self.indexAt(pos)
        if index.isValid() and self._delegate.clickable_at(index, pos):
            self.viewport().setCursor(Qt.CursorShape.PointingHandCursor)
        else:
            self.viewport().unsetCursor()

    def dataChanged(self, top_left: ModelIndex, bottom_right: ModelIndex, roles: Any = ()) -> None:
        # Only the changed row is measured, and only what changed in it repainted: for a
        # streamed chunk, the lines it went to (QAbstractItemView would repaint the whole row).
        if not self._laid_out():
            return
        for row in range(top_left.row(), bottom_right.row() + 1):
            height, changed_from = self._delegate.message_changed(row, self._width)
            self._relayout({row: height}, (row, changed_from))

    def rowsInserted(self, parent: ModelIndex, start: int, end: int) -> None:
        QAbstractItemView.rowsInserted(self, parent, start, end)
        if len(self._rows) + end - start + 1 != self._model.rowCount() or not self._width:
            return  # not laid out yet: the layout pass will place them
        heights = [self._delegate.row_height(row, self._width) for row in range(start, end + 1)]
        self._rows.insert(start, heights)
        self._place()
        self.viewport().update()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self._delegate.drop_documents()  # code shading is baked into the documents
            self.viewport().update()
        elif event.type() == QEvent.Type.FontChange:
            self._delegate.reset_caches()
            self.scheduleDelayedItemsLayout()
        super().changeEvent(event)

    # -- placing and scrolling -----------------------------------------------------------------

    def _relayout(self, heights: dict[int, int], strip: tuple[int, int] | None = None) -> None:
        """Give rows new heights (row: height), keep the screen where it was, and repaint only
        what moved or changed; `strip` is a row whose content changed from that far down it."""
        bar = self.verticalScrollBar()
        top_row = self._rows.row_at(bar.value())
        top_y = self._rows.top(top_row) - bar.value() if top_row >= 0 else 0
        changed = self._rows.set_heights(heights)
        if changed:
            changed += self._place()
            if top_row < 0:
                self.viewport().update()
                return
            # Rows above the screen moved nothing on it: the bottom or the row being read was
            # kept in place. What lies on screen above the first row that changed is the same,
            # only shifted when following the bottom: scroll those pixels, repaint the rest.
            moved = self._rows.top(top_row) - bar.value() - top_y
            if moved:
                self.viewport().scroll(0, moved)
            shown = [row for row in changed if row >= top_row]
            if shown:
                first = min(shown)
                offset = strip[1] if strip is not None and strip[0] == first else 0
                self._update_from(self._rows.top(first) + offset - bar.value())
        elif strip is not None:
            row, offset = strip
            top = self._rows.top(row) - bar.value()
            self.viewport().update(
                QRect(0, top + offset, self.viewport().width(), self._rows.height(row) - offset)
            )

    def _update_from(self, y: int) -> None:
        viewport = self.viewport()
        if y < viewport.height():
            viewport.update(QRect(0, max(y, 0), viewport.width(), viewport.height()))

    def _place(self) -> list[int]:
        """Fit the scroll bar to the rows; follow the bottom or keep the row being read in place;
        measure the rows then on screen exactly, and place again if that moved them (a few
        rounds at most). The rows the measuring gave new heights."""
        changed: list[int] = []
        for _ in range(4):
            self._scroll_into_place()
            if not self._laid_out():
                break  # a layout pass is due: it places every row anyway
            bar = self.verticalScrollBar()
            on_screen = self._rows.rows_between(bar.value(), bar.value() + bar.pageStep() - 1)
            self._delegate.set_focus_rows(on_screen)
            near = range(max(on_screen.start - self.FOCUS_ROWS, 0),
                         min(on_screen.stop + self.FOCUS_ROWS, len(self._rows)))
            measured = self._rows.set_heights(self._delegate.exact_heights(near, self._width))
            if not measured:
                break
            changed += measured
        return changed

    def _place_and_repaint(self) -> None:
        before = self.verticalScrollBar().value()
        if self._place() or self.verticalScrollBar().value() != before:
            self.viewport().update()  # not scrolled by Qt: see scrollContentsBy()

    def _scroll_into_place(self) -> None:
        bar = self.verticalScrollBar()
        page = self.viewport().height()
        # setRange() and setValue() emit valueChanged: the view's doing, not the user's.
        self._adjusting += 1
        try:
            bar.setPageStep(page)
            bar.setRange(0, max(0, self._rows.total - page))
            if self._at_bottom:
                bar.setValue(bar.maximum())
            elif self._anchor is not None:
                # Rows above changed height (measured): keep the row being read in place.
                message_id, top = self._anchor
                row = self._model.row_of(message_id)
                if row is not None and row < len(self._rows):
                    bar.setValue(self._rows.top(row) - top)
        finally:
            self._adjusting -= 1
        self._remember_anchor()

    def _on_scrolled(self, _value: int) -> None:
        if self._adjusting:
            return  # the view moved it, not the user
        bar = self.verticalScrollBar()
        # The current value, not the signal's: a nested scroll may already have replaced it.
        self._at_bottom = bar.value() >= bar.maximum() - self.BOTTOM_SLACK
        self._remember_anchor()
        self._place_and_repaint()  # rows that came on screen get their exact heights

    def _remember_anchor(self) -> None:
        value = self.verticalScrollBar().value()
        row = self._rows.row_at(value)
        self._anchor = None
        if row >= 0 and row < self._model.rowCount():
            self._anchor = (self._model.message_at(row).id, self._rows.top(row) - value)

    def _on_rows_changed(self, rows: list[int]) -> None:
        if not self._laid_out():
            return
        rows = [row for row in rows if row < len(self._rows)]
        self._relayout({row: self._delegate.row_height(row, self._width) for row in rows})
        for row in rows:  # their content may have changed too (Markdown now)
            rect = self.visualRect(self._model.index(row, 0))
            if rect.intersects(self.viewport().rect()):
                self.viewport().update(rect)

    def _on_rows_removed(self, _parent: QModelIndex, first: int, last: int) -> None:
        if len(self._rows) - (last - first + 1) == self._model.rowCount():
            self._rows.remove(first, last)
            self._place()
            self.viewport().update()

    def _on_reset(self) -> None:
        self._delegate.reset_caches()
        self._at_bottom = True
        self._anchor = None
        self._rows.set_all([])
        if self.isVisible():
            self.doItemsLayout()  # and no second pass: this one cancels the one reset() posted
        else:
            self.scheduleDelayedItemsLayout()

    def _laid_out(self) -> bool:
        """Whether the rows are placed for the model and the width as they are now."""
        return len(self._rows) == self._model.rowCount() and self._width == self._viewport_width()

    def _viewport_width(self) -> int:
        return max(self.viewport().width(), 1)
