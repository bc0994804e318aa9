"""The Local GPUs part of Settings: the model file (chosen or downloaded), how it would
be split across this computer's GPUs (shown before anything loads: a sentence, and the
figures behind "Show details"), the context length and when to free the GPUs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core import paths
from app.core.errors import SwitchboardError
from app.core.runtime.gguf_inspect import inspect_model
from app.core.runtime.gpu_split import plan_split, plan_summary, split_report
from app.core.runtime.gpus import inventory
from app.core.settings import Settings, describe
from app.ui.bridge import Bridge
from app.ui.download_dialog import DownloadDialog


def plan_text(model_path: str, n_ctx: int) -> tuple[str, str]:
    """What the GPU split would do with this model here, in a sentence (with the plan's
    warnings) and in detail ("" when there is no plan); reads the file's header."""
    if not model_path:
        return "Choose a model file, or download one.", ""
    try:
        info = inspect_model(Path(model_path))
    except SwitchboardError as e:
        return e.user_text(), ""
    devices = inventory()
    plan = plan_split(info, devices, n_ctx=n_ctx or None)
    summary = "\n".join((plan_summary(plan, devices), *plan.warnings))
    return summary, split_report(plan, info, devices)


class LocalGpusPage(QGroupBox):
    """The Local GPUs settings; `values()` gives them for saving. The split plan is worked
    out off the GUI thread whenever the model file or the context length changes."""

    def __init__(self, bridge: Bridge, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__("Local GPUs", parent)
        self.bridge = bridge
        self.model_path = QLineEdit(settings.model_path)
        self.model_path.setPlaceholderText("A .gguf model file")
        self.model_path.editingFinished.connect(self.refresh_plan)
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        self.download_button = QPushButton("Download…")
        self.download_button.clicked.connect(self._download)
        row = QHBoxLayout()
        row.addWidget(self.model_path, 1)
        row.addWidget(browse)
        row.addWidget(self.download_button)

        self.ctx = self._spin("local_ctx", settings.local_ctx)
        self.ctx.setSpecialValueText("the largest that fits")
        self.ctx.editingFinished.connect(self.refresh_plan)
        self.idle = self._spin("idle_unload_min", settings.idle_unload_min)
        self.idle.setSpecialValueText("never")
        self.idle.setSuffix(" min")

        self.plan = QLabel()
        self.plan.setWordWrap(True)
        self.plan.setTextFormat(Qt.TextFormat.PlainText)  # a file's name is not HTML
        self.plan.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_button = QToolButton()
        self.details_button.setText("Show details")
        self.details_button.setCheckable(True)
        self.details_button.setArrowType(Qt.ArrowType.RightArrow)
        self.details_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.details_button.setAutoRaise(True)
        self.details_button.toggled.connect(self._show_details)
        # The table in full: a label is as wide and tall as its text, so nothing is cut
        # off; the dialog grows to fit it.
        self.details = QLabel()
        self.details.setTextFormat(Qt.TextFormat.PlainText)
        self.details.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.hide()
        plan_box = QVBoxLayout()
        plan_box.setContentsMargins(0, 0, 0, 0)
        plan_box.addWidget(self.plan)
        plan_box.addWidget(self.details_button, 0, Qt.AlignmentFlag.AlignLeft)
        plan_box.addWidget(self.details)

        form = QFormLayout(self)
        form.addRow("Model file:", row)
        form.addRow("Context length:", self.ctx)
        form.addRow("Free the GPUs after:", self.idle)
        form.addRow("Split plan:", plan_box)
        self.refresh_plan()

    def _spin(self, name: str, value: int) -> QSpinBox:
        spec = describe(name)
        box = QSpinBox()
        box.setRange(int(spec["min"]), int(spec["max"]))
        box.setValue(value)
        box.setToolTip(spec["label"])
        return box

    def values(self) -> dict[str, object]:
        return {"model_path": self.model_path.text(), "local_ctx": self.ctx.value(),
                "idle_unload_min": self.idle.value()}

    def refresh_plan(self) -> None:
        self._show_plan(("Working out the split…", ""))
        self.bridge.run(asyncio.to_thread(plan_text, self.model_path.text().strip(),
                                          self.ctx.value()),
                        on_done=self._show_plan)

    def _show_plan(self, texts: tuple[str, str]) -> None:
        summary, details = texts
        self.plan.setText(summary)
        self.details.setText(details.rstrip("\n"))
        self.details_button.setVisible(bool(details))
        self._show_details(self.details_button.isChecked())

    def _show_details(self, shown: bool) -> None:
        self.details_button.setText("Hide details" if shown else "Show details")
        self.details_button.setArrowType(Qt.ArrowType.DownArrow if shown
                                         else Qt.ArrowType.RightArrow)
        self.details.setVisible(shown and bool(self.details.text()))
        self._grow_window()

    def _grow_window(self) -> None:
        """Make the window tall enough for the plan: a window's minimum size leaves out
        text that wraps (Qt's height-for-width), so its layout would squeeze the labels."""
        window = self.window()
        if window.isVisible() and window.hasHeightForWidth():
            height = window.heightForWidth(window.width())
            if height > window.height():
                window.resize(window.width(), height)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model file", str(Path.home()),
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.model_path.setText(path)
            self.refresh_plan()

    def _download(self) -> None:
        dialog = DownloadDialog(self.bridge, paths.data_dir() / "models", self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.downloaded.connect(self._downloaded)
        dialog.open()

    def _downloaded(self, path: str) -> None:
        self.model_path.setText(path)
        self.refresh_plan()
