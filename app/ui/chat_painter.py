"""Paints one chat message as a bubble: its background, its rendered document, its code blocks'
frames and Copy buttons, and its status lines."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QAbstractTextDocumentLayout, QPainter, QPalette

from app.ui.chat_bubble import Bubble, BubbleGeometry, status_text
from app.ui.chat_colours import bubble_colour, code_shade, copy_button_border, status_colour
from app.ui.chat_markdown import CODE_HEADER_H, CODE_PAD


class BubblePainter:
    """Paints bubbles placed by a BubbleGeometry, in the palette it is given."""

    def __init__(self, geometry: BubbleGeometry) -> None:
        self._geometry = geometry

    def paint(
        self,
        painter: QPainter,
        bubble: Bubble,
        row_rect: QRect,
        palette: QPalette,
        visible: QRect,
        copied_block: int | None,
    ) -> None:
        """Paint `bubble` in its row; `copied_block` is the code block whose Copy button was
        just clicked, if any, and `visible` the part of the view being repainted."""
        msg, content = bubble.msg, bubble.content
        painter.save()
        # Stay inside the row (and inside what the view repaints, if it clips).
        painter.setClipRect(row_rect, Qt.ClipOperation.IntersectClip)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(bubble_colour(msg.role, palette))
        radius = self._geometry.RADIUS
        painter.drawRoundedRect(QRectF(bubble.frame), radius, radius)

        painter.save()
        painter.translate(content.topLeft())
        # Draw only what is repainted: a very long answer is mostly outside the viewport, and
        # a streamed chunk changes only its last lines.
        shown = QRectF(visible).translated(-QPointF(content.topLeft()))
        clip = QRectF(0, 0, content.width(), content.height()).intersected(shown)
        painter.setClipRect(clip, Qt.ClipOperation.IntersectClip)
        self._paint_code_frames(painter, bubble, palette)
        context = QAbstractTextDocumentLayout.PaintContext()
        text_palette = QPalette(palette)
        if msg.role == "system":
            muted = palette.color(QPalette.ColorRole.PlaceholderText)
            text_palette.setColor(QPalette.ColorRole.Text, muted)
        context.palette = text_palette
        context.clip = clip
        bubble.document.doc.documentLayout().draw(painter, context)
        painter.restore()

        for k, button in enumerate(self._geometry.copy_rects(bubble)):
            self._paint_copy_button(painter, button, k == copied_block, palette)
        if bubble.status.isValid():
            painter.setFont(self._geometry.status_font())
            painter.setPen(status_colour(msg.status, palette))
            flags = int(Qt.TextFlag.TextWordWrap) | int(Qt.AlignmentFlag.AlignLeft)
            painter.drawText(bubble.status, flags, status_text(msg))
        if bubble.actions:
            # Links in the palette's link colour: what can be done to this message.
            painter.setFont(self._geometry.status_font())
            painter.setPen(palette.color(QPalette.ColorRole.Link))
            for _action, label, where in bubble.actions:
                painter.drawText(where, int(Qt.AlignmentFlag.AlignLeft), label)
        painter.restore()

    def _paint_code_frames(self, painter: QPainter, bubble: Bubble, palette: QPalette) -> None:
        # The block background Qt paints covers the code lines only; the header strip (with the
        # Copy button) and the padding below are painted here so the block reads as one box.
        painter.save()
        painter.setBrush(code_shade(palette))
        for block in bubble.document.code_blocks:
            frame = self._geometry.code_frame(bubble.document, block, bubble.content.width())
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawRoundedRect(frame, 6, 6)
            if block.language:
                painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
                label = QRectF(frame.left() + CODE_PAD, frame.top(), 200, CODE_HEADER_H)
                painter.drawText(label, int(Qt.AlignmentFlag.AlignVCenter), block.language)
        painter.restore()

    def _paint_copy_button(
        self, painter: QPainter, rect: QRect, copied: bool, palette: QPalette
    ) -> None:
        painter.save()
        painter.setPen(copy_button_border(palette))
        painter.setBrush(palette.color(QPalette.ColorRole.Button))
        painter.drawRoundedRect(QRectF(rect).adjusted(0.5, 0.5, -0.5, -0.5), 4, 4)
        painter.setFont(self._geometry.status_font())
        painter.setPen(palette.color(QPalette.ColorRole.ButtonText))
        painter.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), "Copied" if copied else "Copy")
        painter.restore()
