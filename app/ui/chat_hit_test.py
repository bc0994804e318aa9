"""What a point on a chat message's bubble is over — a code block's Copy button or a link — and
the copying of a code block to the clipboard, with its button's brief "Copied"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from PySide6.QtCore import QObject, QPoint, QPointF, QTimer, Signal
from PySide6.QtGui import QGuiApplication

from app.ui.chat_bubble import Bubble, BubbleGeometry


def target_at(geometry: BubbleGeometry, bubble: Bubble, pos: QPoint) -> int | str | None:
    """The Copy button (its code block's number), the action ("action:regenerate") or the
    link URL at `pos`, or None."""
    for action, _label, rect in bubble.actions:
        if rect.contains(pos):
            return f"action:{action}"
    for k, button in enumerate(geometry.copy_rects(bubble)):
        if button.contains(pos):
            return k
    if not bubble.content.contains(pos):
        return None
    point = QPointF(pos - bubble.content.topLeft())
    return bubble.document.doc.documentLayout().anchorAt(point) or None


class CodeClipboard(QObject):
    """Copies a code block's text and remembers for a moment which button to label "Copied".

    Signals:
        codeCopied(str): the text just copied.
    """

    codeCopied = Signal(str)

    COPIED_MS: Final = 1500  # how long the button says "Copied"

    def __init__(self, repaint: Callable[[], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._repaint = repaint  # shows the button's label change
        self._copied: tuple[int, int] | None = None  # (message id, code block) just copied
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.COPIED_MS)
        self._timer.timeout.connect(self._clear)

    def copied_block(self, message_id: int) -> int | None:
        """The message's code block whose Copy button was just clicked, if any."""
        if self._copied is None or self._copied[0] != message_id:
            return None
        return self._copied[1]

    def copy(self, message_id: int, block: int, text: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self._copied = (message_id, block)
        self._timer.start()
        self._repaint()
        self.codeCopied.emit(text)

    def _clear(self) -> None:
        self._copied = None
        self._repaint()
