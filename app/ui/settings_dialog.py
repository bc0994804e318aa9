"""The Settings dialog: the office nodes' addresses (one a line: a pool), the access
token (kept in the OS keyring), model and the office CA certificate, with "Test
connection" (each node: what it serves, how busy it is) before anything is saved;
on their own tabs, cloud planning (the OpenRouter key and the budget) and how the app
looks and opens (light or dark, the quick ask shortcut).
The numeric settings are laid out from their declarations in `app.core.settings`.

What IT's machine policy fixes or bounds is shown as such ("Set by your IT department"),
from the policy the workspace read at start: opening the dialog reads no file. Saving
goes through `Workspace.apply_settings`, which bounds again, so the dialog is not what
keeps the limits."""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.cloud_account import node_token_saved, save_key
from app.core.errors import SettingsError, SwitchboardError
from app.core.llm.backend import Health, NodeHealth
from app.core.policy import policy_file
from app.core.settings import BACKENDS, RunOn, Settings, describe
from app.core.workspace import Workspace, test_connection
from app.ui.bridge import Bridge
from app.ui.cloud_page import CloudPage
from app.ui.local_gpus_page import LocalGpusPage
from app.ui.theme import show_tone
from app.ui.widgets import it_note, policy_tooltip

# Shown on their own pages (Local GPUs, Cloud planning), not under Answers.
PAGED_FIELDS = ("local_ctx", "idle_unload_min", "monthly_budget_usd", "planner_max_tokens")
CLOUD_OFF_BY_IT = "Your IT department has turned cloud planning off on this computer."
THEME_NAMES = {"system": "System", "light": "Light", "dark": "Dark"}


def node_line(node: NodeHealth) -> str:
    """ "✔ ai-1:8080: llama.cpp, 4 at once, 8,192 tokens a request" for Test connection."""
    if not node.answering:
        return f"✘ {node.name}: {node.error or 'not answering'}"
    facts = [node.engine] if node.engine else []
    facts.append(f"{node.slots} at once" if node.slots > 1 else "one at a time")
    if node.context_tokens:
        facts.append(f"{node.context_tokens:,} tokens a request")
    return f"✔ {node.name}: {', '.join(facts)}"


class SettingsDialog(QDialog):
    def __init__(self, bridge: Bridge, workspace: Workspace,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.workspace = workspace
        self.setWindowTitle("Switchboard — Settings")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setMinimumWidth(520)
        settings = workspace.settings
        limits = workspace.limits()
        source = workspace.policy_source.path if workspace.policy_source else policy_file()
        policy_problems = workspace.policy_problems()

        self.node_urls = QPlainTextEdit("\n".join(settings.node_urls))
        self.node_urls.setPlaceholderText("https://ai-node.office.example:8443/v1\n"
                                          "(one address a line; more than one shares the "
                                          "work and takes over when one is down)")
        self.node_urls.setTabChangesFocus(True)
        self.node_urls.setFixedHeight(self.node_urls.fontMetrics().lineSpacing() * 4 + 12)
        # IT's office nodes: shown, all of them in use, not changeable.
        node_limit = limits.get("node_urls")
        self.node_note: QLabel | None = None
        if node_limit is not None:
            self.node_urls.setReadOnly(True)
            self.node_urls.setToolTip(policy_tooltip(node_limit, source))
            self.node_note = it_note(node_limit, source)
        self.local_fallback = QCheckBox("When no office node answers, use the model on my "
                                        "GPUs (Local GPUs)")
        self.local_fallback.setChecked(settings.local_fallback)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("Access token from IT (stored in the system key store)")
        self.remove_token = QCheckBox("Remove the saved token")
        self.remove_token.setVisible(False)  # until the key store says one is saved
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.setCurrentText(settings.model)
        model_edit = self.model.lineEdit()
        assert model_edit is not None  # an editable combo box always has one
        model_edit.setPlaceholderText("The node's first model")
        self.ca_bundle = QLineEdit(settings.ca_bundle)
        self.ca_bundle.setPlaceholderText("Only if IT gave you a certificate file")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_ca)
        ca_row = QHBoxLayout()
        ca_row.addWidget(self.ca_bundle, 1)
        ca_row.addWidget(browse)

        self.backend = QComboBox()
        self.backend.addItems(["Office node", "Local GPUs"])
        self.backend.setCurrentIndex(BACKENDS.index(settings.backend))
        self.backend.currentIndexChanged.connect(self._show_backend)
        backend_row = QFormLayout()
        backend_row.addRow("Run chats on:", self.backend)
        self.local_page = LocalGpusPage(bridge, settings)

        node_box = QGroupBox("Office node")
        self.node_box = node_box
        form = QFormLayout(node_box)
        form.addRow("Addresses:", self.node_urls)
        if self.node_note is not None:
            form.addRow("", self.node_note)
        form.addRow("Access token:", self.token)
        form.addRow("", self.remove_token)
        form.addRow("Model:", self.model)
        form.addRow("CA certificate:", ca_row)
        form.addRow("", self.local_fallback)
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test_connection)
        self.test_result = QLabel()
        self.test_result.setWordWrap(True)
        self.test_result.setTextFormat(Qt.TextFormat.PlainText)  # server text is not HTML
        form.addRow(self.test_button, self.test_result)

        advanced = QGroupBox("Answers")
        advanced_form = QFormLayout(advanced)
        self.numeric: dict[str, QSpinBox | QDoubleSpinBox] = {}
        for f in dataclasses.fields(Settings):
            if f.name in PAGED_FIELDS or type(f.default) not in (int, float):
                continue
            box: QSpinBox | QDoubleSpinBox = QSpinBox() if type(f.default) is int \
                else QDoubleSpinBox()
            if f.name.endswith("_s") and isinstance(box, QDoubleSpinBox):
                box.setDecimals(0)  # whole seconds: "30", not "30.00"
            box.setRange(f.metadata["min"], f.metadata["max"])
            box.setValue(getattr(settings, f.name))
            self.numeric[f.name] = box
            advanced_form.addRow(f.metadata["label"] + ":", box)

        self.error = QLabel()
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        show_tone(self.error, "error")
        self.error.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        chats = QWidget()
        chats_layout = QVBoxLayout(chats)
        chats_layout.addLayout(backend_row)
        chats_layout.addWidget(node_box)
        chats_layout.addWidget(self.local_page)
        chats_layout.addStretch(1)
        answers = QWidget()  # knobs most users never touch, on a tab of their own
        answers_layout = QVBoxLayout(answers)
        answers_layout.addWidget(advanced)
        answers_layout.addStretch(1)
        cloud_off = None
        if not workspace.policy.cloud_allowed:
            cloud_off = " ".join(policy_problems) or CLOUD_OFF_BY_IT
        self.cloud_page = CloudPage(bridge, settings, workspace.budget_overview,
                                    limits=limits, source=source, cloud_off=cloud_off)
        self.pages = QTabWidget()
        self.pages.addTab(chats, "Chats")
        self.pages.addTab(answers, "Answers")
        self.pages.addTab(self.cloud_page, "Cloud planning")
        self.pages.addTab(self._general_page(settings), "General")
        # A policy file that could not be read: say so where every tab shows it.
        self.policy_problem = QLabel(" ".join(policy_problems))
        self.policy_problem.setTextFormat(Qt.TextFormat.PlainText)
        show_tone(self.policy_problem, "error")
        self.policy_problem.setWordWrap(True)
        self.policy_problem.setVisible(bool(policy_problems))
        layout = QVBoxLayout(self)
        layout.addWidget(self.policy_problem)
        layout.addWidget(self.pages)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)

        self._show_backend()
        bridge.run(node_token_saved(), on_done=self._on_token_known)

    def _general_page(self, settings: Settings) -> QWidget:
        """How the app looks, and the shortcut that opens quick ask from any program."""
        self.theme = QComboBox()
        for value in describe("theme")["choices"]:
            self.theme.addItem(THEME_NAMES.get(value, value), value)
        self.theme.setCurrentIndex(max(self.theme.findData(settings.theme), 0))
        self.hotkey = QKeySequenceEdit(QKeySequence.fromString(
            settings.quick_ask_hotkey, QKeySequence.SequenceFormat.PortableText))
        self.hotkey.setMaximumSequenceLength(1)  # one chord, as a global shortcut is
        self.hotkey_clear = QPushButton("Clear")
        self.hotkey_clear.setToolTip("No shortcut: quick ask opens from the tray icon")
        self.hotkey_clear.clicked.connect(self.hotkey.clear)
        hotkey_row = QHBoxLayout()
        hotkey_row.addWidget(self.hotkey, 1)
        hotkey_row.addWidget(self.hotkey_clear)
        hotkey_note = QLabel("Click the field and press the keys. Clear it to have no "
                             "shortcut.")
        hotkey_note.setWordWrap(True)
        show_tone(hotkey_note, "note")
        page = QWidget()
        form = QFormLayout(page)
        form.addRow(describe("theme")["label"] + ":", self.theme)
        form.addRow(describe("quick_ask_hotkey")["label"] + ":", hotkey_row)
        form.addRow("", hotkey_note)
        return page

    def _show_backend(self) -> None:
        local = self.backend.currentIndex() == BACKENDS.index(RunOn.LOCAL_GPUS)
        self.node_box.setVisible(not local)
        self.local_page.setVisible(local)
        self.adjustSize()

    def _on_token_known(self, saved: bool) -> None:
        if saved:
            self.token.setPlaceholderText("A token is saved — leave empty to keep it")
        self.remove_token.setVisible(saved)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        """Enter in a field does not save and close the dialog, as it would by default:
        Save is pressed, or Enter on it when it has the focus."""
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) \
                and not isinstance(self.focusWidget(), QPushButton):
            event.accept()
            return
        super().keyPressEvent(event)

    def _browse_ca(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Office CA certificate", "",
                                              "Certificates (*.pem *.crt *.cer);;All files (*)")
        if path:
            self.ca_bundle.setText(path)

    def edited_settings(self) -> Settings:
        """The settings as the dialog shows them; raises SettingsError for a bad value."""
        values: dict[str, Any] = {"node_urls": self.node_urls.toPlainText(),
                                  "local_fallback": self.local_fallback.isChecked(),
                                  "model": self.model.currentText(),
                                  "ca_bundle": self.ca_bundle.text()}
        values.update({name: box.value() for name, box in self.numeric.items()})
        values.update(self.local_page.values(), backend=BACKENDS[self.backend.currentIndex()])
        values.update(self.cloud_page.values())
        hotkey = self.hotkey.keySequence().toString(QKeySequence.SequenceFormat.PortableText)
        values.update(theme=self.theme.currentData(), quick_ask_hotkey=hotkey)
        return self.workspace.settings.changed(**values)

    def edited_token(self) -> str | None:
        """The token to store: a new one, "" to remove it, or None to keep what's saved."""
        if self.remove_token.isChecked():
            return ""
        return self.token.text().strip() or None

    def test_connection(self) -> None:
        try:
            settings = self.edited_settings()
        except SettingsError as e:
            self.test_result.setText(e.user_text())
            return
        token = self.edited_token()

        self.test_button.setEnabled(False)
        self.test_result.setText("Testing…")
        self.bridge.run(test_connection(settings, token, self.workspace.policy),
                        on_done=self._on_tested, on_error=self._on_test_error)

    def _on_tested(self, health: Health) -> None:
        self.test_button.setEnabled(True)
        if len(health.nodes) > 1:
            self.test_result.setText("\n".join(node_line(n) for n in health.nodes))
        if health.ok:
            models = ", ".join(health.models) or "no models"
            if len(health.nodes) <= 1:
                latency = f" in {health.latency_ms:.0f} ms" if health.latency_ms else ""
                self.test_result.setText(f"✔ Connected{latency}. Models: {models}.")
            current = self.model.currentText()
            self.model.clear()
            self.model.addItems(health.models)
            self.model.setCurrentText(current or (health.models[0] if health.models else ""))
        elif len(health.nodes) <= 1:
            assert health.error is not None
            self.test_result.setText(f"✘ {health.error.user_text()}")

    def _on_test_error(self, error: BaseException) -> None:
        self.test_button.setEnabled(True)
        self.test_result.setText(f"✘ {error}")

    def save(self) -> None:
        try:
            settings = self.edited_settings()
        except SettingsError as e:
            self.error.setText(e.user_text())
            return
        cloud_key, token = self.cloud_page.edited_key(), self.edited_token()

        async def save_all() -> None:
            # The key first: if the key store refuses it, nothing is saved and the dialog
            # stays open saying why.
            await save_key(cloud_key)
            await self.workspace.apply_settings(settings, token)

        self.buttons.setEnabled(False)
        self.bridge.run(save_all(), on_done=self._on_saved, on_error=self._on_save_error)

    def _on_saved(self, _: object) -> None:
        self.accept()

    def reject(self) -> None:
        """Cancel, Escape or the window's close button: not while saving. The dialog
        closes when the save has finished, so the app hears of the new settings."""
        if self.buttons.isEnabled():
            super().reject()

    def _on_save_error(self, error: BaseException) -> None:
        self.buttons.setEnabled(True)
        text = error.user_text() if isinstance(error, SwitchboardError) else str(error)
        self.error.setText(text)
