"""The main window: the list of chats, the chat itself, the composer and a status bar
that names the office node and model and meters the cloud planning budget."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.chat import (
    AnswerFinished,
    ChatEvent,
    DocumentProgress,
    MessageAdded,
    MessageChanged,
    MessageRemoved,
    TextAppended,
)
from app.core.errors import SwitchboardError
from app.core.history import Chat, Document, Message, SearchHit
from app.core.llm.backend import Health
from app.core.routing.plan import Plan
from app.core.routing.router import Mode, Override
from app.core.runtime.supervisor import RuntimeStatus, State
from app.core.settings import MODES, RunOn
from app.core.tier_status import TierState
from app.ui.budget_meter import BudgetMeter
from app.ui.chat_controller import ChatController
from app.ui.chat_list import ChatList
from app.ui.chat_view import ChatView
from app.ui.document_panel import DocumentPanel
from app.ui.plan_review import PlanReviewDialog
from app.ui.preset_picker import PresetPicker
from app.ui.resources import icon
from app.ui.widgets import Composer, ErrorBanner, FileDrops, TierBanner

BUSY_WORDS = "Wait for the current answer, or press Stop."
MODE_LABELS = {Mode.AUTO: "Auto", Mode.LOCAL_ONLY: "Local only",
               Mode.PLAN_WITH_CLOUD: "Plan with cloud"}


class MainWindow(QMainWindow):
    """The chats, the composer and, in its menus, everything the tray offers: the window
    is complete without a tray.

    Signals:
    usageRequested(): the user asked for the Usage page.
    settingsRequested(): the user asked for Settings.
    summarizeRequested(): the user asked to choose a file to summarise.
    quitRequested(): the user asked to quit Switchboard (not only to close the window).
    """

    usageRequested = Signal()
    settingsRequested = Signal()
    summarizeRequested = Signal()
    quitRequested = Signal()

    def __init__(self, controller: ChatController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.chat_id: int | None = None
        self.quit_on_close = False  # set where there is no tray to come back from
        self.setWindowTitle("Switchboard")
        self.setWindowIcon(icon("app"))
        self.resize(960, 680)

        self.chat_list = ChatList(self._search)
        self.chat_list.chatChosen.connect(self.open_chat)
        self.chat_list.hitChosen.connect(self.open_hit)
        self.chat_list.renameRequested.connect(self.rename_chat)
        self.chat_list.deleteRequested.connect(self.delete_chat)
        self.chat_list.exportRequested.connect(self.export_chat)
        self.new_chat_button = QPushButton("New chat")
        self.new_chat_button.clicked.connect(self.new_chat)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.new_chat_button)
        self.document_panel = DocumentPanel(controller)
        self.document_panel.fileDropped.connect(self.summarize)
        self.document_panel.showSummary.connect(self.show_message)
        self.document_panel.askRequested.connect(self.ask_about)
        self.document_panel.exported.connect(
            lambda path: self.statusBar().showMessage(f"Summary saved to {path}", 5000))
        left_split = QSplitter(Qt.Orientation.Vertical)
        left_split.addWidget(self.chat_list)
        left_split.addWidget(self.document_panel)
        left_split.setSizes([420, 200])
        left_layout.addWidget(left_split)

        self.chat_view = ChatView()
        self.chat_view.actionRequested.connect(self.act_on)
        # What failed outside any answer (an answer's own failure is in its bubble).
        self.error_banner = ErrorBanner()
        # The chat tier can't answer, or nothing is set up: said once, for as long as it lasts.
        self.tier_banner = TierBanner()
        self.tier_banner.settingsRequested.connect(self.settingsRequested)
        self.tier_banner.checkRequested.connect(controller.check_health)
        self.composer = Composer()
        self.composer.setMaximumHeight(120)
        self.composer.submitted.connect(self.send)
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self._send_or_stop)
        self.mode = QComboBox()
        self.mode.addItems([MODE_LABELS[m] for m in MODES])
        self.mode.setCurrentIndex(MODES.index(controller.workspace.settings.mode))
        self.mode.setToolTip("Auto: multi-step work is planned in the cloud (within your "
                             "budget) and carried out locally.\nLocal only: nothing goes to "
                             "the cloud.\nPlan with cloud: always plan in the cloud first.")
        self._limit_modes()
        self.mode.currentIndexChanged.connect(
            lambda index: controller.set_mode(MODES[index]))
        self.presets = PresetPicker(controller)
        # The model the office nodes answer with, from those they list.
        self.model_box = QComboBox()
        self.model_box.setToolTip("The model that answers (from those the office nodes have)")
        self.model_box.hide()
        self.model_box.activated.connect(
            lambda index: controller.set_model(self.model_box.itemText(index)))
        # This message only, whatever the mode: "Plan this" / "Just answer".
        self.send_options = QToolButton()
        self.send_options.setText("▾")
        self.send_options.setToolTip("Send this message another way")
        self.send_options.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        options = QMenu(self.send_options)
        self.plan_this = options.addAction(
            "Plan this in the cloud, then answer locally",
            lambda: self.send(self.composer.toPlainText(), Override.PLAN))
        self.just_answer = options.addAction(
            "Just answer, locally (no plan)",
            lambda: self.send(self.composer.toPlainText(), Override.ANSWER))
        if not controller.workspace.policy.cloud_allowed:
            self.plan_this.setEnabled(False)
            self.plan_this.setToolTip("Your IT department has turned cloud planning off.")
        self.send_options.setMenu(options)
        send_row = QHBoxLayout()
        send_row.setSpacing(2)
        send_row.addWidget(self.send_button, 1)
        send_row.addWidget(self.send_options)
        buttons = QVBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.presets)
        buttons.addWidget(self.model_box)
        buttons.addWidget(self.mode)
        buttons.addLayout(send_row)
        # "Asking about NAME ✕": the next question goes to that document; ✕ takes it back.
        self.asking: Document | None = None
        self.asking_chip = QToolButton()
        self.asking_chip.setToolTip("Your next question is answered from this document. "
                                    "Click to ask the chat instead.")
        self.asking_chip.clicked.connect(lambda: self.ask_about(None))
        self.asking_chip.hide()
        # "Editing your message ✕": Send replaces that prompt and what followed it.
        self.editing: Message | None = None
        self.editing_chip = QToolButton()
        self.editing_chip.setText("Editing your message  \u2715")
        self.editing_chip.setToolTip("Send replaces your message and the answer after it "
                                     "(the earlier versions are kept). Click to cancel.")
        self.editing_chip.clicked.connect(lambda: self.edit_message(None))
        self.editing_chip.hide()
        composer_row = QHBoxLayout()
        composer_row.addWidget(self.composer, 1)
        composer_row.addLayout(buttons)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.tier_banner)
        right_layout.addWidget(self.chat_view, 1)
        right_layout.addWidget(self.error_banner)
        right_layout.addWidget(self.asking_chip, 0, Qt.AlignmentFlag.AlignLeft)
        right_layout.addWidget(self.editing_chip, 0, Qt.AlignmentFlag.AlignLeft)
        right_layout.addLayout(composer_row)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([220, 740])
        self.setCentralWidget(splitter)

        self.node_label = QLabel("Office node: checking…")
        self.runtime_progress = QProgressBar()
        self.runtime_progress.setRange(0, 100)
        self.runtime_progress.setMaximumWidth(160)
        self.runtime_progress.hide()
        self.unload_button = QToolButton()
        self.unload_button.setText("Free GPUs")
        self.unload_button.setToolTip("Unload the model now; it loads again with the next "
                                      "question")
        self.unload_button.clicked.connect(controller.unload_model)
        self.unload_button.hide()
        self.statusBar().addPermanentWidget(self.runtime_progress)
        self.statusBar().addPermanentWidget(self.node_label)
        self.statusBar().addPermanentWidget(self.unload_button)
        self.budget_meter = BudgetMeter()
        self.statusBar().addPermanentWidget(self.budget_meter)
        self.usage_button = QToolButton()
        self.usage_button.setText("Usage")
        self.usage_button.setToolTip("Where this month's work ran, what it cost and saved")
        self.usage_button.clicked.connect(self.usageRequested.emit)
        self.statusBar().addPermanentWidget(self.usage_button)

        self._build_menus()

        self._in_bubble: SwitchboardError | None = None  # the failure its answer shows
        controller.chatEvent.connect(self._on_event)
        controller.busyChanged.connect(self._on_busy)
        controller.failed.connect(self._on_failed)
        controller.tierChanged.connect(self.show_tier)
        controller.healthChanged.connect(self._show_models)
        controller.chatsChanged.connect(self.reload_chats)
        FileDrops(self, self.summarize)  # drop a document anywhere on the window
        controller.runtimeChanged.connect(self._on_runtime)
        controller.budgetChanged.connect(self.budget_meter.set_reading)
        controller.planReview.connect(self.review_plan)
        self.plan_review: PlanReviewDialog | None = None

    # Chats -----------------------------------------------------------------------------

    def _limit_modes(self) -> None:
        """Modes IT's policy rules out (cloud planning off) are shown but can't be chosen."""
        limit = self.controller.workspace.limits().get("mode")
        items = self.mode.model()
        if limit is None or not isinstance(items, QStandardItemModel):
            return
        for row, mode in enumerate(MODES):
            if mode not in limit.choices:
                item = items.item(row)
                item.setEnabled(False)
                item.setToolTip(limit.why)
        self.mode.setToolTip(f"{limit.why}; work is planned on this computer (Local only).")

    def reload_chats(self) -> None:
        self.controller.call(self.controller.workspace.chats, on_done=self._show_chats)

    def _show_chats(self, chats: list[Chat]) -> None:
        self.chat_list.set_chats(chats)
        if self.chat_id is None and chats:
            self.open_chat(chats[0].id)

    def _search(self, query: str, on_done: Callable[[list[SearchHit]], None]) -> None:
        self.controller.call(self.controller.workspace.search, query, on_done=on_done)

    def open_hit(self, chat_id: int, message_id: int) -> None:
        """Open the chat of a search result and show its message."""
        self.open_chat(chat_id, show=message_id)

    def open_chat(self, chat_id: int, show: int | None = None) -> None:
        """Open a chat; `show`: a message of it to scroll to (else its end)."""
        if chat_id != self.chat_id:
            self.ask_about(None)
            self.edit_message(None)
        self.chat_id = chat_id
        self.document_panel.set_chat(chat_id)
        self.presets.set_chat(chat_id)
        self.chat_list.select(chat_id)
        self.controller.call(self.controller.workspace.messages, chat_id,
                             on_done=lambda messages: self._show_messages(chat_id, messages,
                                                                          show))

    def _show_messages(self, chat_id: int, messages: list[Message],
                       show: int | None = None) -> None:
        if chat_id != self.chat_id:
            return  # the user moved on while this loaded
        self.chat_view.chat_model.set_messages(messages)
        self.chat_view.scrollToBottom()
        if show is not None:
            self.show_message(show)

    def _build_menus(self) -> None:
        """File, Switchboard and Help: what the tray's menu has, and more, with their
        keys (the window's own actions show theirs too)."""
        menus = self.menuBar()
        file = menus.addMenu("&File")
        self._add(file, "&New chat", self.new_chat, QKeySequence.StandardKey.New)
        self._add(file, "&Summarise a document…", self.summarizeRequested.emit,
                  QKeySequence.StandardKey.Open)
        self._add(file, "&Export chat as Markdown…", self.export_chat, "Ctrl+Shift+E")
        file.addSeparator()
        self._add(file, "&Quit Switchboard", self.quitRequested.emit,
                  QKeySequence.StandardKey.Quit, "Ctrl+Q")
        edit = menus.addMenu("&Edit")
        self._add(edit, "&Search chats", self.focus_search, QKeySequence.StandardKey.Find)
        self._add(edit, "&Rename chat…", self.rename_chat, "F2")
        self._add(edit, "&Delete chat…", self.delete_chat, QKeySequence.StandardKey.Delete)
        self._add(edit, "&Instructions (presets)…", self.presets.manage)
        app = menus.addMenu("&Switchboard")
        self._add(app, "&Settings…", self.settingsRequested.emit,
                  QKeySequence.StandardKey.Preferences, "Ctrl+,")
        self._add(app, "&Usage…", self.usageRequested.emit)
        help_ = menus.addMenu("&Help")
        self._add(help_, "&Keyboard shortcuts", self.show_shortcuts, "F1")
        self._add(help_, "&About Switchboard", self.show_about)

    def _add(self, menu: QMenu, text: str, slot: Callable[[], object],
             *keys: QKeySequence.StandardKey | str) -> QAction:
        action = menu.addAction(text)
        shortcuts = [QKeySequence(k) for k in keys]
        action.setShortcuts([k for k in shortcuts if not k.isEmpty()])
        action.triggered.connect(lambda _=False: slot())  # not "checked" as an argument
        return action

    def shortcuts(self) -> list[tuple[str, str]]:
        """Each command with a key, as the menus and the window have them."""
        actions = [a for menu in self.menuBar().findChildren(QMenu) for a in menu.actions()]
        seen: dict[str, str] = {}
        for action in [*actions, *self.actions()]:
            text = action.text().replace("&", "").rstrip("…")
            if action.shortcuts() and text not in seen:
                seen[text] = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText)
                                       for k in action.shortcuts())
        return list(seen.items())

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td>{escape(what)}</td><td><b>{escape(keys)}</b></td></tr>"
                       for what, keys in [*self.shortcuts(),
                                          ("Send", "Enter"), ("New line", "Shift+Enter")])
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts",
                          f"<table cellspacing='6'>{rows}</table>",
                          QMessageBox.StandardButton.Close, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def show_about(self) -> None:
        from app import __version__

        QMessageBox.about(self, "About Switchboard", (
            f"<b>Switchboard {escape(__version__)}</b><p>Your office's AI, from the tray: "
            "chats and documents run on the office's own hardware, and the cloud only "
            "plans, within your budget.</p>"))

    def focus_search(self) -> None:
        self.chat_list.search_field.setFocus()
        self.chat_list.search_field.selectAll()

    def new_chat(self) -> None:
        self.controller.new_chat(lambda chat: self._opened_new(chat))

    def _opened_new(self, chat: Chat) -> None:
        self.chat_id = chat.id
        self.ask_about(None)
        self.edit_message(None)
        self.document_panel.set_chat(chat.id)
        self.presets.set_chat(chat.id)
        self.chat_list.select(chat.id)
        self.chat_view.chat_model.clear()
        self.composer.setFocus()

    def _chat_title(self, chat_id: int) -> str:
        return next((c.title for c in self.chat_list.chats if c.id == chat_id), "this chat")

    def rename_chat(self, chat_id: int | None = None) -> None:
        chat_id = chat_id if chat_id is not None else self.chat_id
        if chat_id is None:
            return
        title, ok = QInputDialog.getText(self, "Rename chat", "Name:",
                                         text=self._chat_title(chat_id))
        if ok and title.strip():
            self.controller.call(self.controller.workspace.rename_chat, chat_id, title.strip(),
                                 on_done=lambda _: self.reload_chats())

    def delete_chat(self, chat_id: int | None = None) -> None:
        chat_id = chat_id if chat_id is not None else self.chat_id
        if chat_id is None:
            return
        answer = QMessageBox.question(
            self, "Delete chat",
            f"Delete “{self._chat_title(chat_id)}” and all its messages?")
        if answer != QMessageBox.StandardButton.Yes:
            return
        if chat_id == self.chat_id:
            self.chat_id = None
            self.chat_view.chat_model.clear()
            self.ask_about(None)
            self.edit_message(None)
            self.document_panel.set_chat(None)
            self.presets.set_chat(None)
        self.controller.call(self.controller.workspace.delete_chat, chat_id,
                             on_done=lambda _: self.reload_chats())

    def export_chat(self, chat_id: int | None = None) -> None:
        """Save a chat (the open one by default) as a Markdown file the user chooses."""
        chat_id = chat_id if chat_id is not None else self.chat_id
        if chat_id is None:
            self.statusBar().showMessage("Open a chat to export it.", 5000)
            return
        name = "".join(c if c.isalnum() or c in " -_" else "_"
                       for c in self._chat_title(chat_id)).strip() or "chat"
        path, _ = QFileDialog.getSaveFileName(self, "Export chat as Markdown",
                                              str(Path.home() / f"{name}.md"),
                                              "Markdown (*.md)")
        if path:
            self.controller.call(
                self.controller.workspace.export_chat, chat_id, Path(path),
                on_done=lambda saved: self.statusBar().showMessage(
                    f"Chat saved to {saved}", 5000))

    # Sending ---------------------------------------------------------------------------

    def _send_or_stop(self) -> None:
        if self.controller.busy:
            self.controller.stop()
        else:
            self.send(self.composer.toPlainText())

    def send(self, prompt: str, override: Override | None = None) -> None:
        """Send a prompt; `override` is the user's choice for this message only."""
        if not prompt.strip() or self.controller.busy:
            return
        if not self.controller.tier.can_send:
            self.statusBar().showMessage(self.controller.tier.why_not, 5000)
            return
        self.error_banner.clear_error()
        if self.editing is not None:
            if self.controller.resend(self.editing.id, prompt):
                self.composer.clear()
                self.edit_message(None)
            return
        if self.chat_id is None:
            def send_in_new_chat(chat: Chat) -> None:
                self._opened_new(chat)
                self._send_to(chat.id, prompt, override)

            self.controller.new_chat(send_in_new_chat)
        else:
            self._send_to(self.chat_id, prompt, override)

    def _send_to(self, chat_id: int, prompt: str, override: Override | None = None) -> None:
        document = self.asking
        if document is not None and document.chat_id == chat_id:
            if self.controller.ask_about_document(chat_id, document.id, prompt):
                self.composer.clear()
                self.ask_about(None)
        elif self.controller.send(chat_id, prompt, override,
                                  pasted=self.composer.pasted_in(prompt)):
            self.composer.clear()

    def ask_about(self, document: Document | None) -> None:
        """Point the next question at `document` (None: at the chat again)."""
        self.asking = document
        self.asking_chip.setVisible(document is not None)
        if document is not None:
            self.asking_chip.setText(f"Asking about {document.name}  \u2715")
            self.composer.setFocus()

    def edit_message(self, message: Message | None) -> None:
        """Put a prompt of the chat back in the composer to edit and send again (None:
        stop editing)."""
        if message is None:
            if self.editing is not None:
                self.composer.clear()
            self.editing = None
            self.editing_chip.hide()
            return
        self.ask_about(None)
        self.editing = message
        self.editing_chip.show()
        self.composer.setPlainText(message.content)
        self.composer.moveCursor(self.composer.textCursor().MoveOperation.End)
        self.composer.setFocus()

    def act_on(self, action: str, message_id: int) -> None:
        """An action under a message: edit, regenerate, continue, retry-plan."""
        model = self.chat_view.chat_model
        row = model.row_of(message_id)
        if row is None:
            return
        if action == "edit":
            self.edit_message(model.message_at(row))
            return
        if not self.controller.tier.can_send:
            self.statusBar().showMessage(self.controller.tier.why_not, 5000)
            return
        started = {"regenerate": lambda: self.controller.resend(message_id),
                   "continue": lambda: self.continue_answer(message_id),
                   "retry-plan": lambda: self.retry_plan(self._last_plan())}[action]()
        if started is False:
            self.statusBar().showMessage(BUSY_WORDS, 5000)

    def show_message(self, message_id: int) -> None:
        """Select and scroll to a message of the open chat (a document's summary)."""
        row = self.chat_view.chat_model.row_of(message_id)
        if row is not None:
            index = self.chat_view.chat_model.index(row, 0)
            self.chat_view.setCurrentIndex(index)
            self.chat_view.scrollTo(index, self.chat_view.ScrollHint.PositionAtTop)

    # Documents --------------------------------------------------------------------------

    def summarize(self, path: Path, *, new_chat: bool = False) -> None:
        """Summarise a file into the open chat (into a new one if none is open, or
        `new_chat`: a file from the tray has nothing to do with the chat open last)."""
        if self.controller.busy:
            self.statusBar().showMessage(BUSY_WORDS, 5000)
            return
        self.error_banner.clear_error()
        if self.chat_id is None or new_chat:
            def in_new_chat(chat: Chat) -> None:
                self._opened_new(chat)
                self.controller.summarize(chat.id, path)

            self.controller.new_chat(in_new_chat)
        else:
            self.controller.summarize(self.chat_id, path)

    def _on_event(self, event: ChatEvent) -> None:
        model = self.chat_view.chat_model
        if isinstance(event, DocumentProgress):
            self.runtime_progress.setVisible(True)
            self.runtime_progress.setValue(round(event.fraction * 100))
            self.statusBar().showMessage(event.text, 10_000)
            return
        if isinstance(event, AnswerFinished):
            self.runtime_progress.setVisible(False)
            self._in_bubble = event.error
        if isinstance(event, MessageAdded) and event.message.chat_id == self.chat_id:
            model.append_message(event.message)
        elif isinstance(event, TextAppended) and model.row_of(event.message_id) is not None:
            model.append_text(event.message_id, event.text)
        elif isinstance(event, MessageRemoved) and model.row_of(event.message_id) is not None:
            model.remove_message(event.message_id)
        elif isinstance(event, AnswerFinished | MessageChanged) \
                and model.row_of(event.message.id) is not None:
            model.replace_message(event.message)

    def review_plan(self, plan: Plan, answer: Callable[[Plan | None], None]) -> None:
        """Show a plan before it runs; `answer` gets it as the user leaves it."""
        dialog = PlanReviewDialog(plan, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: answer(dialog.plan()))
        dialog.rejected.connect(lambda: answer(None))
        dialog.destroyed.connect(lambda: setattr(self, "plan_review", None))
        self.plan_review = dialog
        dialog.open()

    def _on_busy(self, busy: bool) -> None:
        self.send_button.setText("Stop" if busy else "Send")
        self._enable_send()

    def _enable_send(self) -> None:
        tier = self.controller.tier
        can = self.controller.busy or tier.can_send  # Stop is always offered
        self.send_button.setEnabled(can)
        self.send_button.setToolTip("" if can else tier.why_not)
        self.send_options.setEnabled(can and not self.controller.busy)

    def show_tier(self, tier: TierState) -> None:
        """The one state of the chat tier: status bar, banner and Send follow it."""
        self.node_label.setText(tier.line)
        self.tier_banner.show_state(tier)
        self._enable_send()

    def _show_models(self, health: Health) -> None:
        """Offer the models the office nodes list (more than one: a choice to make)."""
        workspace = self.controller.workspace
        settings = workspace.settings
        models = list(health.models)
        chosen = workspace.answering_model() or (models[0] if models else "")
        if chosen and chosen not in models:
            models.insert(0, chosen)  # chosen before; this node doesn't list it now
        self.model_box.blockSignals(True)
        self.model_box.clear()
        self.model_box.addItems(models)
        self.model_box.setCurrentText(chosen)
        self.model_box.blockSignals(False)
        self.model_box.setVisible(settings.backend == RunOn.OFFICE_NODE and len(models) > 1)
        limit = workspace.limits().get("model")
        self.model_box.setEnabled(limit is None or not limit.fixed)

    def _on_failed(self, error: SwitchboardError) -> None:
        if error is self._in_bubble:
            return  # its answer says so, with Retry: once is enough
        self.error_banner.show_error(error)

    def _last_plan(self) -> int | None:
        model = self.chat_view.chat_model
        for row in range(model.rowCount() - 1, -1, -1):
            if model.message_at(row).kind == "plan":
                return model.message_at(row).id
        return None

    def retry_plan(self, plan_message_id: int | None) -> bool:
        """Run again what did not finish of the plan; False when busy."""
        return plan_message_id is not None and self.controller.retry_plan(plan_message_id)

    def continue_answer(self, message_id: int) -> bool:
        """Continue an answer cut off part-way (on another node when there is one)."""
        model = self.chat_view.chat_model
        if model.row_of(message_id) is None:
            return True
        if not self.controller.continue_answer(message_id):
            return False
        model.finish_message(message_id, status="streaming")
        self.chat_view.scrollToBottom()
        return True

    def _on_runtime(self, status: RuntimeStatus) -> None:
        loading = status.state is State.LOADING
        self.runtime_progress.setVisible(loading)
        self.runtime_progress.setValue(round(status.progress * 100))
        # Stop a load that takes too long, or free the GPUs of a loaded model.
        self.unload_button.setText("Stop loading" if loading else "Free GPUs")
        self.unload_button.setVisible(status.state in (State.LOADING, State.READY))

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 — Qt's name
        # Closing the window keeps Switchboard in the tray (Quit is in the File menu and
        # the tray's); with no tray to come back from, closing it quits.
        event.ignore()
        if self.quit_on_close:
            self.quitRequested.emit()
        else:
            self.hide()
