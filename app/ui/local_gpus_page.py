"""The Local GPUs part of Settings: the model file (chosen or downloaded), how it would
be split across this computer's GPUs (shown before anything loads), the context length
and when to free the GPUs."""

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
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from app.core import paths
from app.core.errors import SwitchboardError
from app.core.runtime.gguf_inspect import inspect_model
from app.core.runtime.gpu_split import plan_split, split_report
from app.core.runtime.gpus import inventory
from app.core.settings import Settings, describe
from app.ui.bridge import Bridge
from app.ui.download_dialog import DownloadDialog


def plan_text(model_path: str, n_ctx: int) -> str:
    """What the GPU split would do with this model here; reads the file's header."""
    if not model_path:
        return "Choose a model file, or download one."
    try:
        info = inspect_model(Path(model_path))
    except SwitchboardError as e:
        return e.user_text()
    devices = inventory()
    return split_report(plan_split(info, devices, n_ctx=n_ctx or None), info, devices)


class LocalGpusPage(QGroupBox):
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

        self.plan = QPlainTextEdit()
        self.plan.setReadOnly(True)
        self.plan.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.plan.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.plan.setMinimumHeight(120)

        form = QFormLayout(self)
        form.addRow("Model file:", row)
        form.addRow("Context length:", self.ctx)
        form.addRow("Free the GPUs after:", self.idle)
        form.addRow("Split plan:", self.plan)
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
        self.plan.setPlainText("Working out the split…")
        self.bridge.run(asyncio.to_thread(plan_text, self.model_path.text().strip(),
                                          self.ctx.value()),
                        on_done=self.plan.setPlainText)

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
