"""The document panel: the current chat's documents with their type, pages, status and
reading progress; each one's summary a click away, to copy or export as Markdown; and
"Ask about this document", which points the composer's next question at it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QProgressBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core import paths
from app.core.chat import ChatEvent, DocumentChanged, DocumentProgress
from app.core.history import Document
from app.ui.chat_controller import ChatController
from app.ui.widgets import FileDrops

DOCUMENT_ID = Qt.ItemDataRole.UserRole
STATUS_WORDS = {"reading": "reading…", "ready": "ready", "error": "could not be read",
                "cancelled": "stopped"}


def describe(document: Document) -> str:
    """ "report.pdf — PDF, 4 pages, ready", as the panel lists it."""
    facts = []
    if document.kind:
        facts.append(document.kind.upper())
    if document.pages:
        facts.append(f"{document.pages} page{'s' if document.pages != 1 else ''}")
    facts.append(STATUS_WORDS.get(document.status, document.status))
    return f"{document.name} — {', '.join(facts)}"


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

        self.title = QLabel("Documents")
        self.list = QListWidget()
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemDoubleClicked.connect(lambda _item: self.show_summary())
        self.list.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.list.setToolTip("Drop a file here to summarise it into this chat")
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.hide()
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
        layout.addWidget(self.progress)
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
        self.controller.call(self.controller.workspace.history.documents, chat_id,
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
            item = QListWidgetItem(describe(document))
            item.setData(DOCUMENT_ID, document.id)
            item.setToolTip(document.error or document.path)
            self.list.addItem(item)
            if selected is not None and document.id == selected.id:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(self.list.count() - 1)  # the newest
        if not any(d.status == "reading" for d in documents):
            self.progress.hide()
        self.title.setText(f"Documents ({len(documents)})" if documents else "Documents")
        self._update_buttons()

    def _on_event(self, event: ChatEvent) -> None:
        if isinstance(event, DocumentChanged) and event.document.chat_id == self.chat_id:
            self.reload()
        elif isinstance(event, DocumentProgress) and any(
                d.summary_message_id == event.message_id and d.status == "reading"
                for d in self.documents.values()):
            self.progress.show()
            self.progress.setValue(round(event.fraction * 100))
            self.progress.setFormat(event.text)

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
        history = self.controller.workspace.history
        message_id = document.summary_message_id

        def read() -> str:
            return next((m.content for m in history.messages(document.chat_id)
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
        history = self.controller.workspace.history
        message_id = document.summary_message_id

        def write() -> Path:
            text = next((m.content for m in history.messages(document.chat_id)
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

