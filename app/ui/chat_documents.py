"""The rendered documents of a chat's messages: a bounded cache, and streamed text appended to an
answer's document rather than the answer rendered again (ARCHITECTURE rule 3)."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

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
    source_len: int  # how much of the message's content the document holds
    code_blocks: list[CodeBlock]
    laid_out_at: tuple[int, int] | None = None  # (version, text width) of the last layout
    doc_h: int = 0
    ideal_w: int = 0

    def is_laid_out_at(self, text_w: int) -> bool:
        return self.laid_out_at == (self.version, text_w)

    def lay_out(self, text_w: int) -> None:
        """Lay the document out at `text_w` and note its height and the width its text needs."""
        if self.doc.textWidth() != text_w:  # setting it, even unchanged, costs a re-layout
            self.doc.setTextWidth(text_w)
        # size() runs the layout; after an append Qt re-lays out only the blocks that changed.
        self.doc_h = math.ceil(self.doc.size().height())
        self.ideal_w = math.ceil(self.doc.idealWidth())
        self.laid_out_at = (self.version, text_w)


class DocumentCache:
    """The documents of the most recently used messages, and of every streaming answer.

    Only DOCUMENTS of them are kept (heights are what every row keeps); a streaming answer's
    document is never evicted, since it is appended to rather than rebuilt.
    """

    DOCUMENTS: Final = 300

    def __init__(self, view: QWidget, stats: LayoutStats) -> None:
        self._view = view  # whose font and palette documents are rendered with
        self._stats = stats
        self._docs: OrderedDict[int, MessageDocument] = OrderedDict()  # by message id, LRU

    def clear(self) -> None:
        self._docs = OrderedDict()

    def drop_rendered(self) -> None:
        """Forget every document but the streaming ones, whose text only appends can rebuild."""
        self._docs = OrderedDict((k, d) for k, d in self._docs.items() if d.streaming)

    def document_for(self, msg: Message, version: int, *, keep: bool) -> MessageDocument:
        """The message's document, brought up to `version`.

        A streaming answer's document gets only the newly arrived text appended at its end, so a
        long answer costs per chunk what the chunk costs. Anything else is rendered whole, once
        per version. With keep=False a document built just to measure a row off screen is not
        cached, so background refinement cannot push the rows on screen out of the cache.
        """
        document = self._docs.get(msg.id)
        streaming = msg.status == "streaming"
        if document is not None and document.version != version:
            if streaming and document.streaming and document.source_len <= len(msg.content):
                cursor = QTextCursor(document.doc)
                cursor.movePosition(QTextCursor.MoveOperation.End)
                cursor.insertText(msg.content[document.source_len :])
                document.source_len = len(msg.content)
                document.version = version
            else:
                document = None
        if document is not None:
            self._docs.move_to_end(msg.id)
            return document
        # A user's prompt is shown as typed; an answer is Markdown once it is complete.
        doc, blocks = render(
            msg.content,
            markdown=msg.role != "user" and not streaming,
            font=self._view.font(),
            code_shade=code_shade(self._view.palette()),
        )
        self._stats.full_renders += 1
        document = MessageDocument(doc, version, streaming, len(msg.content), blocks)
        if keep or streaming:
            self._docs[msg.id] = document
            excess = len(self._docs) - self.DOCUMENTS
            for message_id in [k for k, d in self._docs.items() if not d.streaming][:excess]:
                del self._docs[message_id]
        return document
