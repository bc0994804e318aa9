"""Paints the chat transcript's messages as bubbles and keeps sizing cheap at thousands of rows.

Each message gets its own small QTextDocument, laid out only when it is painted or measured, with
its height cached per (message id, content version, width); rows off screen are sized by an
estimate that a background timer refines a few rows at a time. Streamed text is appended to the
message's document, never re-rendered whole (ARCHITECTURE rule 3); the answer is rendered as
Markdown once, when it ends.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, cast

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QPoint,
    QPointF,
    QRect,
    QRectF,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QColor,
    QFont,
    QFontMetrics,
    QFontMetricsF,
    QGuiApplication,
    QMouseEvent,
    QPainter,
    QPalette,
    QTextCursor,
)
from PySide6.QtWidgets import QListView, QStyledItemDelegate, QStyleOptionViewItem

from app.core.chat import footer
from app.core.history import Message
from app.ui.chat_markdown import CODE_HEADER_H, CODE_PAD, CodeBlock, SafeDocument, render
from app.ui.chat_model import ChatModel, ModelIndex

WAITING: Final = "Waiting for the node…"
STATUS_LABELS: Final[dict[str, str]] = {
    "interrupted": "Interrupted — the answer is incomplete",
    "error": "Failed — the answer is incomplete",
    "cancelled": "Cancelled — the answer is incomplete",
}


@dataclass(slots=True)
class _DocEntry:
    """A message's rendered document and where its last layout stands."""

    doc: SafeDocument
    version: int
    streaming: bool  # plain text that grows by appends
    source_len: int  # how much of the message's content the document holds
    code_blocks: list[CodeBlock]
    layout_key: tuple[int, int] | None = None  # (version, text width) of the last layout
    doc_h: int = 0
    ideal_w: int = 0


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


@dataclass(frozen=True, slots=True)
class _Bubble:
    """A message laid out in its row: its document and where each part goes on the viewport."""

    msg: Message
    entry: _DocEntry
    height: int  # the row's exact height
    frame: QRect
    content: QRect  # where the document is drawn
    status: QRect  # empty when the message has no status line


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    """`a` moved a fraction `t` towards `b`: tints that follow the palette, light or dark."""
    return QColor.fromRgbF(
        a.redF() + (b.redF() - a.redF()) * t,
        a.greenF() + (b.greenF() - a.greenF()) * t,
        a.blueF() + (b.blueF() - a.blueF()) * t,
        1.0,
    )


def _code_shade(palette: QPalette) -> QColor:
    # A shade towards the text colour rather than a fixed grey, so dark mode works.
    return _mix(palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text), 0.1)


class ChatDelegate(QStyledItemDelegate):
    """Paints a ChatView's messages as bubbles of rendered Markdown and keeps their layouts cheap.

    The user's messages are right-aligned and tinted with the palette's highlight; answers are
    left-aligned. A code block gets a monospace font, a shaded background and a Copy button;
    clicking a link only emits linkActivated, the delegate never opens anything.

    A row gets an exact layout when it is painted, when it is wanted exact (rows on screen, the
    last rows of the chat, a streaming answer), or a few rows at a time by a background timer;
    every other row is sized by an estimate. `layouts_done`, `full_renders` and `layout_passes`
    count document layouts, whole-document renders and the view's layout passes, for tests.

    Signals:
        codeCopied(str): the text of the code block whose Copy button was clicked.
        linkActivated(str): the URL of a link the user clicked in a message.
    """

    codeCopied = Signal(str)
    linkActivated = Signal(str)

    MARGIN_X: Final = 10  # between the viewport's edge and a bubble
    MARGIN_Y: Final = 4  # above and below each bubble
    PAD_X: Final = 12  # inside a bubble
    PAD_Y: Final = 8
    RADIUS: Final = 10
    USER_FRACTION: Final = 0.8  # the user's bubbles use at most this much of the width
    STATUS_GAP: Final = 6

    DOC_CACHE: Final = 300  # documents kept; only heights (ints) are kept for every row
    EXACT_ALL_ROWS: Final = 120  # a chat this short is always measured exactly
    EXACT_LAST_ROWS: Final = 30  # the end of a chat, where reading and streaming happen
    REFINE_INTERVAL_MS: Final = 15
    REFINE_BATCH: Final = 24  # rows measured per refine tick, at most ...
    REFINE_BUDGET_S: Final = 0.008  # ... or this much time, whichever comes first
    REFINE_RADIUS: Final = 250  # rows either side of the screen that get refined at all
    STREAM_RELAYOUT_MS: Final = 100  # a streaming answer resizes its row at most this often

    def __init__(self, view: QListView, model: ChatModel) -> None:
        super().__init__(view)
        self._view = view
        self._model = model
        self.layouts_done = 0
        self.full_renders = 0
        self.layout_passes = 0
        self.refine_delay_ms = 250  # let a drag-resize settle before refining in the background
        self._focus = range(0)  # rows on (or near) the screen, from the view
        self._in_layout = False
        self._pass_width = 0
        self._copied: tuple[int, int] | None = None  # (message id, code block) just copied
        self._refine_timer = self._timer(self._refine_tick)
        self._copied_timer = self._timer(self._clear_copied)
        self._copied_timer.setInterval(1500)
        # Any sizeHintChanged makes QListView re-lay out every row, so requests are coalesced.
        self._relayout_timer = self._timer(self._emit_relayout)
        self._relayout_row: int | None = None
        self._relayout_after = 0  # the layout pass count when it was asked for
        self._last_relayout = 0.0
        self.reset_caches()

    def _timer(self, slot: Callable[[], None]) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.timeout.connect(slot)
        return timer

    # -- for the view and tests ----------------------------------------------------------------

    def reset_caches(self) -> None:
        """Forget every document and height, e.g. after a model reset or a font change."""
        self._docs: OrderedDict[int, _DocEntry] = OrderedDict()  # message id -> document (LRU)
        self._sizes: dict[int, _Sizes] = {}  # message id -> its sizes
        # The sizes the rows were placed with in the view's last layout pass, by row, and the
        # rows whose size must be worked out again in the next pass.
        self._placed: list[QSize | None] = []
        self._stale: set[int] = set()
        self._pass_key = (-1, -1)  # (width, rows) of the last layout pass
        self._refine_rows: Iterator[int] | None = None
        self._relayout_row = None
        metrics = QFontMetricsF(self._view.font())
        self._char_w = max(metrics.averageCharWidth(), 1.0)
        self._line_h = max(metrics.lineSpacing(), 1.0)

    def drop_documents(self) -> None:
        """Forget rendered documents but keep heights: the palette (colours only) changed."""
        self._docs = OrderedDict((k, e) for k, e in self._docs.items() if e.streaming)

    def set_focus_rows(self, rows: range) -> None:
        """Tell the delegate which rows are on screen: measured exactly, and refined first."""
        if rows != self._focus:
            self._focus = rows
            self._stale.update(rows)  # so the next pass measures them instead of estimating
            self.restart_refinement()

    def restart_refinement(self) -> None:
        """Measure estimated rows again, from the screen outward, after refine_delay_ms."""
        self._refine_rows = None
        self._refine_timer.start(self.refine_delay_ms)

    @property
    def refining(self) -> bool:
        """Whether background refinement has rows left to measure (or is about to start)."""
        return self._refine_timer.isActive()

    def document(self, index: QModelIndex) -> SafeDocument:
        """The row's document, laid out at the view's current width (built if needed)."""
        return self._measure(index.row(), self._viewport_width())[0].doc

    def code_blocks(self, index: QModelIndex) -> list[str]:
        """The text of each code block of the row, as its Copy button copies it."""
        return [b.text for b in self._measure(index.row(), self._viewport_width())[0].code_blocks]

    def copy_button_rects(self, index: QModelIndex) -> list[QRect]:
        """Where the row's Copy buttons are, in viewport coordinates, one per code block."""
        rect = self._view.visualRect(index)
        return self._copy_rects(self._bubble(index.row(), rect)) if rect.isValid() else []

    def content_rect(self, index: QModelIndex) -> QRect:
        """Where the row's document is drawn, in viewport coordinates (empty if not laid out)."""
        rect = self._view.visualRect(index)
        return self._bubble(index.row(), rect).content if rect.isValid() else QRect()

    def exact_height(self, index: QModelIndex) -> int | None:
        """The row's height if it was laid out at the current width; None if only estimated."""
        return self._exact(index.row(), self._viewport_width())

    def status_text(self, message: Message) -> str:
        """The lines under an answer: how an interrupted, failed or cancelled one ended,
        and where it ran and what it took (its quiet footer); "" when there is neither."""
        written = message.content.partition("\n\n")[2] if message.kind == "step" \
            else message.content  # a step is shown under its title line
        if message.status == "streaming" and message.role == "assistant" \
                and not written.strip():
            return WAITING  # from the start, until the first words arrive
        label = STATUS_LABELS.get(message.status, "")
        if label and message.status == "error" and not message.content:
            label = "Failed — no answer"  # nothing is "incomplete" when nothing came
        lines = [label, message.error] if label and message.error else [label]
        if message.role == "assistant" and message.status != "streaming":
            lines.append(footer(message))
        return "\n".join(line for line in lines if line)

    def clickable_at(self, index: QModelIndex, pos: QPoint) -> bool:
        """Whether viewport position `pos` is over a Copy button or a link of row `index`."""
        rect = self._view.visualRect(index)
        return rect.isValid() and self._target_at(self._bubble(index.row(), rect), pos) is not None

    def message_changed(self, row: int) -> None:
        """The row's message changed (streamed text, finished): measure it, resize if needed.

        Only this row is laid out, and a streaming answer only from the text appended. The view
        re-lays out all its rows when told a size changed, so it is told only when the height
        really changed (during streaming: a new line, not every chunk).
        """
        height = self._measure(row, self._viewport_width())[1]
        self._stale.add(row)
        if self._placed_height(row) != height:
            self._request_relayout(row)

    def layout_pass(self, active: bool) -> None:
        """Called by the view around each of its layout passes (see ChatView.doItemsLayout).

        QListView also asks for sizes outside a layout pass (its visualRect() does, for every
        row it paints), so only sizes given during a pass are the ones the rows were placed with.
        """
        self._in_layout = active
        if not active:
            return
        self.layout_passes += 1
        width = self._pass_width = self._viewport_width()
        rows = self._model.rowCount()
        old_width, old_rows = self._pass_key
        if width != old_width:
            self.restart_refinement()
        if width == old_width and rows >= old_rows:
            # A ChatModel only grows at the end (anything else is a reset): rows keep their sizes.
            self._placed.extend([None] * (rows - old_rows))
        else:
            self._placed = [None] * rows
            self._stale = {row for row in self._stale if row < rows}
        self._pass_key = (width, rows)

    # -- sizing --------------------------------------------------------------------------------

    def sizeHint(self, option: QStyleOptionViewItem, index: ModelIndex) -> QSize:
        # QListView asks for every row on every layout pass, thousands of calls a pass, so
        # within a pass a row whose size is known costs a list lookup.
        row = index.row()
        placed = self._placed
        if self._in_layout and row < len(placed):
            size = placed[row]
            stale = row in self._stale  # its message or its place on screen changed
            if size is None or stale:
                size = placed[row] = self._size(row, self._pass_width, recheck=stale)
                self._stale.discard(row)
            return size
        size = self._size(row, self._viewport_width())
        if self._placed_height(row) != size.height():
            self._request_relayout(row)  # the row was placed with another size: stale layout
        return size

    def _size(self, row: int, width: int, *, recheck: bool = False) -> QSize:
        """The row's size: exact if known or wanted (see _wants_exact), else an estimate.

        With recheck, an estimate made earlier is not reused: the row may deserve an exact size
        now (it came on screen).
        """
        msg = self._model.shown_at(row)
        sizes = self._sizes_of(msg, self._model.version_at(row))
        height = sizes.exact.get(width)
        if height is None and not recheck:
            height = sizes.estimated.get(width)
        if height is None and self._wants_exact(row, msg):
            height = self._measure(row, width)[1]
        if height is None:
            height = self._estimate(msg, width)
            _keep(sizes.estimated, width, height)
        return QSize(width, height)

    def _sizes_of(self, msg: Message, version: int) -> _Sizes:
        sizes = self._sizes.get(msg.id)
        if sizes is None or sizes.version != version:
            sizes = self._sizes[msg.id] = _Sizes(version)
        return sizes

    def _placed_height(self, row: int) -> int | None:
        size = self._placed[row] if 0 <= row < len(self._placed) else None
        return None if size is None else size.height()

    def _wants_exact(self, row: int, msg: Message) -> bool:
        rows = self._model.rowCount()
        return (
            rows <= self.EXACT_ALL_ROWS
            or row >= rows - self.EXACT_LAST_ROWS
            or row in self._focus
            or msg.status == "streaming"
        )

    def _estimate(self, msg: Message, width: int) -> int:
        """A row's height from its character count, with no layout: chars / chars-per-line."""
        text_w = self._text_width(msg, width)
        per_line = max(8, int(text_w / self._char_w))
        lines = msg.content.count("\n") + 1 + len(msg.content) // per_line
        return self._row_height(math.ceil(lines * self._line_h), msg, text_w)

    def _exact(self, row: int, width: int) -> int | None:
        sizes = self._sizes.get(self._model.message_at(row).id)
        if sizes is None or sizes.version != self._model.version_at(row):
            return None
        return sizes.exact.get(width)

    def _measure(self, row: int, width: int, *, keep: bool = True) -> tuple[_DocEntry, int]:
        """The row's document laid out at `width`, and the row's exact height there."""
        msg, version = self._model.shown_at(row), self._model.version_at(row)
        entry = self._entry(msg, version, keep=keep)
        text_w = self._text_width(msg, width)
        exact = self._exact(row, width)
        if exact is not None and entry.layout_key == (version, text_w):
            return entry, exact
        if entry.doc.textWidth() != text_w:  # setting it, even unchanged, costs a re-layout
            entry.doc.setTextWidth(text_w)
        # size() runs the layout; after an append Qt re-lays out only the blocks that changed.
        entry.doc_h = math.ceil(entry.doc.size().height())
        entry.ideal_w = math.ceil(entry.doc.idealWidth())
        entry.layout_key = (version, text_w)
        self.layouts_done += 1
        height = self._row_height(entry.doc_h, msg, text_w)
        _keep(self._sizes_of(msg, version).exact, width, height)
        return entry, height

    def _row_height(self, doc_h: int, msg: Message, text_w: int) -> int:
        status_h = self._status_rect(msg, text_w).height()
        extra = self.STATUS_GAP + status_h if status_h else 0
        return 2 * self.MARGIN_Y + 2 * self.PAD_Y + max(doc_h, math.ceil(self._line_h)) + extra

    def _status_rect(self, msg: Message, text_w: int) -> QRect:
        """The size of the message's status lines wrapped to `text_w` (empty if none)."""
        text = self.status_text(msg)
        if not text:
            return QRect()
        metrics = QFontMetrics(self._status_font())
        bounds = QRect(0, 0, text_w, 100_000)
        return metrics.boundingRect(bounds, int(Qt.TextFlag.TextWordWrap), text)

    def _status_font(self) -> QFont:
        font = QFont(self._view.font())
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.9))
        return font

    def _text_width(self, msg: Message, width: int) -> int:
        available = max(width - 2 * self.MARGIN_X, 80)
        if msg.role == "user":
            available = int(available * self.USER_FRACTION)
        return max(available - 2 * self.PAD_X, 40)

    def _viewport_width(self) -> int:
        return max(self._view.viewport().width(), 1)

    def _request_relayout(self, row: int) -> None:
        self._stale.add(row)
        self._relayout_row = row
        self._relayout_after = self.layout_passes
        if self._relayout_timer.isActive():
            return
        delay = 0
        if self._model.message_at(row).status == "streaming":
            since_ms = (time.perf_counter() - self._last_relayout) * 1000
            delay = max(0, int(self.STREAM_RELAYOUT_MS - since_ms))
        self._relayout_timer.start(delay)

    def _emit_relayout(self) -> None:
        row, self._relayout_row = self._relayout_row, None
        if self.layout_passes != self._relayout_after:
            return  # the view laid out its rows since (a resize, say): the stale rows are done
        if row is None or row >= self._model.rowCount():
            return
        self._last_relayout = time.perf_counter()
        self.sizeHintChanged.emit(self._model.index(row, 0))

    # -- documents -----------------------------------------------------------------------------

    def _entry(self, msg: Message, version: int, *, keep: bool) -> _DocEntry:
        """The message's document, brought up to `version`.

        A streaming answer's document gets only the newly arrived text appended at its end, so a
        long answer costs per chunk what the chunk costs. Anything else is rendered whole, once
        per version. With keep=False a document built just to measure a row off screen is not
        cached, so background refinement cannot push the rows on screen out of the cache.
        """
        entry = self._docs.get(msg.id)
        streaming = msg.status == "streaming"
        if entry is not None and entry.version != version:
            if streaming and entry.streaming and entry.source_len <= len(msg.content):
                cursor = QTextCursor(entry.doc)
                cursor.movePosition(QTextCursor.MoveOperation.End)
                cursor.insertText(msg.content[entry.source_len :])
                entry.source_len = len(msg.content)
                entry.version = version
            else:
                entry = None
        if entry is not None:
            self._docs.move_to_end(msg.id)
            return entry
        # A user's prompt is shown as typed; an answer is Markdown once it is complete.
        doc, blocks = render(
            msg.content,
            markdown=msg.role != "user" and not streaming,
            font=self._view.font(),
            code_shade=_code_shade(self._view.palette()),
        )
        self.full_renders += 1
        entry = _DocEntry(doc, version, streaming, len(msg.content), blocks)
        if keep or streaming:
            self._docs[msg.id] = entry
            excess = len(self._docs) - self.DOC_CACHE
            for message_id in [k for k, e in self._docs.items() if not e.streaming][:excess]:
                del self._docs[message_id]
        return entry

    # -- background refinement -----------------------------------------------------------------

    def _rows_outward(self, rows: int) -> Iterator[int]:
        """Rows nearest the screen first, alternating below and above, within REFINE_RADIUS."""
        center = (self._focus.start + self._focus.stop) // 2 if self._focus else rows - 1
        yield center
        for d in range(1, self.REFINE_RADIUS + 1):
            yield from (row for row in (center + d, center - d) if 0 <= row < rows)

    def _refine_tick(self) -> None:
        """Measure a bounded batch of estimated rows; tell the view if any height changed."""
        if self._refine_rows is None:
            self._refine_rows = self._rows_outward(self._model.rowCount())
        width = self._viewport_width()
        deadline = time.perf_counter() + self.REFINE_BUDGET_S
        measured, changed = 0, None
        for row in self._refine_rows:
            if not 0 <= row < self._model.rowCount() or self._exact(row, width) is not None:
                continue
            if self._placed_height(row) != self._measure(row, width, keep=False)[1]:
                self._stale.add(row)
                changed = row
            measured += 1
            if measured >= self.REFINE_BATCH or time.perf_counter() > deadline:
                self._refine_timer.start(self.REFINE_INTERVAL_MS)
                break
        else:
            self._refine_rows = None
        if changed is not None:
            self._request_relayout(changed)

    # -- painting ------------------------------------------------------------------------------

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: ModelIndex) -> None:
        rect = QRect(option.rect)
        bubble = self._bubble(index.row(), rect)
        msg, content = bubble.msg, bubble.content
        if self._placed_height(index.row()) != bubble.height:
            # The view placed this row by an estimate; now that it is known, let it re-layout.
            self._request_relayout(index.row())
        palette: QPalette = option.palette
        painter.save()
        # A streaming answer may have outgrown its row until the view re-lays out: stay inside.
        painter.setClipRect(rect)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        base = palette.color(QPalette.ColorRole.Base)
        if msg.role == "user":
            painter.setBrush(_mix(base, palette.color(QPalette.ColorRole.Highlight), 0.22))
        elif msg.role == "system":
            painter.setBrush(palette.color(QPalette.ColorRole.Window))
        else:
            painter.setBrush(_mix(base, palette.color(QPalette.ColorRole.Text), 0.05))
        painter.drawRoundedRect(QRectF(bubble.frame), self.RADIUS, self.RADIUS)

        painter.save()
        painter.translate(content.topLeft())
        # Draw only what is on screen: a very long answer is mostly outside the viewport.
        visible = QRectF(self._view.viewport().rect()).translated(-QPointF(content.topLeft()))
        clip = QRectF(0, 0, content.width(), content.height()).intersected(visible)
        painter.setClipRect(clip, Qt.ClipOperation.IntersectClip)
        self._paint_code_frames(painter, bubble, palette)
        context = QAbstractTextDocumentLayout.PaintContext()
        text_palette = QPalette(palette)
        if msg.role == "system":
            muted = palette.color(QPalette.ColorRole.PlaceholderText)
            text_palette.setColor(QPalette.ColorRole.Text, muted)
        context.palette = text_palette
        context.clip = clip
        bubble.entry.doc.documentLayout().draw(painter, context)
        painter.restore()

        for k, button in enumerate(self._copy_rects(bubble)):
            self._paint_copy_button(painter, button, (msg.id, k) == self._copied, palette)
        if bubble.status.isValid():
            painter.setFont(self._status_font())
            painter.setPen(self._status_colour(msg.status, palette))
            flags = int(Qt.TextFlag.TextWordWrap) | int(Qt.AlignmentFlag.AlignLeft)
            painter.drawText(bubble.status, flags, self.status_text(msg))
        painter.restore()

    def _bubble(self, row: int, rect: QRect) -> _Bubble:
        """Row `row`, placed in `rect`, measured at the view's width."""
        entry, height = self._measure(row, self._viewport_width())
        msg = self._model.shown_at(row)
        text_w = self._text_width(msg, self._viewport_width())
        status = self._status_rect(msg, text_w)
        content_w = text_w if entry.code_blocks else min(text_w, max(entry.ideal_w, 1))
        if status.height():
            content_w = max(content_w, min(text_w, status.width() + 1))
        bubble_w = content_w + 2 * self.PAD_X
        if msg.role == "user":
            left = rect.right() + 1 - self.MARGIN_X - bubble_w
        elif msg.role == "system":
            left = rect.left() + (rect.width() - bubble_w) // 2
        else:
            left = rect.left() + self.MARGIN_X
        top = rect.top() + self.MARGIN_Y
        frame = QRect(left, top, bubble_w, height - 2 * self.MARGIN_Y)
        content = QRect(left + self.PAD_X, top + self.PAD_Y, content_w, entry.doc_h)
        if status.height():
            status_top = frame.bottom() + 1 - self.PAD_Y - status.height()
            status = QRect(content.left(), status_top, content_w, status.height())
        return _Bubble(msg, entry, height, frame, content, status)

    def _code_frame(self, entry: _DocEntry, block: CodeBlock, content_w: int) -> QRectF:
        """A code block's shaded area in document coordinates, its header strip included."""
        layout = entry.doc.documentLayout()
        first = layout.blockBoundingRect(entry.doc.findBlockByNumber(block.first))
        last = layout.blockBoundingRect(entry.doc.findBlockByNumber(block.last))
        top = first.top() - CODE_HEADER_H - CODE_PAD
        return QRectF(0, top, content_w, last.bottom() + CODE_PAD - top)

    def _paint_code_frames(self, painter: QPainter, bubble: _Bubble, palette: QPalette) -> None:
        # The block background Qt paints covers the code lines only; the header strip (with the
        # Copy button) and the padding below are painted here so the block reads as one box.
        painter.save()
        painter.setBrush(_code_shade(palette))
        for block in bubble.entry.code_blocks:
            frame = self._code_frame(bubble.entry, block, bubble.content.width())
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawRoundedRect(frame, 6, 6)
            if block.language:
                painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
                label = QRectF(frame.left() + CODE_PAD, frame.top(), 200, CODE_HEADER_H)
                painter.drawText(label, int(Qt.AlignmentFlag.AlignVCenter), block.language)
        painter.restore()

    def _copy_rects(self, bubble: _Bubble) -> list[QRect]:
        metrics = QFontMetrics(self._status_font())
        w = max(metrics.horizontalAdvance("Copied"), metrics.horizontalAdvance("Copy")) + 12
        rects = []
        for block in bubble.entry.code_blocks:
            frame = self._code_frame(bubble.entry, block, bubble.content.width())
            x = bubble.content.left() + int(frame.right()) - w - 3
            y = bubble.content.top() + int(frame.top()) + 3
            rects.append(QRect(x, y, w, CODE_HEADER_H - 6))
        return rects

    def _paint_copy_button(
        self, painter: QPainter, rect: QRect, copied: bool, palette: QPalette
    ) -> None:
        painter.save()
        painter.setPen(_mix(palette.color(QPalette.ColorRole.Base),
                            palette.color(QPalette.ColorRole.Text), 0.35))
        painter.setBrush(palette.color(QPalette.ColorRole.Button))
        painter.drawRoundedRect(QRectF(rect).adjusted(0.5, 0.5, -0.5, -0.5), 4, 4)
        painter.setFont(self._status_font())
        painter.setPen(palette.color(QPalette.ColorRole.ButtonText))
        painter.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), "Copied" if copied else "Copy")
        painter.restore()

    def _status_colour(self, status: str, palette: QPalette) -> QColor:
        if status not in ("error", "interrupted"):  # cancelled, or a complete answer's footer
            return palette.color(QPalette.ColorRole.PlaceholderText)
        dark = palette.color(QPalette.ColorRole.Base).lightness() < 128
        if status == "error":
            return QColor("#ff8a80") if dark else QColor("#b3261e")
        return QColor("#ffcc80") if dark else QColor("#9a5b00")  # interrupted: a warning

    # -- clicks --------------------------------------------------------------------------------

    def editorEvent(
        self, event: QEvent, model: Any, option: QStyleOptionViewItem, index: ModelIndex
    ) -> bool:
        mouse = cast(QMouseEvent, event)
        if (
            event.type() in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease)
            and mouse.button() == Qt.MouseButton.LeftButton
        ):
            bubble = self._bubble(index.row(), QRect(option.rect))
            target = self._target_at(bubble, mouse.position().toPoint())
            if target is None and bubble.msg.kind == "step" \
                    and bubble.frame.contains(mouse.position().toPoint()):
                if event.type() == QEvent.Type.MouseButtonRelease:
                    self._model.toggle(bubble.msg.id)  # a step opens and closes on a click
                return True
            # The press too is taken, so that the view starts no drag or selection.
            if target is not None and event.type() == QEvent.Type.MouseButtonRelease:
                if isinstance(target, int):
                    self._copy_code(bubble.msg.id, target, bubble.entry.code_blocks[target].text)
                else:
                    self.linkActivated.emit(target)
            if target is not None:
                return True
        return super().editorEvent(event, model, option, index)

    def _target_at(self, bubble: _Bubble, pos: QPoint) -> int | str | None:
        """The Copy button (its code block's number) or the link URL at `pos`, or None."""
        for k, button in enumerate(self._copy_rects(bubble)):
            if button.contains(pos):
                return k
        if not bubble.content.contains(pos):
            return None
        point = QPointF(pos - bubble.content.topLeft())
        return bubble.entry.doc.documentLayout().anchorAt(point) or None

    def _copy_code(self, message_id: int, block: int, text: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self._copied = (message_id, block)
        self._copied_timer.start()
        self._view.viewport().update()
        self.codeCopied.emit(text)

    def _clear_copied(self) -> None:
        self._copied = None
        self._view.viewport().update()
