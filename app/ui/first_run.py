"""The first-run guide: shown when Switchboard has nowhere to answer from yet
(`app.core.setup_check.needs_setup`), it asks where answers should come from (the office
node, or a model file for this computer's GPUs), tests that in plain words, and saves it.

Three steps on one small dialog: choose, test, done. The test is the Settings dialog's
"Test connection" (`app.core.workspace.test_connection`) for an office node, and the
header check of `inspect_model` for a model file; saving goes through
`Workspace.apply_settings`, which puts the access token in the OS key store. All of it
runs on the core loop through the Bridge: the GUI thread waits on neither network nor disk.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import SettingsError, SwitchboardError
from app.core.llm.backend import Health
from app.core.runtime.gguf_inspect import inspect_model
from app.core.settings import RunOn, Settings
from app.core.workspace import Workspace, test_connection
from app.ui.bridge import Bridge
from app.ui.settings_dialog import node_line
from app.ui.theme import show_tone

CHOOSE, TEST, DONE = range(3)  # the guide's steps, as pages of its stack
NO_ADDRESS = "Enter the office node's address (IT can tell you it), for example ai-node:8080."
NO_MODEL_FILE = "Choose the model file (.gguf) on this computer."
FIX_LATER = "Go Back to correct it, or Save it as it is and fix it later in Settings."


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.1f} MB"


def connection_text(health: Health) -> str:
    """Whether the office nodes answered, in words (each node's line when there are several)."""
    if health.ok:
        models = ", ".join(health.models) or "no models"
        if len(health.nodes) > 1:
            answering = sum(1 for n in health.nodes if n.answering)
            head = f"{answering} of {len(health.nodes)} office nodes answered"
        else:
            latency = f" in {health.latency_ms:.0f} ms" if health.latency_ms else ""
            head = f"the office node answered{latency}"
        lines = [f"✔ It works: {head}. Models: {models}."]
    else:
        why = health.error.user_text() if health.error else "no office node answered."
        lines = [f"✘ It doesn't work yet. {why}"]
    if len(health.nodes) > 1:
        lines += [node_line(n) for n in health.nodes]
    return "\n".join(lines)


async def check(workspace: Workspace, settings: Settings,
                token: str | None) -> tuple[bool, str]:
    """Whether the chosen place answers, and what to tell the user about it. `settings`
    are not saved yet; `token` is one typed (None: the one saved, if any)."""
    try:
        if settings.backend == RunOn.LOCAL_GPUS:
            info = await asyncio.to_thread(inspect_model, Path(settings.model_path))
            return True, (f"✔ It works: {info.name} is a model file Switchboard can use "
                          f"({info.quantisation}, {_size(info.file_size)}). It is loaded "
                          "onto this computer's GPUs the first time you ask.")
        health = await test_connection(settings, token, workspace.policy)
    except SwitchboardError as e:
        return False, f"✘ It doesn't work yet. {e.user_text()}"
    return health.ok, connection_text(health)


class FirstRunGuide(QDialog):
    """Choose where answers come from, test it, save it; "Later" leaves without saving.

    Signals:
        settingsSaved(): the choice (and any token) was saved; the app re-checks health.
        finished(int) and accepted() / rejected(): as any QDialog's; accepted is "Done"
            after saving, rejected is "Later", Escape or the window's close button.
    """

    settingsSaved = Signal()

    def __init__(self, bridge: Bridge, workspace: Workspace,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.workspace = workspace
        self.saving = False
        self._test_number = 0  # a result of an earlier test (before Back) is not shown
        self.setWindowTitle("Switchboard — Getting started")
        self.setMinimumWidth(480)
        self.pages = QStackedWidget()
        self.pages.addWidget(self._choose_page())
        self.pages.addWidget(self._test_page())
        self.pages.addWidget(self._done_page())

        self.later_button = QPushButton("Later")
        self.later_button.setToolTip("Close this guide; set Switchboard up later in Settings")
        self.later_button.clicked.connect(self.reject)
        self.back_button = QPushButton("Back")
        self.back_button.clicked.connect(self._back)
        self.next_button = QPushButton("Next")
        self.next_button.clicked.connect(self._forward)
        # Enter in the token or file field goes forward; never "Later" by accident.
        for button in (self.later_button, self.back_button):
            button.setAutoDefault(False)
        self.next_button.setDefault(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.later_button)
        buttons.addStretch(1)
        buttons.addWidget(self.back_button)
        buttons.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.pages)
        layout.addLayout(buttons)
        self._show_choice()
        self._show_step(CHOOSE)

    # The pages -----------------------------------------------------------------------

    def _choose_page(self) -> QWidget:
        page = QWidget()
        intro = _words("Switchboard answers your questions with an AI model. "
                       "Where should that model run?")
        self.use_node = QRadioButton("Office node: the office's shared AI server")
        self.use_local = QRadioButton("Local GPUs: a model file on this computer")
        self.use_node.setChecked(True)
        self.use_node.toggled.connect(self._show_choice)

        self.node_urls = QPlainTextEdit()
        self.node_urls.setPlaceholderText("ai-node.office.example:8080\n"
                                          "(one address a line, if IT gave you several)")
        self.node_urls.setTabChangesFocus(True)
        self.node_urls.setFixedHeight(self.node_urls.fontMetrics().lineSpacing() * 3 + 12)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("Only if IT gave you one (kept in the system key store)")
        self.node_box = QWidget()
        node_form = QFormLayout(self.node_box)
        node_form.addRow("Address:", self.node_urls)
        node_form.addRow("Access token:", self.token)

        self.model_path = QLineEdit()
        self.model_path.setPlaceholderText("A .gguf model file")
        browse = QPushButton("Choose…")
        browse.setAutoDefault(False)
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.model_path, 1)
        row.addWidget(browse)
        self.local_box = QWidget()
        QFormLayout(self.local_box).addRow("Model file:", row)

        self.choice_error = _words("")
        show_tone(self.choice_error, "error")
        layout = QVBoxLayout(page)
        for widget in (intro, self.use_node, self.use_local, self.node_box, self.local_box,
                       self.choice_error):
            layout.addWidget(widget)
        layout.addStretch(1)
        return page

    def _test_page(self) -> QWidget:
        page = QWidget()
        self.test_intro = _words("")
        self.test_button = QPushButton("Test again")
        self.test_button.setAutoDefault(False)
        self.test_button.clicked.connect(self.test)
        self.test_result = _words("")
        self.save_error = _words("")
        show_tone(self.save_error, "error")
        row = QHBoxLayout()
        row.addWidget(self.test_button)
        row.addStretch(1)
        layout = QVBoxLayout(page)
        layout.addWidget(self.test_intro)
        layout.addWidget(self.test_result)
        layout.addLayout(row)
        layout.addWidget(self.save_error)
        layout.addStretch(1)
        return page

    def _done_page(self) -> QWidget:
        page = QWidget()
        self.done_text = _words("")
        layout = QVBoxLayout(page)
        layout.addWidget(self.done_text)
        layout.addStretch(1)
        return page

    def _show_choice(self) -> None:
        self.node_box.setVisible(self.use_node.isChecked())
        self.local_box.setVisible(self.use_local.isChecked())
        self.choice_error.clear()

    def _show_step(self, step: int) -> None:
        self.pages.setCurrentIndex(step)
        self.later_button.setVisible(step != DONE)  # once saved, there is no "later"
        self.back_button.setVisible(step == TEST)
        self.next_button.setText(("Next", "Save", "Done")[step])

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model file", str(Path.home()),
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.model_path.setText(path)

    # What was chosen -----------------------------------------------------------------

    def chosen_settings(self) -> Settings:
        """The settings as they are, with the choice made here; raises SettingsError."""
        values: dict[str, Any]
        if self.use_local.isChecked():
            values = {"backend": RunOn.LOCAL_GPUS, "model_path": self.model_path.text()}
        else:
            values = {"backend": RunOn.OFFICE_NODE, "node_urls": self.node_urls.toPlainText()}
        return self.workspace.settings.changed(**values)

    def chosen_token(self) -> str | None:
        """A token typed for the office node, or None to keep (or go without) one."""
        return (self.token.text().strip() or None) if self.use_node.isChecked() else None

    # Going through the steps ---------------------------------------------------------

    def _forward(self) -> None:
        step = self.pages.currentIndex()
        if step == CHOOSE:
            self._to_test()
        elif step == TEST:
            self.save()
        else:
            self.accept()

    def _back(self) -> None:
        self._test_number += 1  # what the running test finds no longer matters
        self._show_step(CHOOSE)

    def _to_test(self) -> None:
        local = self.use_local.isChecked()
        typed = self.model_path.text() if local else self.node_urls.toPlainText()
        if not typed.strip():
            self.choice_error.setText(NO_MODEL_FILE if local else NO_ADDRESS)
            return
        try:
            settings = self.chosen_settings()
        except SettingsError as e:
            self.choice_error.setText(e.user_text())
            return
        self.choice_error.clear()
        self.save_error.clear()
        if local:
            self.test_intro.setText(f"Checking the model file {settings.model_path}…")
        else:
            self.test_intro.setText("Checking that Switchboard can reach the office node at "
                                    f"{', '.join(settings.node_urls)}…")
        self._show_step(TEST)
        self.test()

    def test(self) -> None:
        """Test the choice on the core loop; the result is shown when it comes."""
        try:
            settings = self.chosen_settings()
        except SettingsError as e:  # checked before this page showed; only a safeguard
            self.test_result.setText(f"✘ {e.user_text()}")
            return
        self._test_number += 1
        number, token, workspace = self._test_number, self.chosen_token(), self.workspace

        async def numbered() -> tuple[int, bool, str]:
            return (number, *await check(workspace, settings, token))

        self.test_button.setEnabled(False)
        self.test_result.setText("Testing…")
        self.bridge.run(numbered(), on_done=self._on_tested, on_error=self._on_test_error)

    def _on_tested(self, result: tuple[int, bool, str]) -> None:
        number, works, text = result
        if number != self._test_number:
            return  # the user went Back (or tested again) meanwhile
        self.test_button.setEnabled(True)
        self.test_result.setText(text if works else f"{text}\n\n{FIX_LATER}")

    def _on_test_error(self, error: BaseException) -> None:
        self.test_button.setEnabled(True)
        self.test_result.setText(f"✘ The test itself failed: {error}")

    def save(self) -> None:
        """Save the choice as Settings' Save does: the token to the key store, the rest
        to the settings file."""
        try:
            settings = self.chosen_settings()
        except SettingsError as e:
            self.save_error.setText(e.user_text())
            return
        self._set_saving(True)
        self.save_error.setText("Saving…")
        self.bridge.run(self.workspace.apply_settings(settings, self.chosen_token()),
                        on_done=self._on_saved, on_error=self._on_save_error)

    def _set_saving(self, saving: bool) -> None:
        self.saving = saving
        for button in (self.later_button, self.back_button, self.next_button,
                       self.test_button):
            button.setEnabled(not saving)

    def _on_saved(self, _: object) -> None:
        self._set_saving(False)
        self._test_number += 1  # a test still running has nothing left to say
        settings = self.workspace.settings
        if settings.backend == RunOn.LOCAL_GPUS:
            where = f"the model file {Path(settings.model_path).name} on this computer's GPUs"
        else:
            where = f"the office node at {', '.join(settings.node_urls)}"
        hotkey = settings.quick_ask_hotkey
        quick = f" (or press {hotkey} anywhere)" if hotkey else ""
        self.done_text.setText(
            f"✔ Saved. Switchboard answers with {where}.\n\n"
            "You can now ask from the Switchboard window, or from the tray icon: "
            f"choose Quick ask in its menu{quick}.\n\n"
            "You can change this at any time in Settings.")
        self._show_step(DONE)
        self.settingsSaved.emit()

    def _on_save_error(self, error: BaseException) -> None:
        self._set_saving(False)
        text = error.user_text() if isinstance(error, SwitchboardError) else str(error)
        self.save_error.setText(f"Not saved: {text}")

    def reject(self) -> None:
        """Later, Escape or the window's close button: not while saving, so the app
        hears of the new settings before the guide closes."""
        if not self.saving:
            super().reject()


def _words(text: str) -> QLabel:
    """A wrapped label of plain text (server and file names are not HTML)."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label
