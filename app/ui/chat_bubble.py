"""Where each part of a chat message's bubble goes — its frame, its text, its status lines and its
code blocks' Copy buttons — and so how tall the message's row is."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from PySide6.QtCore import QRect, QRectF, Qt
from PySide6.QtGui import QFont, QFontMetrics, QFontMetricsF
from PySide6.QtWidgets import QWidget

from app.core.chat import footer
from app.core.history import Message
from app.ui.chat_documents import MessageDocument
from app.ui.chat_markdown import CODE_HEADER_H, CODE_PAD, CodeBlock

WAITING: Final = "Waiting for the node…"
STATUS_LABELS: Final[dict[str, str]] = {
    "interrupted": "Interrupted — the answer is incomplete",
    "error": "Failed — the answer is incomplete",
    "cancelled": "Cancelled — the answer is incomplete",
}


def status_text(message: Message) -> str:
    """The lines under an answer: how an interrupted, failed or cancelled one ended, and where it
    ran and what it took (its quiet footer); "" when there is neither."""
    written = message.content.partition("\n\n")[2] if message.kind == "step" \
        else message.content  # a step is shown under its title line
    if message.status == "streaming" and message.role == "assistant" and not written.strip():
        return WAITING  # from the start, until the first words arrive
    label = STATUS_LABELS.get(message.status, "")
    if label and message.status == "error" and not message.content:
        label = "Failed — no answer"  # nothing is "incomplete" when nothing came
    lines = [label, message.error] if label and message.error else [label]
    if message.role == "assistant" and message.status != "streaming":
        lines.append(footer(message))
    return "\n".join(line for line in lines if line)


def message_actions(message: Message) -> tuple[tuple[str, str], ...]:
    """What can be done to a message from its bubble, as (action, label): edit a prompt;
    regenerate an answer (Retry when none came), continue one cut off; run again the rest
    of a plan whose step failed. None while it streams."""
    if message.status == "streaming":
        return ()
    if message.role == "user" and message.kind == "":
        return (("edit", "Edit"),)
    if message.role != "assistant":
        return ()
    failed = message.status in ("error", "interrupted", "cancelled")
    if message.kind == "step":
        return (("retry-plan", "Retry the rest of the plan"),) if failed else ()
    if message.kind not in ("", "document answer"):
        return ()
    actions = [("regenerate", "Retry" if failed and not message.content else "Regenerate")]
    if failed and message.content and message.ran_on:
        actions.append(("continue", "Continue"))
    return tuple(actions)


@dataclass(frozen=True, slots=True)
class Bubble:
    """A message laid out in its row: its document and where each part goes on the viewport."""

    msg: Message
    document: MessageDocument
    height: int  # the row's exact height
    frame: QRect
    content: QRect  # where the document is drawn
    status: QRect  # empty when the message has no status line
    actions: tuple[tuple[str, str, QRect], ...] = ()  # (action, label, where), along the bottom


class BubbleGeometry:
    """The measurements of a chat's bubbles in the view's font.

    The user's messages are right-aligned and at most USER_FRACTION of the width, answers are
    left-aligned and system notes centred.
    """

    MARGIN_X: Final = 10  # between the viewport's edge and a bubble
    MARGIN_Y: Final = 4  # above and below each bubble
    PAD_X: Final = 12  # inside a bubble
    PAD_Y: Final = 8
    RADIUS: Final = 10
    USER_FRACTION: Final = 0.8
    STATUS_GAP: Final = 6
    ACTION_GAP: Final = 14  # between two actions' labels

    def __init__(self, view: QWidget) -> None:
        self._view = view
        self.update_metrics()

    def update_metrics(self) -> None:
        """Take the view's font again (it changed)."""
        metrics = QFontMetricsF(self._view.font())
        self._char_w = max(metrics.averageCharWidth(), 1.0)
        self._line_h = max(metrics.lineSpacing(), 1.0)
        # Every row's height is estimated with these when the view is resized: made once.
        self._status_font = QFont(self._view.font())
        self._status_font.setPointSizeF(max(6.0, self._status_font.pointSizeF() * 0.9))
        self._status_metrics = QFontMetrics(self._status_font)

    def status_font(self) -> QFont:
        """The font of status lines and Copy buttons: a little smaller than the text's."""
        return self._status_font

    def content_top(self) -> int:
        """How far below its row's top a message's document begins."""
        return self.MARGIN_Y + self.PAD_Y

    def text_width(self, msg: Message, width: int) -> int:
        """The width the message's text wraps at, in a viewport `width` wide."""
        available = max(width - 2 * self.MARGIN_X, 80)
        if msg.role == "user":
            available = int(available * self.USER_FRACTION)
        return max(available - 2 * self.PAD_X, 40)

    def status_rect(self, msg: Message, text_w: int) -> QRect:
        """The size of the message's status lines wrapped to `text_w` (empty if none)."""
        text = status_text(msg)
        if not text:
            return QRect()
        bounds = QRect(0, 0, text_w, 100_000)
        return self._status_metrics.boundingRect(bounds, int(Qt.TextFlag.TextWordWrap), text)

    def row_height(self, doc_h: int, msg: Message, text_w: int) -> int:
        """The height of the message's row when its document is `doc_h` tall."""
        status_h = self.status_rect(msg, text_w).height()
        extra = self.STATUS_GAP + status_h if status_h else 0
        if message_actions(msg):
            extra += self.STATUS_GAP + self._action_h()
        return 2 * self.MARGIN_Y + 2 * self.PAD_Y + max(doc_h, math.ceil(self._line_h)) + extra

    def _action_h(self) -> int:
        return self._status_metrics.height()

    def _action_widths(self, msg: Message) -> list[int]:
        metrics = self._status_metrics
        return [metrics.horizontalAdvance(label) + 2 for _, label in message_actions(msg)]

    def estimated_height(self, msg: Message, width: int) -> int:
        """A row's height from its character count, with no layout: chars / chars-per-line."""
        text_w = self.text_width(msg, width)
        per_line = max(8, int(text_w / self._char_w))
        lines = msg.content.count("\n") + 1 + len(msg.content) // per_line
        return self.row_height(math.ceil(lines * self._line_h), msg, text_w)

    def place(
        self, msg: Message, document: MessageDocument, height: int, rect: QRect, width: int
    ) -> Bubble:
        """The message's bubble in its row `rect`, its document laid out for viewport `width`."""
        text_w = self.text_width(msg, width)
        status = self.status_rect(msg, text_w)
        content_w = text_w if document.code_blocks else min(text_w, max(document.ideal_w, 1))
        if status.height():
            content_w = max(content_w, min(text_w, status.width() + 1))
        action_ws = self._action_widths(msg)
        if action_ws:
            row_w = sum(action_ws) + self.ACTION_GAP * (len(action_ws) - 1)
            content_w = max(content_w, min(text_w, row_w))
        bubble_w = content_w + 2 * self.PAD_X
        if msg.role == "user":
            left = rect.right() + 1 - self.MARGIN_X - bubble_w
        elif msg.role == "system":
            left = rect.left() + (rect.width() - bubble_w) // 2
        else:
            left = rect.left() + self.MARGIN_X
        top = rect.top() + self.MARGIN_Y
        frame = QRect(left, top, bubble_w, height - 2 * self.MARGIN_Y)
        content = QRect(left + self.PAD_X, rect.top() + self.content_top(), content_w,
                        document.doc_h)
        bottom = frame.bottom() + 1 - self.PAD_Y
        actions = []
        if action_ws:
            x, top_of_actions = content.left(), bottom - self._action_h()
            for (action, label), w in zip(message_actions(msg), action_ws, strict=True):
                actions.append((action, label, QRect(x, top_of_actions, w, self._action_h())))
                x += w + self.ACTION_GAP
            bottom = top_of_actions - self.STATUS_GAP
        if status.height():
            status_top = bottom - status.height()
            status = QRect(content.left(), status_top, content_w, status.height())
        return Bubble(msg, document, height, frame, content, status, tuple(actions))

    def code_frame(self, document: MessageDocument, block: CodeBlock, content_w: int) -> QRectF:
        """A code block's shaded area in document coordinates, its header strip included."""
        layout = document.doc.documentLayout()
        first = layout.blockBoundingRect(document.doc.findBlockByNumber(block.first))
        last = layout.blockBoundingRect(document.doc.findBlockByNumber(block.last))
        top = first.top() - CODE_HEADER_H - CODE_PAD
        return QRectF(0, top, content_w, last.bottom() + CODE_PAD - top)

    def copy_rects(self, bubble: Bubble) -> list[QRect]:
        """Where the bubble's Copy buttons are, one per code block, in viewport coordinates."""
        metrics = self._status_metrics
        w = max(metrics.horizontalAdvance("Copied"), metrics.horizontalAdvance("Copy")) + 12
        rects = []
        for block in bubble.document.code_blocks:
            frame = self.code_frame(bubble.document, block, bubble.content.width())
            x = bubble.content.left() + int(frame.right()) - w - 3
            y = bubble.content.top() + int(frame.top()) + 3
            rects.append(QRect(x, y, w, CODE_HEADER_H - 6))
        return rects
