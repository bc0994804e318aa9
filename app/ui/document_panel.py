"""The document panel: the current chat's documents with their type, pages, status and,
while each is being read, its own progress bar; the status follows the reading ("reading…",
"summarising part 3 of 12", "combining the parts", "ready"), and the bar says the same
with the time left where there is room. Each one's summary is a click away, to copy or
export as Markdown; and "Ask about this document" points the composer's next question
at it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QGuiApplication, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core import paths
from app.core.chat import AnswerFinished, ChatEvent, DocumentChanged, DocumentProgress
from app.core.documents.progress import READING, stage_of, without_time
from app.core.history import Document
from app.ui.chat_controller import ChatController
from app.ui.widgets import FileDrops

DOCUMENT_ID = Qt.ItemDataRole.UserRole
# A row's reading progress, (fraction 0..1, words), while its document is read.
PROGRESS = Qt.ItemDataRole.UserRole + 1
STARTING = (0.0, READING.capitalize())  # before the first part is summarised
STATUS_WORDS = {"reading": READING, "ready": "ready", "error": "could not be read",
                "cancelled": "stopped"}
BAR_PADDING = 8  # pixels of the bar its text leaves free


def describe(document: Document, progress: str = "") -> str:
    """ "report.pdf — PDF, 12 pages, summarising part 3 of 12", as the panel lists it:
    while it is read, the stage its latest `progress` words name."""
    facts = []
    if document.kind:
        facts.append(document.kind.upper())
    if document.pages:
        facts.append(f"{document.pages} page{'s' if document.pages != 1 else ''}")
    if document.status == "reading" and progress:
        facts.append(stage_of(progress))
    else:
        facts.append(STATUS_WORDS.get(document.status, document.status))
    return f"{document.name} — {', '.join(facts)}"


def fitted(words: str, width: int, fits: Callable[[str], bool],
           elide: Callable[[str, int], str]) -> str:
    """The progress words the bar has room for: all of them, else the stage without the
    time left, else the stage cut short with an ellipsis."""
    stage = without_time(words)
    for candidate in (words, stage):
        if fits(candidate):
            return candidate
    return elide(stage, width)


class DocumentDelegate(QStyledItemDelegate):
    """Paints a row as its description and, while its document is being read, its own
    progress bar under it: one bar a document, however many are read at once."""

    BAR_HEIGHT = 18
    GAP = 3

    def sizeHint(self, option: QStyleOptionViewItem,
                 index: QModelIndex | QPersistentModelIndex) -> QSize:
        size = super().sizeHint(option, index)
        if index.data(PROGRESS) is not None:
            size.setHeight(size.height() + self.BAR_HEIGHT + 2 * self.GAP)
        return size

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        bar = self.bar(option, index)
        if bar is None:
            super().paint(painter, option, index)
            return
        # The whole row (selection included) with its text at the top; the bar below.
        row = QStyleOptionViewItem(option)
        row.displayAlignment = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop
        super().paint(painter, row, index)
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, option.widget)

    def bar(self, option: QStyleOptionViewItem,
            index: QModelIndex | QPersistentModelIndex) -> QStyleOptionProgressBar | None:
        """The progress bar drawn in the row at `index` (None where there is none)."""
        progress = index.data(PROGRESS)
        if progress is None:
            return None
        fraction, words = progress
        bar = QStyleOptionProgressBar()
        bar.rect = QRect(option.rect.left() + 4,
                         option.rect.bottom() - self.GAP - self.BAR_HEIGHT + 1,
                         option.rect.width() - 8, self.BAR_HEIGHT)
        bar.state = option.state
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = round(max(0.0, min(1.0, fraction)) * 1000)
        metrics = option.fontMetrics
        room = bar.rect.width() - BAR_PADDING
        bar.text = fitted(words, room, lambda text: metrics.horizontalAdvance(text) <= room,
                          lambda text, width: metrics.elidedText(
                              text, Qt.TextElideMode.ElideRight, width))
        bar.textVisible = True
        bar.textAlignment = Qt.AlignmentFlag.AlignCenter
        return bar


class DocumentPanel(QWidget):
    """Signals:
    fileDropped(object): a Path dropped on the panel, to be summarised into the chat.
    showSummary(int): the id of the message holding a document's summary.
    askRequested(object): the Document the user wants to ask about.
    exported(object): the Path a summary was written to.
    """

    fileDropped = Signal(object)
    showSummary = Signal(int)
    askRequested = Signal(object)
    exported = Signal(object)

    def __init__(self, controller: ChatController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.chat_id: int | None = None
        self.documents: dict[int, Document] = {}
        self._loads = 0  # answers to older loads (a chat left meanwhile) are dropped
        # Reading progress by summary message id, for documents this session is reading
        # (in any chat, so coming back to one shows its bar again).
        self.progress: dict[int, tuple[float, str]] = {}

        self.title = QLabel("Documents")
        self.list = QListWidget()
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemDoubleClicked.connect(lambda _item: self.show_summary())
        self.list.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.list.setToolTip("Drop a file here to summarise it into this chat")
        # Rows wrap to the panel's width: a row wider than the panel would make the list
        # scroll sideways, and the status and the bar's words would be cut off at its edge.
        self.list.setWordWrap(True)
        self.delegate = DocumentDelegate(self.list)
        self.list.setItemDelegate(self.delegate)
        self.buttons: dict[str, QToolButton] = {}
        row = QHBoxLayout()
        for key, text, slot in (("show", "Show summary", self.show_summary),
                                ("copy", "Copy", self.copy_summary),
                                ("export", "Export…", self.export_summary),
                                ("ask", "Ask…", self.ask)):
            button = QToolButton()
            button.setText(text)
            button.clicked.connect(slot)
            row.addWidget(button)
            self.buttons[key] = button
        self.buttons["export"].setToolTip("Export the summary as Markdown")
        self.buttons["ask"].setToolTip("Ask about this document: your next question is "
                                       "answered from it, with page references")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.list, 1)
        layout.addLayout(row)
        FileDrops(self, self.fileDropped.emit)
        controller.chatEvent.connect(self._on_event)
        self._update_buttons()

    # Loading -----------------------------------------------------------------------------

    def set_chat(self, chat_id: int | None) -> None:
        """Show `chat_id`'s documents (none for None)."""
        self.chat_id = chat_id
        self._loads += 1
        if chat_id is None:
            self._show(self._loads, [])
            return
        load = self._loads
        self.controller.call(self.controller.workspace.documents, chat_id,
                             on_done=lambda docs: self._show(load, docs))

    def reload(self) -> None:
        self.set_chat(self.chat_id)

    def _show(self, load: int, documents: list[Document]) -> None:
        if load != self._loads:
            return
        selected = self.selected()
        self.documents = {d.id: d for d in documents}
        self.list.clear()
        for document in documents:
            item = QListWidgetItem()
            item.setData(DOCUMENT_ID, document.id)
            self._describe(item, document)
            self.list.addItem(item)
            if selected is not None and document.id == selected.id:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(self.list.count() - 1)  # the newest
        self.title.setText(f"Documents ({len(documents)})" if documents else "Documents")
        self._update_buttons()

    def _on_event(self, event: ChatEvent) -> None:
        if isinstance(event, DocumentChanged):
            self._track(event.document)
            if event.document.chat_id == self.chat_id:
                self.reload()
        elif isinstance(event, DocumentProgress) and event.message_id in self.progress:
            self.progress[event.message_id] = (event.fraction, event.text)
            item = self.item_for(event.message_id)
            if item is not None:
                self._describe(item, self.documents[int(item.data(DOCUMENT_ID))])
        elif isinstance(event, AnswerFinished) and event.message.id in self.progress:
            # However reading ended, its bar goes now, before the reload that follows.
            del self.progress[event.message.id]
            item = self.item_for(event.message.id)
            if item is not None:
                item.setData(PROGRESS, None)

    def _describe(self, item: QListWidgetItem, document: Document) -> None:
        """Show `document` in its row: its status and, while it is read, its bar (and in
        the tooltip, the progress words in full: the bar may have room for fewer)."""
        message_id = document.summary_message_id
        progress = self.progress.get(message_id) if message_id is not None else None
        item.setText(describe(document, progress[1] if progress else ""))
        item.setData(PROGRESS, progress)
        item.setToolTip(document.error or (f"{document.path}\n{progress[1]}" if progress
                                           else document.path))

    def _track(self, document: Document) -> None:
        """Start or stop showing `document`'s progress, from its state as saved."""
        message_id = document.summary_message_id
        if message_id is None:
            return
        if document.status == "reading":
            self.progress.setdefault(message_id, STARTING)
        else:
            self.progress.pop(message_id, None)

    def item_for(self, message_id: int) -> QListWidgetItem | None:
        """The row of the document whose summary goes into message `message_id`."""
        for row in range(self.list.count()):
            item = self.list.item(row)
            document = self.documents.get(int(item.data(DOCUMENT_ID)))
            if document is not None and document.summary_message_id == message_id:
                return item
        return None

    def selected(self) -> Document | None:
        item = self.list.currentItem()
        return self.documents.get(int(item.data(DOCUMENT_ID))) if item is not None else None

    def _update_buttons(self) -> None:
        document = self.selected()
        has_summary = document is not None and document.status == "ready" \
            and document.summary_message_id is not None
        for key in ("show", "copy", "export"):
            self.buttons[key].setEnabled(has_summary)
        self.buttons["ask"].setEnabled(document is not None and document.pages > 0)

    # Actions -----------------------------------------------------------------------------

    def _with_summary(self, document: Document, then: Callable[[str], None]) -> None:
        """Read the summary's text on the core thread, then call `then(text)` here."""
        workspace = self.controller.workspace
        message_id = document.summary_message_id

        def read() -> str:
            return next((m.content for m in workspace.messages(document.chat_id)
                         if m.id == message_id), "")

        self.controller.call(read, on_done=then)

    def show_summary(self) -> None:
        document = self.selected()
        if document is not None and document.summary_message_id is not None:
            self.showSummary.emit(document.summary_message_id)

    def copy_summary(self) -> None:
        document = self.selected()
        if document is not None and document.summary_message_id is not None:
            self._with_summary(document, lambda text: QGuiApplication.clipboard().setText(text))

    def export_summary(self) -> None:
        document = self.selected()
        if document is None or document.summary_message_id is None:
            return
        suggested = str(Path.home() / f"{Path(document.name).stem} summary.md")
        target, _ = QFileDialog.getSaveFileName(self, "Export summary as Markdown",
                                                suggested, "Markdown (*.md)")
        if target:
            self.export_to(document, Path(target))

    def export_to(self, document: Document, target: Path) -> None:
        """Write `document`'s summary to `target` (atomically, on the core thread)."""
        workspace = self.controller.workspace
        message_id = document.summary_message_id

        def write() -> Path:
            text = next((m.content for m in workspace.messages(document.chat_id)
                         if m.id == message_id), "")
            paths.atomic_write_text(target, text.rstrip("\n") + "\n")
            return target

        self.controller.call(write, on_done=self.exported.emit)

    def ask(self) -> None:
        document = self.selected()
        if document is not None and document.pages > 0:
            self.askRequested.emit(document)

    def _menu(self, pos: QPoint) -> None:
        if self.list.itemAt(pos) is None:
            return
        menu = QMenu(self)
        for key, text in (("show", "Show summary"), ("copy", "Copy summary"),
                          ("export", "Export as Markdown…"), ("ask", "Ask about this document")):
            action = menu.addAction(text, self.buttons[key].click)
            action.setEnabled(self.buttons[key].isEnabled())
        menu.exec(self.list.viewport().mapToGlobal(pos))
        menu.deleteLater()

