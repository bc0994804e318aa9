"""The rendered documents of a chat's messages: a bounded cache, streamed text appended to an
answer's document rather than the answer rendered again (ARCHITECTURE rule 3), and a finished
answer's Markdown laid out a piece at a time while its streamed text stays on screen."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QWidget

from app.core.history import Message
from app.ui.chat_colours import code_shade
from app.ui.chat_markdown import CodeBlock, SafeDocument, render
from app.ui.chat_stats import LayoutStats


@dataclass(slots=True)
class MessageDocument:
    """A message's rendered document and where its last layout stands."""

    doc: SafeDocument
    version: int  # the message's content version the document shows
    streaming: bool  # plain text that grows by appends
    source: str  # the message's content: what the document shows, or will once `pending` ends
    code_blocks: list[CodeBlock]
    pending: bool = False  # the streamed text, shown until its Markdown is laid out
    # Since the last layout, text was appended after the line that began this far down.
    appended_below: int | None = None
    laid_out_at: tuple[int, int] | None = None  # (version, text width) of the last layout
    doc_h: int = 0
    ideal_w: int = 0
    changed_y: int = 0  # after a layout: where what it changed begins (0: all of it)

    def is_laid_out_at(self, text_w: int) -> bool:
        return self.laid_out_at == (self.version, text_w)

    def lay_out(self, text_w: int) -> None:
        """Lay the document out at `text_w` and note its height and the width its text needs."""
        same_width = self.doc.textWidth() == text_w
        if not same_width:  # setting it, even unchanged, costs a re-layout
            self.doc.setTextWidth(text_w)
        ideal_w = self.ideal_w
        # size() runs the layout; after an append Qt re-lays out only the blocks that changed.
        self.doc_h = math.ceil(self.doc.size().height())
        self.ideal_w = math.ceil(self.doc.idealWidth())
        self.laid_out_at = (self.version, text_w)
        # Text appended at the same width changes the document from the line it was appended
        # to (whose last word may wrap now) down; a bubble that widened changed all of it.
        appended_below, self.appended_below = self.appended_below, None
        unchanged_above = same_width and self.ideal_w == ideal_w
        self.changed_y = appended_below if appended_below is not None and unchanged_above else 0

    def last_line_top(self) -> int | None:
        """Where the document's last line begins, if it is laid out."""
        block = self.doc.lastBlock()
        layout = block.layout()
        if layout is None or layout.lineCount() == 0:
            return None
        top = self.doc.documentLayout().blockBoundingRect(block).top()
        return math.floor(top + layout.lineAt(layout.lineCount() - 1).y())


class DocumentCache(QObject):
    """The documents of the most recently used messages, and of every streaming answer.

    Only DOCUMENTS of them are kept (heights are what every row keeps); a streaming answer's
    document is never evicted, since it is appended to rather than rebuilt.

    When an answer finishes, its Markdown is rendered and laid out on timer ticks of at most
    BUDGET_S each (Qt's document layout goes as far as it is asked, block by block), and the
    streamed plain text stays on screen until it is done: an answer of thousands of tokens
    takes longer to lay out than a frame lasts.

    Signals:
        markdownReady(int): the id of a finished answer whose document now shows its Markdown;
            its height may have changed.
    """

    markdownReady = Signal(int)

    DOCUMENTS: Final = 120  # a few screens of rows; kept laid out, the rest re-rendered
    BUDGET_S: Final = 0.004
    STEP_CHARS: Final = 2000  # how far each request for more layout reaches

    def __init__(self, view: QWidget, stats: LayoutStats) -> None:
        super().__init__(view)
        self._view = view  # whose font and palette documents are rendered with
        self._stats = stats
        self._docs: OrderedDict[int, MessageDocument] = OrderedDict()  # by message id, LRU
        # Finished answers whose Markdown is being laid out: (id, document, its Markdown once
        # rendered), oldest first.
        self._finishing: list[tuple[int, MessageDocument, _Rendered | None]] = []
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._finish_some)

    def clear(self) -> None:
        self._docs = OrderedDict()
        self._finishing = []

    def drop_rendered(self) -> None:
        """Forget every document but the streaming ones, whose text only appends can rebuild."""
        self._docs = OrderedDict((k, d) for k, d in self._docs.items() if d.streaming)
        self._finishing = []

    @property
    def finishing(self) -> bool:
        """Whether a finished answer's Markdown is still being laid out."""
        return bool(self._finishing)

    def document_for(self, msg: Message, version: int, *, keep: bool) -> MessageDocument:
        """The message's document, brought up to `version`.

        A streaming answer's document gets only the newly arrived text appended at its end, so a
        long answer costs per chunk what the chunk costs; when it finishes, that document stays
        until its Markdown is laid out. A new version with the same text (a status, a footer)
        keeps its document. Anything else is rendered whole, once per version. With keep=False
        a document built just to measure a row off screen is not cached, so background
        refinement cannot push the rows on screen out of the cache.
        """
        document = self._docs.get(msg.id)
        if document is not None and document.version != version:
            document = document if self._bring_up(document, msg) else None
            if document is not None:
                document.version = version
        if document is not None:
            self._docs.move_to_end(msg.id)
            return document
        streaming = msg.status == "streaming"
        # A user's prompt is shown as typed; an answer is Markdown once it is complete.
        doc, blocks = render(
            msg.content,
            markdown=msg.role != "user" and not streaming,
            font=self._view.font(),
            code_shade=code_shade(self._view.palette()),
        )
        self._stats.full_renders += 1
        document = MessageDocument(doc, version, streaming, msg.content, blocks)
        if keep or streaming:
            self._docs[msg.id] = document
            excess = len(self._docs) - self.DOCUMENTS
            evictable = [k for k, d in self._docs.items() if not (d.streaming or d.pending)]
            for message_id in evictable[:excess]:
                del self._docs[message_id]
        return document

    def _bring_up(self, document: MessageDocument, msg: Message) -> bool:
        """Bring a cached document to the message's new content, if it can be without a render."""
        streaming = msg.status == "streaming"
        if document.streaming and msg.content.startswith(document.source):
            self._append(document, msg.content)
            if not streaming:  # it finished: Markdown from now on, laid out in the background
                document.streaming, document.pending = False, True
                document.appended_below = None
                self._finishing.append((msg.id, document, None))
                self._timer.start(0)
            return True
        document.appended_below = None
        return msg.content == document.source and streaming == document.streaming

    def _append(self, document: MessageDocument, content: str) -> None:
        if len(content) == len(document.source):
            document.source = content
            return
        if document.appended_below is None and document.laid_out_at is not None:
            document.appended_below = document.last_line_top()
        cursor = QTextCursor(document.doc)
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(content[len(document.source) :])
        document.source = content

    def _finish_some(self) -> None:
        """Render and lay out finished answers' Markdown for at most BUDGET_S."""
        deadline = time.perf_counter() + self.BUDGET_S
        while self._finishing and time.perf_counter() < deadline:
            message_id, document, rendered = self._finishing[0]
            if self._docs.get(message_id) is not document or not document.pending:
                self._finishing.pop(0)  # changed since, or dropped: rendered anew when needed
                continue
            if rendered is None:  # a tick of its own: the layout comes after
                self._finishing[0] = (message_id, document, self._render(document))
                break
            if rendered.lay_out_until(deadline, self.STEP_CHARS):
                self._finishing.pop(0)
                document.doc, document.code_blocks = rendered.doc, rendered.code_blocks
                document.pending, document.laid_out_at = False, None
                self.markdownReady.emit(message_id)
        if self._finishing:
            self._timer.start(0)

    def _render(self, document: MessageDocument) -> _Rendered:
        doc, blocks = render(
            document.source,
            markdown=True,
            font=self._view.font(),
            code_shade=code_shade(self._view.palette()),
        )
        self._stats.full_renders += 1
        doc.setTextWidth(document.doc.textWidth())  # the width the streamed text is shown at
        return _Rendered(doc, blocks)


@dataclass(slots=True)
class _Rendered:
    """A finished answer's Markdown and how far its layout has got."""

    doc: SafeDocument
    code_blocks: list[CodeBlock]
    reached: int = 0  # the document position laid out up to

    def lay_out_until(self, deadline: float, step: int) -> bool:
        """Lay out more of the document, `step` characters at a time, until `deadline`; True
        once all of it is laid out."""
        layout, end = self.doc.documentLayout(), self.doc.characterCount() - 1
        while self.reached < end and time.perf_counter() < deadline:
            self.reached = min(end, self.reached + step)
            # Asking where a block is lays the document out as far as that block, no further.
            layout.blockBoundingRect(self.doc.findBlock(self.reached))
        return self.reached >= end
