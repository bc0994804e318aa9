"""The chat transcript: Markdown bubbles, streaming by appending, Copy buttons, cheap resizing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QPoint, QPointF, QRect, Qt
from PySide6.QtGui import (
    QAccessible,
    QColor,
    QFont,
    QFontDatabase,
    QGuiApplication,
    QPaintEvent,
    QRegion,
    QTextBlock,
    QTextDocument,
    QTextFormat,
)
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from app.core.history import Message
from app.ui.chat_colours import status_colour
from app.ui.chat_documents import DocumentCache
from app.ui.chat_refinement import RefinementScheduler
from app.ui.chat_stats import LayoutStats
from app.ui.chat_view import ChatModel, ChatView

pytestmark = pytest.mark.gui

ANSWER = """Here is **bold** text and `inline` code.

```python
def greet(name):
\treturn f"hello {name}"
```

See [the docs](https://example.com/docs).
"""


def msg(
    message_id: int,
    role: str = "assistant",
    content: str = "",
    status: str = "complete",
    error: str = "",
) -> Message:
    return Message(message_id, 1, role, content, status, error=error)  # type: ignore[arg-type]


def many_messages(n: int) -> list[Message]:
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append(msg(i, "user", f"Question {i}: how do I handle case {i} in the report?"))
        else:
            body = f"Answer {i}: use the **summary** tool, then check the totals. " * (1 + i % 6)
            if i % 7 == 1:
                body += f"\n\n```sh\necho {i}\n```\n"
            out.append(msg(i, "assistant", body))
    return out


@pytest.fixture
def view(qtbot: QtBot) -> ChatView:
    v = ChatView()
    qtbot.addWidget(v)
    v.resize(600, 400)
    v.show()
    qtbot.waitExposed(v)
    return v


def settle(qtbot: QtBot, view: ChatView) -> None:
    """Wait until every row is placed at the viewport's current width, and the rows on screen
    and the last row (where streamed text goes) at their exact heights."""
    model, delegate = view.chat_model, view.chat_delegate

    def placed_exactly(row: int) -> bool:
        index = model.index(row, 0)
        return delegate.exact_height(index) == view.visualRect(index).height()

    def settled() -> bool:
        QCoreApplication.processEvents()  # a scroll bar shown (queued by Qt) narrows the rows
        view.executeDelayedItemsLayout()  # a layout pass the view has scheduled runs now
        rows = model.rowCount()
        if rows == 0:
            return True
        last = view.visualRect(model.index(rows - 1, 0))
        if not last.isValid() or last.width() != view.viewport().width():
            return False
        middle, bottom = view.viewport().width() // 2, view.viewport().height() - 1
        top_row = view.indexAt(QPoint(middle, 0)).row()
        bottom_row = view.indexAt(QPoint(middle, bottom)).row()
        on_screen = range(max(top_row, 0), bottom_row + 1 if bottom_row >= 0 else rows)
        return all(placed_exactly(row) for row in [*on_screen, rows - 1])

    qtbot.waitUntil(settled, timeout=5000)


def test_model_changes_only_the_streamed_row(qtbot: QtBot) -> None:
    model = ChatModel()
    model.set_messages([msg(1, "user", "hi"), msg(2, content="", status="streaming")])
    assert model.row_of(2) == 1 and model.row_of(99) is None
    version = model.data(model.index(1, 0), ChatModel.VersionRole)

    with qtbot.waitSignal(model.dataChanged) as blocker:
        model.append_text(2, "Hel")
    top_left, bottom_right = blocker.args[0], blocker.args[1]
    assert (top_left.row(), bottom_right.row()) == (1, 1)
    model.append_text(2, "lo")
    assert model.data(model.index(1, 0), Qt.ItemDataRole.DisplayRole) == "Hello"
    assert model.data(model.index(1, 0), ChatModel.VersionRole) != version

    model.finish_message(2, status="interrupted", error="The office node stopped answering.")
    finished = model.message_at(1)
    assert (finished.content, finished.status) == ("Hello", "interrupted")
    assert model.data(model.index(1, 0), ChatModel.MessageRole) == finished

    with pytest.raises(KeyError):
        model.append_text(99, "x")
    with pytest.raises(ValueError):
        model.append_message(msg(1, "user", "dup"))
    model.clear()
    assert model.rowCount() == 0


def test_markdown_is_rendered_with_monospace_shaded_code(view: ChatView, qtbot: QtBot) -> None:
    view.chat_model.set_messages([msg(1, "user", "**not bold**"), msg(2, content=ANSWER)])
    settle(qtbot, view)
    delegate = view.chat_delegate

    doc = delegate.document(view.chat_model.index(1, 0))
    bold = [
        it.fragment()
        for block in _blocks(doc)
        for it in _fragments(block)
        if it.fragment().text() == "bold"
    ]
    assert bold and bold[0].charFormat().fontWeight() == QFont.Weight.Bold
    assert "**" not in doc.toPlainText()

    fence = QTextFormat.Property.BlockCodeFence
    code = [b for b in _blocks(doc) if b.blockFormat().hasProperty(fence)]
    assert [b.text() for b in code] == ["def greet(name):", '    return f"hello {name}"']
    fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()
    for block in code:
        fmt = block.begin().fragment().charFormat()
        assert fmt.fontFixedPitch() and fixed in fmt.fontFamilies()
        assert block.blockFormat().background().style() != Qt.BrushStyle.NoBrush
    # The Copy button copies the source's lines: the tab survives Qt's expansion to spaces.
    assert delegate.code_blocks(view.chat_model.index(1, 0)) == [
        'def greet(name):\n\treturn f"hello {name}"'
    ]

    # A user's prompt is shown as typed, not as Markdown.
    assert delegate.document(view.chat_model.index(0, 0)).toPlainText() == "**not bold**"


def test_adjacent_code_blocks_are_copied_separately(view: ChatView, qtbot: QtBot) -> None:
    # Qt's importer leaves no boundary between two fences that touch; the source does.
    view.chat_model.set_messages([msg(1, content="```\none\ntwo\n```\n```\nthree\n```")])
    settle(qtbot, view)
    index = view.chat_model.index(0, 0)
    assert view.chat_delegate.code_blocks(index) == ["one\ntwo", "three"]
    assert len(view.chat_delegate.copy_button_rects(index)) == 2


def test_no_resource_is_loaded_and_html_stays_text(view: ChatView, qtbot: QtBot) -> None:
    content = "![chart](https://tracker.example.com/pixel.png)\n\nUse <img src='http://x.example/a.png'>"
    view.chat_model.set_messages([msg(1, content=content)])
    settle(qtbot, view)
    doc = view.chat_delegate.document(view.chat_model.index(0, 0))
    assert "https://tracker.example.com/pixel.png" in doc.blocked  # type: ignore[attr-defined]
    assert "<img src='http://x.example/a.png'>" in doc.toPlainText()


def test_streaming_appends_without_rerendering(view: ChatView, qtbot: QtBot) -> None:
    model, delegate = view.chat_model, view.chat_delegate
    model.set_messages([msg(1, "user", "Write a report")])
    model.append_message(msg(2, content="", status="streaming"))
    settle(qtbot, view)
    index = model.index(1, 0)
    doc = delegate.document(index)
    renders = delegate.stats.full_renders

    chunks = [f"**part {i}** " + ("\n" if i % 25 == 24 else "") for i in range(200)]
    for i, chunk in enumerate(chunks):
        model.append_text(2, chunk)
        if i % 20 == 0:
            QCoreApplication.processEvents()  # paints and re-layouts in between, as in the app
    settle(qtbot, view)

    assert delegate.document(index) is doc  # the same document, grown
    assert doc.toPlainText() == "".join(chunks)
    assert delegate.stats.full_renders == renders

    model.finish_message(2, status="complete")
    # The streamed text stays on screen while the Markdown is laid out, a piece a tick.
    assert delegate.document(index) is doc and delegate.finishing
    qtbot.waitUntil(lambda: not delegate.finishing, timeout=5000)
    settle(qtbot, view)  # the finished answer placed at its new height
    assert delegate.stats.full_renders == renders + 1
    rendered = delegate.document(index)
    assert "**" not in rendered.toPlainText()  # Markdown now, rendered once
    delegate.document(index)
    assert delegate.stats.full_renders == renders + 1


def test_document_cache_is_bounded_but_keeps_streaming_answers(qtbot: QtBot) -> None:
    widget = QWidget()
    qtbot.addWidget(widget)
    stats = LayoutStats()
    cache = DocumentCache(widget, stats)
    streaming = cache.document_for(msg(0, content="Hel", status="streaming"), 1, keep=True)
    last = DocumentCache.DOCUMENTS + 20
    for i in range(1, last + 1):
        cache.document_for(msg(i, content=f"Answer {i}"), 1, keep=True)

    grown = cache.document_for(msg(0, content="Hello", status="streaming"), 2, keep=True)
    assert grown is streaming and grown.doc.toPlainText() == "Hello"  # appended, not evicted
    renders = stats.full_renders
    cache.document_for(msg(last, content=f"Answer {last}"), 1, keep=True)  # recent: kept
    assert stats.full_renders == renders
    cache.document_for(msg(1, content="Answer 1"), 1, keep=True)  # oldest: made way
    assert stats.full_renders == renders + 1

    # Built only to measure a row off screen: not kept, so it pushes nothing out.
    cache.document_for(msg(9999, content="Far above"), 1, keep=False)
    cache.document_for(msg(9999, content="Far above"), 1, keep=False)
    assert stats.full_renders == renders + 3


class PaintSpy(QObject):
    """Records the rectangles a widget repaints."""

    def __init__(self, widget: QWidget) -> None:
        super().__init__(widget)
        self.rects: list[QRect] = []
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.rects.append(cast(QPaintEvent, event).rect())
        return False


def test_a_chunk_repaints_only_the_lines_it_changed(view: ChatView, qtbot: QtBot) -> None:
    model, delegate = view.chat_model, view.chat_delegate
    delegate.refine_delay_ms = 60_000  # nothing else changes while this is measured
    model.set_messages(many_messages(300))
    lines = "".join(f"Line {i} of a long answer.\n" for i in range(12))
    model.append_message(msg(1000, content=lines + "The last", status="streaming"))
    settle(qtbot, view)
    index = model.index(300, 0)
    row = view.visualRect(index)
    passes = delegate.stats.layout_passes
    spy = PaintSpy(view.viewport())

    model.append_text(1000, " line")  # no new line: the row keeps its height
    qtbot.waitUntil(lambda: bool(spy.rects), timeout=1000)
    assert view.visualRect(index) == row
    line_h = view.fontMetrics().lineSpacing()
    painted = QRegion()
    for rect in spy.rects:
        painted += rect
    assert painted.boundingRect().top() > row.top() + 10 * line_h  # only the last lines
    assert painted.boundingRect().bottom() <= row.bottom()

    spy.rects.clear()
    model.append_text(1000, "\nand a line more")  # the row grows: no other row is laid out
    qtbot.waitUntil(lambda: bool(spy.rects), timeout=1000)
    assert view.visualRect(index).height() > row.height()
    assert delegate.exact_height(index) == view.visualRect(index).height()
    assert delegate.stats.layout_passes == passes  # nor the rows placed again
    bar = view.verticalScrollBar()
    assert view.is_at_bottom() and bar.value() == bar.maximum()
    painted = QRegion()
    for rect in spy.rects:
        painted += rect
    # Followed down by a line: the rest of the screen was scrolled, not painted again.
    assert painted.boundingRect().height() < 4 * line_h


def test_a_streamed_answer_leaves_the_screen_as_a_full_repaint_draws_it(
    view: ChatView, qtbot: QtBot
) -> None:
    model, delegate = view.chat_model, view.chat_delegate
    delegate.refine_delay_ms = 60_000
    model.set_messages(many_messages(300))
    model.append_message(msg(1000, content="", status="streaming"))
    settle(qtbot, view)
    # Words that grow as they stream ("part", then "partthe") and wrap to the next line.
    words = ["the", " report", " lists", " budgets", ",", " staff", " and", " part"]
    for i in range(400):
        model.append_text(1000, words[i % len(words)] + ("\n\n" if i % 60 == 59 else ""))
        QCoreApplication.processEvents()  # one update a chunk: strips painted, pixels scrolled
    settle(qtbot, view)
    QCoreApplication.processEvents()

    viewport = view.viewport()
    corner = viewport.mapTo(view.window(), QPoint(0, 0))
    shown = QGuiApplication.primaryScreen().grabWindow(view.window().winId()).toImage()
    shown = shown.copy(QRect(corner, viewport.size()))
    drawn = viewport.grab().toImage().convertToFormat(shown.format())  # painted whole, now
    assert shown == drawn


def test_copy_button_click_copies_exactly_the_code(view: ChatView, qtbot: QtBot) -> None:
    view.chat_model.set_messages([msg(1, "user", "How?"), msg(2, content=ANSWER)])
    settle(qtbot, view)
    QGuiApplication.clipboard().setText("before")
    index = view.chat_model.index(1, 0)
    rects = view.chat_delegate.copy_button_rects(index)
    assert len(rects) == 1 and view.viewport().rect().contains(rects[0])

    with qtbot.waitSignal(view.codeCopied) as blocker:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rects[0].center())
    expected = 'def greet(name):\n\treturn f"hello {name}"'
    assert blocker.args == [expected]
    assert QGuiApplication.clipboard().text() == expected

    # A click elsewhere in the bubble copies nothing.
    QGuiApplication.clipboard().setText("before")
    content = view.chat_delegate.content_rect(index)
    outside = content.topLeft() + QPoint(2, 4)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=outside)
    assert QGuiApplication.clipboard().text() == "before"


def test_link_click_is_reported_not_followed(view: ChatView, qtbot: QtBot) -> None:
    view.chat_model.set_messages([msg(1, content="See [the docs](https://example.com/docs) now")])
    settle(qtbot, view)
    index = view.chat_model.index(0, 0)
    doc = view.chat_delegate.document(index)
    block = doc.begin()
    offset = block.text().index("the docs") + 2
    layout = block.layout()
    line = layout.lineForTextPosition(offset)
    found: Any = line.cursorToX(offset)  # PySide returns (x, position)
    x = float(found[0] if isinstance(found, tuple) else found)
    point = layout.position() + QPointF(x, line.y() + line.height() / 2)
    pos = view.chat_delegate.content_rect(index).topLeft() + point.toPoint()

    with qtbot.waitSignal(view.linkActivated) as blocker:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert blocker.args == ["https://example.com/docs"]


def test_resizing_2000_messages_lays_out_only_rows_in_view(view: ChatView, qtbot: QtBot) -> None:
    model, delegate = view.chat_model, view.chat_delegate
    delegate.refine_delay_ms = 60_000  # keep background refinement out of this count
    model.set_messages(many_messages(2000))
    settle(qtbot, view)
    assert view.verticalScrollBar().value() == view.verticalScrollBar().maximum()

    before, passes = delegate.stats.layouts_done, delegate.stats.layout_passes
    view.resize(450, 400)
    settle(qtbot, view)
    assert delegate.stats.layouts_done - before < 40  # the rows on screen and a few beyond
    assert delegate.stats.layout_passes == passes + 1  # every row placed once
    last = model.index(1999, 0)
    assert delegate.exact_height(last) == view.visualRect(last).height()  # on screen: exact
    assert delegate.exact_height(model.index(5, 0)) is None  # far off screen: an estimate

    before = delegate.stats.layouts_done
    view.resize(600, 400)  # back to a width seen before: cached heights, hardly any layout
    settle(qtbot, view)
    assert delegate.stats.layouts_done - before < 100


def test_opening_a_chat_places_its_rows_once(view: ChatView, qtbot: QtBot) -> None:
    model, delegate = view.chat_model, view.chat_delegate
    delegate.refine_delay_ms = 60_000
    model.set_messages(many_messages(2000))
    settle(qtbot, view)  # the scroll bar shown: the width a long chat is read at

    passes = delegate.stats.layout_passes
    model.set_messages(many_messages(1500))
    view.scrollToBottom()  # as the main window does
    settle(qtbot, view)
    assert delegate.stats.layout_passes == passes + 1
    bar = view.verticalScrollBar()
    assert view.is_at_bottom() and bar.value() == bar.maximum()


def test_a_message_is_shown_at_the_top_when_asked(view: ChatView, qtbot: QtBot) -> None:
    model, delegate = view.chat_model, view.chat_delegate
    delegate.refine_delay_ms = 60_000
    model.set_messages(many_messages(2000))
    settle(qtbot, view)
    index = model.index(700, 0)  # far above: placed by an estimate until shown
    view.scrollTo(index, ChatView.ScrollHint.PositionAtTop)
    settle(qtbot, view)
    assert view.visualRect(index).top() == 0
    assert delegate.exact_height(index) == view.visualRect(index).height()
    assert not view.is_at_bottom()


def test_a_removed_message_leaves_no_gap(view: ChatView, qtbot: QtBot) -> None:
    model = view.chat_model
    model.set_messages([msg(1, "user", "Plan it"), msg(2, content="Step one"),
                        msg(3, content="Step two")])
    settle(qtbot, view)
    second = view.visualRect(model.index(1, 0))
    model.remove_message(2)  # a plan's step run again
    settle(qtbot, view)
    assert model.shown_at(1).content == "Step two"
    assert view.visualRect(model.index(1, 0)).top() == second.top()
    assert not view.visualRect(model.index(2, 0)).isValid()


def test_background_refinement_is_lazy_and_bounded(view: ChatView, qtbot: QtBot) -> None:
    model, delegate = view.chat_model, view.chat_delegate
    delegate.refine_delay_ms = 60_000
    model.set_messages(many_messages(2000))
    settle(qtbot, view)
    view.resize(450, 400)
    settle(qtbot, view)
    near, far = model.index(1900, 0), model.index(5, 0)
    assert delegate.exact_height(near) is None

    before, passes = delegate.stats.layouts_done, delegate.stats.layout_passes
    delegate.refine_delay_ms = 0
    delegate.set_focus_rows(range(1990, 2000))  # (re)start refinement around the screen
    ticks: list[object] = []
    delegate.rowsChanged.connect(ticks.append)
    qtbot.waitUntil(lambda: delegate.exact_height(near) is not None, timeout=5000)
    assert len(ticks) >= 2  # more than one tick: the work is spread out
    qtbot.waitUntil(lambda: not delegate.refining, timeout=5000)
    assert delegate.exact_height(far) is None  # beyond the refine radius: stays estimated
    assert delegate.stats.layout_passes == passes  # rows moved, not all placed again
    assert delegate.stats.layouts_done - before <= RefinementScheduler.RADIUS + 30


def test_status_line_is_measured_and_painted(view: ChatView, qtbot: QtBot) -> None:
    text = "The answer was cut off"
    view.chat_model.set_messages(
        [
            msg(1, content=text),
            msg(2, content=text, status="interrupted", error="The office node stopped answering."),
        ]
    )
    settle(qtbot, view)
    delegate = view.chat_delegate
    complete, interrupted = view.chat_model.index(0, 0), view.chat_model.index(1, 0)
    assert view.visualRect(interrupted).height() > view.visualRect(complete).height()
    status = delegate.status_text(view.chat_model.message_at(1))
    assert status.startswith("Interrupted — the answer is incomplete")
    assert "The office node stopped answering." in status

    image = view.viewport().grab().toImage()
    warning = QColor(status_colour("interrupted", view.palette()))

    def warm_pixels(rect: QRect) -> int:
        hits = 0
        for y in range(rect.top(), rect.bottom()):
            for x in range(rect.left(), rect.right(), 2):
                c = image.pixelColor(x, y)
                if abs(c.red() - warning.red()) + abs(c.green() - warning.green()) + abs(
                    c.blue() - warning.blue()
                ) < 60:
                    hits += 1
        return hits

    assert warm_pixels(view.visualRect(interrupted)) > 10
    assert warm_pixels(view.visualRect(complete)) == 0


def test_follows_the_stream_only_from_the_bottom(view: ChatView, qtbot: QtBot) -> None:
    model = view.chat_model
    model.set_messages(many_messages(300))
    model.append_message(msg(1000, content="", status="streaming"))
    settle(qtbot, view)
    bar = view.verticalScrollBar()
    assert view.is_at_bottom() and bar.value() == bar.maximum()

    for i in range(30):
        model.append_text(1000, f"Line {i} of the answer.\n")
        QCoreApplication.processEvents()
    settle(qtbot, view)  # the answer's row at its full height
    assert bar.maximum() > 0 and bar.value() == bar.maximum()  # followed the growing answer

    bar.setValue(bar.maximum() // 2)  # the user scrolls up to read
    assert not view.is_at_bottom()
    settle(qtbot, view)
    anchor = view.indexAt(QPoint(view.viewport().width() // 2, 0))
    top_before = view.visualRect(anchor).top()
    for i in range(30):
        model.append_text(1000, f"More {i}.\n")
        QCoreApplication.processEvents()
    settle(qtbot, view)
    assert bar.value() < bar.maximum()
    assert abs(view.visualRect(anchor).top() - top_before) <= 1  # the reader's row stays put

    view.scrollToBottom()
    assert bar.value() == bar.maximum()


def test_the_row_being_read_stays_put_while_rows_above_are_measured(
    view: ChatView, qtbot: QtBot
) -> None:
    model, delegate = view.chat_model, view.chat_delegate
    delegate.refine_delay_ms = 60_000
    model.set_messages(many_messages(2000))
    settle(qtbot, view)
    view.resize(450, 400)  # every row off screen is now an estimate at this width
    settle(qtbot, view)
    bar = view.verticalScrollBar()
    bar.setValue(bar.maximum() // 2)  # the user scrolls up to read
    settle(qtbot, view)
    reading = view.indexAt(QPoint(view.viewport().width() // 2, 0))
    top = view.visualRect(reading).top()
    above = model.index(reading.row() - 60, 0)
    assert delegate.exact_height(above) is None

    delegate.refine_delay_ms = 0
    delegate.set_focus_rows(range(reading.row(), reading.row() + 8))
    qtbot.waitUntil(lambda: delegate.exact_height(above) is not None, timeout=5000)
    qtbot.waitUntil(lambda: not delegate.refining, timeout=5000)
    settle(qtbot, view)
    assert abs(view.visualRect(reading).top() - top) <= 1
    assert not view.is_at_bottom()


def test_screen_readers_get_the_messages_as_a_list(view: ChatView, qtbot: QtBot) -> None:
    view.chat_model.set_messages([msg(1, "user", "Where is the report?"), msg(2, content="Here.")])
    settle(qtbot, view)
    transcript = QAccessible.queryAccessibleInterface(view)
    assert transcript is not None and transcript.role() == QAccessible.Role.List
    items = [transcript.child(i) for i in range(transcript.childCount())]
    assert [item.text(QAccessible.Text.Name) for item in items] == ["Where is the report?", "Here."]


def test_context_menu_copies_the_message(view: ChatView, qtbot: QtBot) -> None:
    view.chat_model.set_messages([msg(7, content=ANSWER)])
    settle(qtbot, view)
    menu = view.context_menu_for(view.chat_model.index(0, 0))
    actions = menu.actions()
    assert [a.text() for a in actions] == ["Copy message", "Regenerate"]
    with qtbot.waitSignal(view.messageCopied) as blocker:
        actions[0].trigger()
    assert blocker.args == [7]
    assert QGuiApplication.clipboard().text() == ANSWER
    with qtbot.waitSignal(view.actionRequested) as asked:
        actions[1].trigger()
    assert asked.args == ["regenerate", 7]


def _blocks(doc: QTextDocument) -> Iterator[QTextBlock]:
    block = doc.begin()
    while block.isValid():
        yield block
        block = block.next()


def _fragments(block: QTextBlock) -> Iterator[QTextBlock.iterator]:
    it = block.begin()
    while not it.atEnd():
        yield it
        it += 1


