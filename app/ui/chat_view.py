"""The chat transcript: a list view that paints each message of one chat as a bubble of Markdown.

It stays smooth at thousands of messages: each message gets its own small QTextDocument, laid
out only when it is painted or measured, with its height cached per (message id, content
version, width); rows off screen are sized by a cheap estimate that a background timer refines a
few rows at a time. Streamed text is appended to the message's document, never re-rendered whole
(ARCHITECTURE rule 3); the answer is rendered as Markdown once, when it ends.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Final, cast

from PySide6.QtCore import (
    QAbstractListModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRect,
    QRectF,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QColor,
    QContextMenuEvent,
    QFont,
    QFontDatabase,
    QFontMetrics,
    QFontMetricsF,
    QGuiApplication,
    QMouseEvent,
    QPainter,
    QPalette,
    QTextBlock,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
    QTextOption,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QMenu,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from app.core.history import Message, Status

_ModelIndex = QModelIndex | QPersistentModelIndex

MESSAGE_ROLE: Final = int(Qt.ItemDataRole.UserRole) + 1
"""Item data role that returns the row's `Message`."""
VERSION_ROLE: Final = int(Qt.ItemDataRole.UserRole) + 2
"""Item data role that returns the row's content version (an int, new on every change)."""

# One counter for the whole process, so that a (message id, version) pair names one content even
# across set_messages() resets and across several models sharing a delegate's caches.
_versions: Iterator[int] = itertools.count(1)

# Markdown as GitHub writes it, but raw HTML shown as text: answers that talk about "<div>" must
# not lose it, and an <img> tag must not become a request to somebody's server.
_MARKDOWN_FEATURES: Final = QTextDocument.MarkdownFeature(
    QTextDocument.MarkdownFeature.MarkdownDialectGitHub.value
    | QTextDocument.MarkdownFeature.MarkdownNoHTML.value
)

STATUS_LABELS: Final[dict[str, str]] = {
    "interrupted": "Interrupted — the answer is incomplete",
    "error": "Failed — the answer is incomplete",
    "cancelled": "Cancelled — the answer is incomplete",
}


class ChatModel(QAbstractListModel):
    """The messages of one chat, oldest first.

    A streamed answer grows through append_text(), which changes that one row only. Every change
    gives the row a new content version (VERSION_ROLE), unique for the life of the process, which
    the delegate uses to key its caches.

    Signals:
        None of its own. append_message() emits rowsInserted; set_messages() and clear() emit
        modelReset; append_text() and finish_message() emit dataChanged for the one row changed.
    """

    MessageRole: Final = MESSAGE_ROLE
    VersionRole: Final = VERSION_ROLE

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._messages: list[Message] = []
        self._versions: list[int] = []
        self._rows: dict[int, int] = {}  # message id -> row

    # -- reading -------------------------------------------------------------------------------

    def rowCount(self, parent: _ModelIndex = QModelIndex()) -> int:  # noqa: B008 (Qt signature)
        return 0 if parent.isValid() else len(self._messages)

    def data(self, index: _ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._messages):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self._messages[index.row()].content
        if role == MESSAGE_ROLE:
            return self._messages[index.row()]
        if role == VERSION_ROLE:
            return self._versions[index.row()]
        return None

    def flags(self, index: _ModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemNeverHasChildren

    def message_at(self, row: int) -> Message:
        """The message in `row`; IndexError if there is none (negative rows included)."""
        if not 0 <= row < len(self._messages):
            raise IndexError(f"no message in row {row}")
        return self._messages[row]

    def version_at(self, row: int) -> int:
        """The content version of `row`: it changes whenever that message changes."""
        return self._versions[row]

    def row_of(self, message_id: int) -> int | None:
        """The row that shows the message with this id, or None."""
        return self._rows.get(message_id)

    def messages(self) -> list[Message]:
        """All messages, oldest first (a copy)."""
        return list(self._messages)

    # -- changing ------------------------------------------------------------------------------

    def set_messages(self, messages: list[Message]) -> None:
        """Show these messages instead of the current ones (a model reset)."""
        rows = {m.id: row for row, m in enumerate(messages)}
        if len(rows) != len(messages):
            raise ValueError("message ids must be unique within a chat")
        self.beginResetModel()
        self._messages = list(messages)
        self._versions = [next(_versions) for _ in messages]
        self._rows = rows
        self.endResetModel()

    def append_message(self, message: Message) -> None:
        """Add a message at the end, e.g. the user's prompt or an answer that starts streaming."""
        if message.id in self._rows:
            raise ValueError(f"message {message.id} is already in this chat")
        row = len(self._messages)
        self.beginInsertRows(QModelIndex(), row, row)
        self._messages.append(message)
        self._versions.append(next(_versions))
        self._rows[message.id] = row
        self.endInsertRows()

    def append_text(self, message_id: int, text: str) -> None:
        """Append streamed text to a message; KeyError if this chat has no such message."""
        if not text:
            return
        row = self._row_or_raise(message_id)
        old = self._messages[row]
        self._set_row(row, replace(old, content=old.content + text))

    def finish_message(
        self,
        message_id: int,
        *,
        content: str | None = None,
        status: Status,
        error: str = "",
    ) -> None:
        """End a streamed message with its final status (and final text, if the caller has it)."""
        row = self._row_or_raise(message_id)
        old = self._messages[row]
        new_content = old.content if content is None else content
        self._set_row(row, replace(old, content=new_content, status=status, error=error))

    def clear(self) -> None:
        """Show no messages."""
        self.set_messages([])

    def _row_or_raise(self, message_id: int) -> int:
        row = self._rows.get(message_id)
        if row is None:
            raise KeyError(f"message {message_id} is not in this chat")
        return row

    def _set_row(self, row: int, message: Message) -> None:
        self._messages[row] = message
        self._versions[row] = next(_versions)
        index = self.index(row, 0)
        roles = [int(Qt.ItemDataRole.DisplayRole), MESSAGE_ROLE, VERSION_ROLE]
        self.dataChanged.emit(index, index, roles)


class _SafeDocument(QTextDocument):
    """A QTextDocument that never loads a resource.

    Answers come from a model and may carry image links; fetching them would tell a third party
    that (and when) somebody read the answer, and a local path would show a file in the chat.
    Qt asks loadResource() for every image while laying out, so refusing here covers all paths.
    """

    blocked: set[str]  # the URLs refused (Qt asks again on every layout); tests read it

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.blocked = set()

    def loadResource(self, type: int, name: QUrl | str) -> Any:  # noqa: A002 (Qt's name)
        self.blocked.add(QUrl(name).toString())
        return None


@dataclass(slots=True)
class _CodeGroup:
    """One fenced or indented code block: its first and last QTextBlock and its text."""

    first: int  # block numbers in the document
    last: int
    text: str
    language: str


@dataclass(slots=True)
class _DocEntry:
    """A message's rendered document and where its last layout stands."""

    doc: _SafeDocument
    version: int
    markdown: bool  # False: plain text (a user's words, or an answer still streaming)
    streaming: bool
    source_len: int  # how much of the message's content the document holds
    code_groups: list[_CodeGroup] = field(default_factory=list)
    layout_key: tuple[int, int] | None = None  # (version, text width) of the last layout
    doc_h: int = 0
    ideal_w: int = 0


@dataclass(frozen=True, slots=True)
class _Measured:
    """A row's exact geometry at one viewport width."""

    height: int
    content_w: int
    doc_h: int
    status_h: int


@dataclass(slots=True)
class _Heights:
    version: int
    by_width: dict[int, _Measured]


@dataclass(frozen=True, slots=True)
class _Hint:
    """The size hint last computed for a row, and whether it was exact or an estimate."""

    version: int
    width: int
    size: QSize
    exact: bool


@dataclass(frozen=True, slots=True)
class _Geometry:
    bubble: QRect
    content: QRect  # where the document is drawn, in viewport coordinates
    status: QRect  # empty when the message has no status line


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    """`a` moved a fraction `t` towards `b`: tints that follow the palette, light or dark."""
    return QColor.fromRgbF(
        a.redF() + (b.redF() - a.redF()) * t,
        a.greenF() + (b.greenF() - a.greenF()) * t,
        a.blueF() + (b.blueF() - a.blueF()) * t,
        1.0,
    )


def _is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Base).lightness() < 128


_FENCE_OPEN = re.compile(
    r"^(?P<lead>[ \t>]*(?:(?:[-*+]|\d{1,9}[.)])[ \t]+)?)(?P<fence>`{3,}|~{3,})(?P<info>.*)$"
)
_FENCE_CLOSE = re.compile(r"^[ \t>]*(?P<fence>`{3,}|~{3,})[ \t]*$")


def _fenced_blocks(source: str) -> list[list[str]]:
    """The content lines of each fenced code block in Markdown `source`, in order.

    Qt's importer turns two fenced blocks with nothing between them into one run of code lines
    (its own toMarkdown() merges them too), so the line counts found here tell the delegate where
    one block ends and the next begins. It also keeps tabs, which the importer expands to spaces.
    """
    blocks: list[list[str]] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if not m or (m["fence"][0] == "`" and "`" in m["info"]):
            i += 1
            continue
        fence, lead = m["fence"], m["lead"]
        # CommonMark takes the opening fence's indentation off every content line.
        strip = len(lead) if lead.strip() == "" else 0
        content: list[str] = []
        i += 1
        while i < len(lines):
            c = _FENCE_CLOSE.match(lines[i])
            if c and c["fence"][0] == fence[0] and len(c["fence"]) >= len(fence):
                break
            line = lines[i]
            n = len(line) - len(line.lstrip(" "))
            content.append(line[min(n, strip) :])
            i += 1
        blocks.append(content)
        i += 1
    return blocks


def _plain(index: _ModelIndex) -> QModelIndex:
    """A QModelIndex for `index`, which may be a persistent one."""
    if isinstance(index, QModelIndex):
        return index
    model = index.model()
    return model.index(index.row(), index.column()) if model is not None else QModelIndex()


def _block_at(doc: QTextDocument, number: int) -> QTextBlock:
    return doc.findBlockByNumber(number)


class ChatDelegate(QStyledItemDelegate):
    """Paints messages as bubbles of rendered Markdown and keeps their layouts cheap.

    The user's messages are right-aligned and tinted with the palette's highlight; answers are
    left-aligned. A fenced code block gets a monospace font, a shaded background and a Copy
    button; clicking a link only emits linkActivated, the delegate never opens anything.

    Layout cost is bounded: a row gets an exact layout when it is painted, when the view asks
    for it (rows on screen, the last rows of the chat, a streaming answer), or a few rows at a
    time by a background timer; every other row is sized by an estimate. `layouts_done` and
    `full_renders` count document layouts and whole-document renders, so tests can prove it.

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
    CODE_HEADER_H: Final = 24  # the strip above a code block that holds its Copy button
    CODE_PAD: Final = 6

    DOC_CACHE: Final = 300  # documents kept; only heights (ints) are kept for every row
    EXACT_ALL_ROWS: Final = 120  # a chat this short is always measured exactly
    EXACT_LAST_ROWS: Final = 30  # the end of a chat, where reading and streaming happen
    REFINE_INTERVAL_MS: Final = 15
    REFINE_BATCH: Final = 24  # rows measured per refine tick, at most ...
    REFINE_BUDGET_S: Final = 0.008  # ... or this much time, whichever comes first
    REFINE_RADIUS: Final = 250  # rows either side of the screen that get refined at all
    STREAM_RELAYOUT_MS: Final = 100  # a streaming answer resizes its row at most this often

    def __init__(self, view: QAbstractItemView) -> None:
        super().__init__(view)
        self._view = view
        self.layouts_done = 0
        self.full_renders = 0
        self.refine_delay_ms = 250  # let a drag-resize settle before refining in the background
        self._docs: OrderedDict[int, _DocEntry] = OrderedDict()  # message id -> document (LRU)
        self._heights: dict[int, _Heights] = {}  # message id -> exact heights by width
        # message id -> its last size hints, one per width, for the last few widths: resizing
        # goes back and forth between two or three.
        self._hints: dict[int, list[_Hint]] = {}
        # The sizes the rows were placed with in the view's last layout pass, by row, and the
        # rows whose size must be worked out again in the next pass.
        self._placed: list[QSize | None] = []
        self._stale: set[int] = set()
        self._pass_key = (-1, -1)  # (width, rows) of the last layout pass
        self._pass_width = 0
        self._tracking = False
        self._in_layout = False
        self._focus = range(0)  # rows on (or near) the screen, from the view
        self._last_width = -1
        self._metrics_font: QFont | None = None
        self._char_w = 7.0
        self._line_h = 16.0
        self._copied: tuple[int, int] | None = None  # (message id, code group) just copied
        self._refine_rows: Iterator[int] | None = None
        self._refine_timer = QTimer(self)
        self._refine_timer.setSingleShot(True)
        self._refine_timer.timeout.connect(self._refine_tick)
        self._copied_timer = QTimer(self)
        self._copied_timer.setSingleShot(True)
        self._copied_timer.setInterval(1500)
        self._copied_timer.timeout.connect(self._clear_copied)
        # Any sizeHintChanged makes QListView re-lay out every row, so they are coalesced.
        self._relayout_index: QPersistentModelIndex | None = None
        self._relayout_after = 0  # the layout pass count when it was asked for
        self._passes = 0
        self._relayout_timer = QTimer(self)
        self._relayout_timer.setSingleShot(True)
        self._relayout_timer.timeout.connect(self._emit_relayout)
        self._last_relayout = 0.0

    # -- public helpers ------------------------------------------------------------------------

    def reset_caches(self) -> None:
        """Forget every document and height, e.g. after a model reset or a font change."""
        self._docs.clear()
        self._heights.clear()
        self._hints.clear()
        self._placed = []
        self._stale.clear()
        self._pass_key = (-1, -1)
        self._refine_rows = None
        self._metrics_font = None

    def drop_documents(self) -> None:
        """Forget rendered documents but keep heights: the palette (colours only) changed."""
        self._docs = OrderedDict((k, e) for k, e in self._docs.items() if e.streaming)

    def set_focus_rows(self, rows: range) -> None:
        """Tell the delegate which rows are on screen: measured exactly, and refined first."""
        if rows != self._focus:
            self._focus = rows
            self._stale.update(rows)  # so the next pass measures them instead of estimating
            self._schedule_refine()

    def restart_refinement(self) -> None:
        """Measure estimated rows again, from the screen outward, after refine_delay_ms."""
        self._schedule_refine()

    @property
    def refining(self) -> bool:
        """Whether background refinement has rows left to measure (or is about to start)."""
        return self._refine_timer.isActive()

    def document(self, index: _ModelIndex) -> QTextDocument:
        """The row's document, laid out at the view's current width (built if needed)."""
        msg, version = self._message(index)
        entry = self._entry(msg, version, keep=True)
        self._layout(entry, self._text_width(msg, self._viewport_width()), version)
        return entry.doc

    def code_blocks(self, index: _ModelIndex) -> list[str]:
        """The text of each code block of the row, as its Copy button copies it."""
        msg, version = self._message(index)
        return [g.text for g in self._entry(msg, version, keep=True).code_groups]

    def copy_button_rects(self, index: _ModelIndex) -> list[QRect]:
        """Where the row's Copy buttons are, in viewport coordinates, one per code block."""
        rect = self._view.visualRect(_plain(index))
        if not rect.isValid():
            return []
        msg, version = self._message(index)
        entry = self._entry(msg, version, keep=True)
        measured = self._measure_with(entry, msg, version, self._viewport_width())
        return self._copy_rects(entry, self._geometry(rect, msg, measured))

    def content_rect(self, index: _ModelIndex) -> QRect:
        """Where the row's document is drawn, in viewport coordinates (empty if not laid out)."""
        rect = self._view.visualRect(_plain(index))
        if not rect.isValid():
            return QRect()
        msg, version = self._message(index)
        entry = self._entry(msg, version, keep=True)
        measured = self._measure_with(entry, msg, version, self._viewport_width())
        return self._geometry(rect, msg, measured).content

    @property
    def layout_passes(self) -> int:
        """How many times the view laid out all its rows (each costs a sizeHint() per row)."""
        return self._passes

    def exact_height(self, index: _ModelIndex) -> int | None:
        """The row's height if it was laid out at the current width; None if only estimated."""
        msg, version = self._message(index)
        exact = self._exact(msg.id, version, self._viewport_width())
        return None if exact is None else exact.height

    def status_text(self, message: Message) -> str:
        """The line under an interrupted, failed or cancelled message ("" for the others)."""
        label = STATUS_LABELS.get(message.status, "")
        if label and message.error:
            return f"{label}\n{message.error}"
        return label

    def hit_test(self, index: _ModelIndex, pos: QPoint) -> str:
        """What viewport position `pos` is over in row `index`: "copy", "link" or "".

        For the mouse cursor, so it builds and lays out nothing.
        """
        msg, version = self._message(index)
        entry = self._docs.get(msg.id)
        rect = self._view.visualRect(_plain(index))
        if entry is None or entry.version != version or not rect.isValid():
            return ""
        exact = self._exact(msg.id, version, self._viewport_width())
        if exact is None:
            return ""
        geo = self._geometry(rect, msg, exact)
        if any(r.contains(pos) for r in self._copy_rects(entry, geo)):
            return "copy"
        return "link" if self._anchor_at(entry, geo, pos) else ""

    # -- sizing --------------------------------------------------------------------------------

    def layout_pass(self, active: bool) -> None:
        """Called by the view around each of its layout passes (see ChatView.doItemsLayout).

        QListView also asks for sizes outside a layout pass (its visualRect() does, for every
        row it paints), so only sizes given during a pass are the ones the rows were placed
        with. A delegate whose view never calls this treats every sizeHint() as such a size.
        """
        self._tracking = True
        self._in_layout = active
        if not active:
            return
        self._passes += 1
        width = self._pass_width = self._viewport_width()
        if width != self._last_width:
            self._last_width = width
            self._schedule_refine()
        model = self._view.model()
        rows = model.rowCount() if model is not None else 0
        if (width, rows) == self._pass_key:
            return
        if width == self._pass_key[0] and rows > self._pass_key[1] and isinstance(model, ChatModel):
            # A ChatModel only grows at the end (anything else is a reset): rows keep their sizes.
            self._placed.extend([None] * (rows - self._pass_key[1]))
        else:
            self._placed = [None] * rows
            self._stale = {row for row in self._stale if row < rows}
        self._pass_key = (width, rows)

    def sizeHint(self, option: QStyleOptionViewItem, index: _ModelIndex) -> QSize:
        # QListView asks for every row on every layout pass, thousands of calls a pass, so
        # within a pass a row whose size is known costs a list lookup.
        row = index.row()
        if self._in_layout:
            placed = self._placed
            if row < len(placed):
                size = placed[row]
                stale = self._stale  # rows whose message or place on screen changed
                if size is not None and row not in stale:
                    return size
                msg, version, rows = self._row(index)
                size = self._hint(row, rows, msg, version, self._pass_width, recheck=row in stale)
                placed[row] = size
                stale.discard(row)
                return size
        msg, version, rows = self._row(index)
        size = self._hint(row, rows, msg, version, self._viewport_width())
        if self._tracking and self._placed_height(row) != size.height():
            # Asked outside a pass (visualRect() does that) for a size the row was not placed
            # with: the layout is stale.
            self._request_relayout(index, msg, row)
        return size

    def _placed_height(self, row: int) -> int | None:
        placed = self._placed
        size = placed[row] if 0 <= row < len(placed) else None
        return None if size is None else size.height()

    def _hint(
        self, row: int, rows: int, msg: Message, version: int, width: int, *, recheck: bool = False
    ) -> QSize:
        """The row's size at `width`: exact if known or wanted (see _wants_exact), else estimated.

        With recheck, an estimate made earlier is not reused: the row may deserve an exact size
        now (it came on screen).
        """
        for hint in self._hints.get(msg.id, ()):
            if hint.width == width:
                if hint.version == version and (hint.exact or not recheck):
                    return hint.size
                break
        if width != self._last_width and not self._in_layout:
            self._last_width = width
            self._schedule_refine()
        exact = self._exact(msg.id, version, width)
        if exact is None and self._wants_exact(row, rows, msg):
            entry = self._entry(msg, version, keep=True)
            exact = self._measure_with(entry, msg, version, width)
        if exact is not None:
            return QSize(width, exact.height)  # _measure_with() stored it as the hint
        size = QSize(width, self._estimate(msg, width))
        self._store_hint(msg.id, _Hint(version, width, size, False))
        return size

    def _store_hint(self, message_id: int, hint: _Hint) -> None:
        hints = self._hints.setdefault(message_id, [])
        for k, old in enumerate(hints):
            if old.width == hint.width:
                hints[k] = hint
                return
        hints.append(hint)
        if len(hints) > 3:
            del hints[0]

    def message_changed(self, index: _ModelIndex) -> None:
        """The row's message changed (streamed text, finished): measure it, resize if needed.

        Only this row is laid out, and a streaming answer only from the text appended. The view
        re-lays out all its rows when told a size changed, so it is told only when the height
        really changed (during streaming: a new line, not every chunk), and for a streaming
        answer at most every STREAM_RELAYOUT_MS; until then the bubble grows within its row.
        """
        msg, version = self._message(index)
        width = self._viewport_width()
        entry = self._entry(msg, version, keep=True)
        measured = self._measure_with(entry, msg, version, width)
        self._stale.add(index.row())
        if self._placed_height(index.row()) != measured.height:
            self._request_relayout(index, msg, index.row())

    def _request_relayout(self, index: _ModelIndex, msg: Message, row: int) -> None:
        self._stale.add(row)
        self._relayout_index = QPersistentModelIndex(index)
        self._relayout_after = self._passes
        if self._relayout_timer.isActive():
            return
        delay = 0
        if msg.status == "streaming":
            since_ms = (time.perf_counter() - self._last_relayout) * 1000
            delay = max(0, int(self.STREAM_RELAYOUT_MS - since_ms))
        self._relayout_timer.start(delay)

    def _emit_relayout(self) -> None:
        index, self._relayout_index = self._relayout_index, None
        if self._tracking and self._passes != self._relayout_after:
            return  # the view laid out its rows since (a resize, say): the stale rows are done
        if index is not None and index.isValid():
            self._last_relayout = time.perf_counter()
            self.sizeHintChanged.emit(_plain(index))

    def _wants_exact(self, row: int, rows: int, msg: Message) -> bool:
        return (
            rows <= self.EXACT_ALL_ROWS
            or row >= rows - self.EXACT_LAST_ROWS
            or row in self._focus
            or msg.status == "streaming"
        )

    def _estimate(self, msg: Message, width: int) -> int:
        """A row's height from its character count, with no layout: chars / chars-per-line."""
        self._ensure_metrics()
        text_w = self._text_width(msg, width)
        per_line = max(8, int(text_w / self._char_w))
        content = msg.content
        lines = content.count("\n") + 1 + len(content) // per_line
        doc_h = math.ceil(lines * self._line_h)
        return self._row_height(doc_h, self._status_height(msg, text_w))

    def _measure_with(self, entry: _DocEntry, msg: Message, version: int, width: int) -> _Measured:
        """The row's exact geometry at `width`, laying its document out if not cached."""
        text_w = self._text_width(msg, width)
        exact = self._exact(msg.id, version, width)
        if exact is not None and entry.layout_key == (version, text_w):
            return exact
        self._layout(entry, text_w, version)
        status_h = self._status_height(msg, text_w)
        content_w = text_w if entry.code_groups else min(text_w, max(entry.ideal_w, 1))
        if status_h:
            status_w = self._status_rect_width(msg, text_w)
            content_w = max(content_w, status_w)
        height = self._row_height(entry.doc_h, status_h)
        measured = _Measured(height, content_w, entry.doc_h, status_h)
        heights = self._heights.get(msg.id)
        if heights is None or heights.version != version:
            heights = self._heights[msg.id] = _Heights(version, {})
        if len(heights.by_width) >= 4:  # two or three widths are what resizing goes between
            heights.by_width.pop(next(iter(heights.by_width)))
        heights.by_width[width] = measured
        self._store_hint(msg.id, _Hint(version, width, QSize(width, height), True))
        return measured

    def _exact(self, message_id: int, version: int, width: int) -> _Measured | None:
        heights = self._heights.get(message_id)
        if heights is None or heights.version != version:
            return None
        return heights.by_width.get(width)

    def _row_height(self, doc_h: int, status_h: int) -> int:
        extra = self.STATUS_GAP + status_h if status_h else 0
        return 2 * self.MARGIN_Y + 2 * self.PAD_Y + max(doc_h, math.ceil(self._line_h)) + extra

    def _status_height(self, msg: Message, text_w: int) -> int:
        text = self.status_text(msg)
        if not text:
            return 0
        metrics = QFontMetrics(self._status_font())
        flags = int(Qt.TextFlag.TextWordWrap)
        return metrics.boundingRect(QRect(0, 0, text_w, 100_000), flags, text).height()

    def _status_rect_width(self, msg: Message, text_w: int) -> int:
        metrics = QFontMetrics(self._status_font())
        flags = int(Qt.TextFlag.TextWordWrap)
        rect = metrics.boundingRect(QRect(0, 0, text_w, 100_000), flags, self.status_text(msg))
        return min(text_w, rect.width() + 1)

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

    def _ensure_metrics(self) -> None:
        font = self._view.font()
        if self._metrics_font is None or self._metrics_font != font:
            metrics = QFontMetricsF(font)
            self._metrics_font = QFont(font)
            self._char_w = max(metrics.averageCharWidth(), 1.0)
            self._line_h = max(metrics.lineSpacing(), 1.0)

    # -- documents -----------------------------------------------------------------------------

    def _message(self, index: _ModelIndex) -> tuple[Message, int]:
        msg, version, _rows = self._row(index)
        return msg, version

    def _row(self, index: _ModelIndex) -> tuple[Message, int, int]:
        """The row's message, its version and the model's row count."""
        model = index.model()
        if isinstance(model, ChatModel):  # straight to Python: sizeHint runs once per row
            row = index.row()
            return model._messages[row], model._versions[row], len(model._messages)
        return (
            cast(Message, index.data(MESSAGE_ROLE)),
            cast(int, index.data(VERSION_ROLE)),
            model.rowCount(),
        )

    def _entry(self, msg: Message, version: int, *, keep: bool) -> _DocEntry:
        """The message's document, brought up to `version`.

        A streaming answer's document gets only the newly arrived text appended at its end, so a
        long answer costs per chunk what the chunk costs. Anything else is rendered whole, once
        per version. With keep=False a document built just to measure a row off screen is not
        cached, so background refinement cannot push the rows on screen out of the cache.
        """
        entry = self._docs.get(msg.id)
        streaming = msg.status == "streaming"
        if entry is not None:
            if entry.version == version:
                self._docs.move_to_end(msg.id)
                return entry
            if streaming and entry.streaming and entry.source_len <= len(msg.content):
                new_text = msg.content[entry.source_len :]
                if new_text:
                    cursor = QTextCursor(entry.doc)
                    cursor.movePosition(QTextCursor.MoveOperation.End)
                    cursor.insertText(new_text)
                entry.source_len = len(msg.content)
                entry.version = version
                self._docs.move_to_end(msg.id)
                return entry
        entry = self._render(msg, version)
        if keep or streaming:
            self._docs[msg.id] = entry
            self._docs.move_to_end(msg.id)
            self._evict()
        return entry

    def _render(self, msg: Message, version: int) -> _DocEntry:
        doc = _SafeDocument()  # no parent: an evicted document is freed with its last reference
        doc.setUndoRedoEnabled(False)  # appends would otherwise pile up an undo history
        doc.setDocumentMargin(0)  # the bubble has its own padding
        doc.setDefaultFont(self._view.font())
        option = QTextOption()
        # Long URLs and code lines wrap instead of running out of the bubble.
        option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        doc.setDefaultTextOption(option)
        streaming = msg.status == "streaming"
        # A user's prompt is shown as typed; an answer is Markdown once it is complete.
        markdown = msg.role != "user" and not streaming
        groups: list[_CodeGroup] = []
        if markdown:
            doc.setMarkdown(msg.content, _MARKDOWN_FEATURES)
            groups = self._style_code(doc, msg.content)
        else:
            doc.setPlainText(msg.content)
        self.full_renders += 1
        return _DocEntry(doc, version, markdown, streaming, len(msg.content), groups)

    def _style_code(self, doc: QTextDocument, source: str) -> list[_CodeGroup]:
        """Find the code blocks the Markdown importer made; shade them and make room for Copy.

        Qt 6's importer marks every line of a code block as its own QTextBlock whose format has
        BlockCodeLanguage (fenced blocks also BlockCodeFence and nonBreakableLines), with the
        system's fixed font.
        """
        runs: list[tuple[bool, list[QTextBlock]]] = []
        block = doc.begin()
        while block.isValid():
            fmt = block.blockFormat()
            if fmt.hasProperty(QTextFormat.Property.BlockCodeLanguage):
                fenced = fmt.hasProperty(QTextFormat.Property.BlockCodeFence)
                prev = runs[-1] if runs else None
                if (
                    prev is not None
                    and prev[0] == fenced
                    and prev[1][-1].blockNumber() == block.blockNumber() - 1
                ):
                    prev[1].append(block)
                else:
                    runs.append((fenced, [block]))
            block = block.next()
        if not runs:
            return []

        groups: list[tuple[list[QTextBlock], str | None]] = []
        fences = _fenced_blocks(source) if any(f for f, _ in runs) else []
        next_fence, trusted = 0, True
        for fenced, blocks in runs:
            split: list[tuple[list[QTextBlock], str | None]] = []
            i = 0
            while fenced and trusted and i < len(blocks):
                if next_fence >= len(fences):
                    trusted = False
                    break
                lines = fences[next_fence]
                next_fence += 1
                if not lines:  # an empty fenced block leaves no line in the document
                    continue
                part = blocks[i : i + len(lines)]
                if len(part) != len(lines):
                    trusted = False
                    break
                same = all(
                    line == b.text() or line.expandtabs(4) == b.text()
                    for line, b in zip(lines, part, strict=True)
                )
                split.append((part, "\n".join(lines) if same else None))
                i += len(lines)
            if not fenced or not trusted:
                # The source and the document disagree (or it is an indented block): one group.
                split = [(blocks, None)]
            groups.extend(split)

        fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        shade = self._code_background(self._view.palette())
        char_fmt = QTextCharFormat()
        char_fmt.setFontFamilies([fixed.family()])
        char_fmt.setFontFixedPitch(True)
        cursor = QTextCursor(doc)
        cursor.beginEditBlock()
        result: list[_CodeGroup] = []
        for blocks, text in groups:
            for k, b in enumerate(blocks):
                fmt = QTextBlockFormat()
                fmt.setBackground(shade)
                fmt.setNonBreakableLines(False)  # wrap long lines; copying keeps them whole
                fmt.setLeftMargin(self.CODE_PAD)
                fmt.setRightMargin(self.CODE_PAD)
                if k == 0:
                    fmt.setTopMargin(self.CODE_HEADER_H + self.CODE_PAD)
                if k == len(blocks) - 1:
                    fmt.setBottomMargin(self.CODE_PAD + 4)
                cursor.setPosition(b.position())
                cursor.mergeBlockFormat(fmt)
            cursor.setPosition(blocks[0].position())
            last = blocks[-1]
            cursor.setPosition(last.position() + last.length() - 1, QTextCursor.MoveMode.KeepAnchor)
            cursor.mergeCharFormat(char_fmt)
            if text is None:
                text = "\n".join(b.text() for b in blocks)
            first_fmt = blocks[0].blockFormat()
            language = str(first_fmt.property(QTextFormat.Property.BlockCodeLanguage) or "")
            result.append(_CodeGroup(blocks[0].blockNumber(), last.blockNumber(), text, language))
        cursor.endEditBlock()
        return result

    def _layout(self, entry: _DocEntry, text_w: int, version: int) -> None:
        key = (version, text_w)
        if entry.layout_key == key:
            return
        if entry.doc.textWidth() != text_w:  # setting it, even unchanged, costs a re-layout
            entry.doc.setTextWidth(text_w)
        # size() runs the layout; after an append Qt re-lays out only the blocks that changed.
        entry.doc_h = math.ceil(entry.doc.size().height())
        entry.ideal_w = math.ceil(entry.doc.idealWidth())
        entry.layout_key = key
        self.layouts_done += 1

    def _evict(self) -> None:
        excess = len(self._docs) - self.DOC_CACHE
        if excess <= 0:
            return
        for message_id in [k for k, e in self._docs.items() if not e.streaming][:excess]:
            del self._docs[message_id]

    # -- background refinement -----------------------------------------------------------------

    def _schedule_refine(self) -> None:
        self._refine_rows = None
        self._refine_timer.start(self.refine_delay_ms)

    def _rows_outward(self, rows: int) -> Iterator[int]:
        """Rows nearest the screen first, alternating above and below, within REFINE_RADIUS."""
        center = (self._focus.start + self._focus.stop) // 2 if self._focus else rows - 1
        yield center
        for d in range(1, self.REFINE_RADIUS + 1):
            for row in (center + d, center - d):
                if 0 <= row < rows:
                    yield row

    def _refine_tick(self) -> None:
        """Measure a bounded batch of estimated rows; tell the view if any height changed."""
        model = self._view.model()
        if model is None or model.rowCount() == 0:
            return
        width = self._viewport_width()
        if self._refine_rows is None:
            self._refine_rows = self._rows_outward(model.rowCount())
        deadline = time.perf_counter() + self.REFINE_BUDGET_S
        measured, changed = 0, None
        finished = True
        for row in self._refine_rows:
            if row >= model.rowCount():
                continue
            index = model.index(row, 0)
            msg, version = self._message(index)
            if self._exact(msg.id, version, width) is not None:
                continue
            entry = self._entry(msg, version, keep=False)
            height = self._measure_with(entry, msg, version, width).height
            if self._placed_height(row) != height:
                self._stale.add(row)
                changed = index
            measured += 1
            if measured >= self.REFINE_BATCH or time.perf_counter() > deadline:
                finished = False
                break
        if changed is not None:
            self._request_relayout(changed, self._message(changed)[0], changed.row())
        if finished:
            self._refine_rows = None
        else:
            self._refine_timer.start(self.REFINE_INTERVAL_MS)

    # -- painting ------------------------------------------------------------------------------

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _ModelIndex) -> None:
        msg, version = self._message(index)
        rect = QRect(option.rect)
        width = self._viewport_width()
        entry = self._entry(msg, version, keep=True)
        measured = self._measure_with(entry, msg, version, width)
        if self._tracking and self._placed_height(index.row()) != measured.height:
            # The view placed this row by an estimate; now that it is known, let it re-layout.
            self._request_relayout(index, msg, index.row())
        geo = self._geometry(rect, msg, measured)
        palette: QPalette = option.palette

        painter.save()
        # A streaming answer may have outgrown its row until the view re-lays out: stay inside.
        painter.setClipRect(rect)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self._bubble_colour(msg, palette))
        painter.drawRoundedRect(QRectF(geo.bubble), self.RADIUS, self.RADIUS)

        painter.save()
        painter.translate(geo.content.topLeft())
        doc_rect = QRectF(0, 0, geo.content.width(), measured.doc_h)
        # Draw only what is on screen: a very long answer is mostly outside the viewport.
        visible = QRectF(self._view.viewport().rect()).translated(-QPointF(geo.content.topLeft()))
        clip = doc_rect.intersected(visible)
        painter.setClipRect(clip, Qt.ClipOperation.IntersectClip)
        self._paint_code_frames(painter, entry, geo.content.width(), palette)
        context = QAbstractTextDocumentLayout.PaintContext()
        text_palette = QPalette(palette)
        if msg.role == "system":
            muted = palette.color(QPalette.ColorRole.PlaceholderText)
            text_palette.setColor(QPalette.ColorRole.Text, muted)
        context.palette = text_palette
        context.clip = clip
        entry.doc.documentLayout().draw(painter, context)
        painter.restore()

        for k, button in enumerate(self._copy_rects(entry, geo)):
            self._paint_copy_button(painter, button, (msg.id, k) == self._copied, palette)
        if geo.status.isValid():
            painter.setFont(self._status_font())
            painter.setPen(self._status_colour(msg.status, palette))
            flags = int(Qt.TextFlag.TextWordWrap) | int(Qt.AlignmentFlag.AlignLeft)
            painter.drawText(geo.status, flags, self.status_text(msg))
        painter.restore()

    def _geometry(self, rect: QRect, msg: Message, measured: _Measured) -> _Geometry:
        bubble_w = measured.content_w + 2 * self.PAD_X
        extra = self.STATUS_GAP + measured.status_h if measured.status_h else 0
        doc_h = max(measured.doc_h, math.ceil(self._line_h))
        bubble_h = doc_h + 2 * self.PAD_Y + extra
        top = rect.top() + self.MARGIN_Y
        if msg.role == "user":
            left = rect.right() + 1 - self.MARGIN_X - bubble_w
        elif msg.role == "system":
            left = rect.left() + (rect.width() - bubble_w) // 2
        else:
            left = rect.left() + self.MARGIN_X
        bubble = QRect(left, top, bubble_w, bubble_h)
        content = QRect(left + self.PAD_X, top + self.PAD_Y, measured.content_w, measured.doc_h)
        status = QRect()
        if measured.status_h:
            status = QRect(
                content.left(), top + self.PAD_Y + doc_h + self.STATUS_GAP,
                measured.content_w, measured.status_h,
            )
        return _Geometry(bubble, content, status)

    def _code_frame(self, entry: _DocEntry, group: _CodeGroup, content_w: int) -> QRectF:
        """A code block's shaded area in document coordinates, its header strip included."""
        layout = entry.doc.documentLayout()
        first = layout.blockBoundingRect(_block_at(entry.doc, group.first))
        last = layout.blockBoundingRect(_block_at(entry.doc, group.last))
        top = first.top() - self.CODE_HEADER_H - self.CODE_PAD
        return QRectF(0, top, content_w, last.bottom() + self.CODE_PAD - top)

    def _paint_code_frames(
        self, painter: QPainter, entry: _DocEntry, content_w: int, palette: QPalette
    ) -> None:
        # The block background Qt paints covers the code lines only; the header strip (with the
        # Copy button) and the padding below are painted here so the block reads as one box.
        if not entry.code_groups:
            return
        painter.save()
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self._code_background(palette))
        muted = palette.color(QPalette.ColorRole.PlaceholderText)
        for group in entry.code_groups:
            frame = self._code_frame(entry, group, content_w)
            painter.drawRoundedRect(frame, 6, 6)
            if group.language:
                painter.setPen(muted)
                label = QRectF(frame.left() + self.CODE_PAD, frame.top(), 200, self.CODE_HEADER_H)
                painter.drawText(label, int(Qt.AlignmentFlag.AlignVCenter), group.language)
                painter.setPen(Qt.PenStyle.NoPen)
        painter.restore()

    def _copy_rects(self, entry: _DocEntry, geo: _Geometry) -> list[QRect]:
        rects = []
        metrics = QFontMetrics(self._status_font())
        w = max(metrics.horizontalAdvance("Copied"), metrics.horizontalAdvance("Copy")) + 12
        h = self.CODE_HEADER_H - 6
        for group in entry.code_groups:
            frame = self._code_frame(entry, group, geo.content.width())
            x = geo.content.left() + int(frame.right()) - w - 3
            y = geo.content.top() + int(frame.top()) + 3
            rects.append(QRect(x, y, w, h))
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

    def _bubble_colour(self, msg: Message, palette: QPalette) -> QColor:
        base = palette.color(QPalette.ColorRole.Base)
        if msg.role == "user":
            return _mix(base, palette.color(QPalette.ColorRole.Highlight), 0.22)
        if msg.role == "system":
            return palette.color(QPalette.ColorRole.Window)
        return _mix(base, palette.color(QPalette.ColorRole.Text), 0.05)

    def _code_background(self, palette: QPalette) -> QColor:
        # "Light" relative to the bubble: a shade towards the text colour, so dark mode works.
        base, text = palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text)
        return _mix(base, text, 0.1)

    def _status_colour(self, status: str, palette: QPalette) -> QColor:
        if status == "cancelled":
            return palette.color(QPalette.ColorRole.PlaceholderText)
        dark = _is_dark(palette)
        if status == "error":
            return QColor("#ff8a80") if dark else QColor("#b3261e")
        return QColor("#ffcc80") if dark else QColor("#9a5b00")  # interrupted: a warning

    # -- clicks --------------------------------------------------------------------------------

    def editorEvent(
        self,
        event: QEvent,
        model: Any,
        option: QStyleOptionViewItem,
        index: _ModelIndex,
    ) -> bool:
        kinds = (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease)
        if event.type() not in kinds:
            return super().editorEvent(event, model, option, index)
        mouse = cast(QMouseEvent, event)
        if mouse.button() != Qt.MouseButton.LeftButton:
            return super().editorEvent(event, model, option, index)
        pos = mouse.position().toPoint()
        msg, version = self._message(index)
        entry = self._entry(msg, version, keep=True)
        rect = QRect(option.rect)
        measured = self._measure_with(entry, msg, version, self._viewport_width())
        geo = self._geometry(rect, msg, measured)
        for k, button in enumerate(self._copy_rects(entry, geo)):
            if button.contains(pos):
                if event.type() == QEvent.Type.MouseButtonRelease:
                    self._copy_code(msg.id, k, entry.code_groups[k].text)
                return True  # the press too, so the view does not start a drag or selection
        anchor = self._anchor_at(entry, geo, pos)
        if anchor:
            if event.type() == QEvent.Type.MouseButtonRelease:
                self.linkActivated.emit(anchor)
            return True
        return super().editorEvent(event, model, option, index)

    def _copy_code(self, message_id: int, group: int, text: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self._copied = (message_id, group)
        self._copied_timer.start()
        self._view.viewport().update()
        self.codeCopied.emit(text)

    def _clear_copied(self) -> None:
        self._copied = None
        self._view.viewport().update()

    def _anchor_at(self, entry: _DocEntry, geo: _Geometry, pos: QPoint) -> str:
        if not geo.content.contains(pos):
            return ""
        point = QPointF(pos - geo.content.topLeft())
        return entry.doc.documentLayout().anchorAt(point)


class ChatView(QListView):
    """The transcript of one chat: a QListView over a ChatModel, painted by a ChatDelegate.

    It follows a streaming answer down only while the user is at the bottom; a user who has
    scrolled up to read stays where they are, even while rows above change height.

    Signals:
        codeCopied(str): the text of a code block copied with its Copy button.
        linkActivated(str): a link in a message was clicked; the view does not open it.
        messageCopied(int): the id of a message copied with "Copy message".
    """

    codeCopied = Signal(str)
    linkActivated = Signal(str)
    messageCopied = Signal(int)

    BOTTOM_SLACK: Final = 4  # pixels from the end that still count as "at the bottom"

    def __init__(self, parent: QWidget | None = None, model: ChatModel | None = None) -> None:
        super().__init__(parent)
        # First: the setters below already lay out and scroll (updateGeometries).
        self._at_bottom = True
        self._anchor: tuple[int, int] | None = None  # (message id, its top in the viewport)
        self._adjusting = 0  # > 0 while the view itself moves the scroll bar (it nests)
        self._model = model if model is not None else ChatModel(self)
        self._delegate = ChatDelegate(self)
        self.setModel(self._model)
        self.setItemDelegate(self._delegate)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.verticalScrollBar().setSingleStep(24)  # per-pixel scrolling's default step crawls
        # Word wrap also makes QListView re-lay out its rows when only the width changes.
        self.setWordWrap(True)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setUniformItemSizes(False)
        # One pass, not Batched: between batches QListView paints with only part of the rows
        # placed and clamps the scroll position to them, so the end of a streaming chat
        # flickered on every new line. A pass over cached heights is cheap (~15 ms at 2,000
        # rows), and layout_pass() needs the whole pass inside doItemsLayout().
        self.setLayoutMode(QListView.LayoutMode.SinglePass)
        self.setMouseTracking(True)  # a hand cursor over Copy buttons and links

        self._delegate.codeCopied.connect(self.codeCopied)
        self._delegate.linkActivated.connect(self.linkActivated)
        self._model.modelReset.connect(self._on_reset)
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

    def scroll_to_bottom(self) -> None:
        """Show the end of the chat and follow it again, e.g. after the user sends a prompt."""
        self._at_bottom = True
        self._set_scroll(self.verticalScrollBar().maximum())

    def copy_message(self, index: QModelIndex) -> None:
        """Put the message's text (its Markdown source) on the clipboard."""
        message = self._model.message_at(index.row())
        QGuiApplication.clipboard().setText(message.content)
        self.messageCopied.emit(message.id)

    def context_menu_for(self, index: QModelIndex) -> QMenu:
        """The context menu for a message; the caller shows it (tests trigger its actions)."""
        menu = QMenu(self)
        action = menu.addAction("Copy message")
        persistent = QPersistentModelIndex(index)
        action.triggered.connect(lambda: self.copy_message(_plain(persistent)))
        return menu

    # -- Qt overrides --------------------------------------------------------------------------

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        index = self.indexAt(event.pos())
        if not index.isValid():
            return
        menu = self.context_menu_for(index)
        menu.exec(event.globalPos())
        menu.deleteLater()

    def resizeEvent(self, event: Any) -> None:
        # Before the re-layout: the rows on screen now are the ones worth measuring exactly.
        self._update_focus()
        super().resizeEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        super().mouseMoveEvent(event)
        pos = event.position().toPoint()
        index = self.indexAt(pos)
        hit = self._delegate.hit_test(index, pos) if index.isValid() else ""
        if hit:
            self.viewport().setCursor(Qt.CursorShape.PointingHandCursor)
        else:
            self.viewport().unsetCursor()

    def doItemsLayout(self) -> None:
        # Tell the delegate which sizes are the ones the rows get placed with.
        self._delegate.layout_pass(True)
        try:
            super().doItemsLayout()
        finally:
            self._delegate.layout_pass(False)

    def dataChanged(
        self,
        top_left: _ModelIndex,
        bottom_right: _ModelIndex,
        roles: Any = (),
    ) -> None:
        # QListView answers every dataChanged by re-laying out all rows (QListModeViewBase), which
        # at 60 streamed chunks a second and thousands of rows is most of a core. Skip it: the
        # delegate measures the changed row and asks for a re-layout only if its height changed.
        QAbstractItemView.dataChanged(self, top_left, bottom_right, list(roles))
        for row in range(top_left.row(), bottom_right.row() + 1):
            self._delegate.message_changed(self._model.index(row, 0))

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self._delegate.drop_documents()  # code shading is baked into the documents
            self.viewport().update()
        elif event.type() == QEvent.Type.FontChange:
            self._delegate.reset_caches()
            self.scheduleDelayedItemsLayout()
        super().changeEvent(event)

    # -- scrolling -----------------------------------------------------------------------------

    def _set_scroll(self, value: int) -> None:
        # setValue() can run a pending layout (QListView lays out before it scrolls), whose
        # range change lands in _on_range_changed and scrolls again, inside this call.
        self._adjusting += 1
        try:
            self.verticalScrollBar().setValue(value)
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
        self._update_focus()

    def updateGeometries(self) -> None:
        # Runs after every layout pass (and resize), once the rows are in their new places.
        super().updateGeometries()
        bar = self.verticalScrollBar()
        if self._at_bottom:
            if bar.value() != bar.maximum():
                self._set_scroll(bar.maximum())
            return
        # Rows above the screen got their exact height: keep the row being read in place.
        if self._anchor is None:
            return
        row = self._model.row_of(self._anchor[0])
        if row is None:
            return
        rect = self.visualRect(self._model.index(row, 0))
        if rect.isValid() and rect.top() != self._anchor[1]:
            bar = self.verticalScrollBar()
            self._adjusting += 1
            try:
                bar.setValue(bar.value() + rect.top() - self._anchor[1])
            finally:
                self._adjusting -= 1

    def _remember_anchor(self) -> None:
        index = self.indexAt(QPoint(self.viewport().width() // 2, 0))
        if index.isValid():
            message = self._model.message_at(index.row())
            self._anchor = (message.id, self.visualRect(index).top())
        else:
            self._anchor = None

    def _update_focus(self) -> None:
        rows = self._model.rowCount()
        if rows == 0:
            self._delegate.set_focus_rows(range(0))
            return
        viewport = self.viewport().rect()
        top = self.indexAt(QPoint(viewport.width() // 2, 0))
        bottom = self.indexAt(QPoint(viewport.width() // 2, viewport.height() - 1))
        first = top.row() if top.isValid() else rows - 1
        last = bottom.row() if bottom.isValid() else rows - 1
        self._delegate.set_focus_rows(range(max(0, first - 5), min(rows, last + 6)))

    def _on_reset(self) -> None:
        self._delegate.reset_caches()
        self._at_bottom = True
        self._anchor = None
