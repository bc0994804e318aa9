"""Downloading a recommended model: pick one, watch the progress, cancel; an interrupted
download resumes where it stopped the next time."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import SwitchboardError
from app.core.runtime.downloads import RECOMMENDED_MODELS, RecommendedModel, download_model
from app.ui.bridge import Bridge

GB = 1_000_000_000


class DownloadDialog(QDialog):
    """Signals:
    downloaded(str): the path of the model file to load (the first part of a split model).
    """

    downloaded = Signal(str)

    def __init__(self, bridge: Bridge, folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.folder = folder
        self._job: concurrent.futures.Future[Any] | None = None
        self._started = 0.0
        self.setWindowTitle("Download a model")
        self.setMinimumWidth(520)

        self.models = QListWidget()
        for model in RECOMMENDED_MODELS:
            item = QListWidgetItem(f"{model.name} — {model.size_bytes / GB:.1f} GB, "
                                   f"for {model.min_vram_mib / 1024:.0f} GB of GPU memory\n"
                                   f"{model.description}")
            item.setData(Qt.ItemDataRole.UserRole, model)
            self.models.addItem(item)
        self.models.setCurrentRow(0)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.hide()
        self.status = QLabel(f"Saved in {folder}")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self.start)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.download_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Recommended models (Qwen2.5 Instruct, Q4_K_M):"))
        layout.addWidget(self.models)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(buttons)

    def chosen(self) -> RecommendedModel:
        return self.models.currentItem().data(Qt.ItemDataRole.UserRole)

    def start(self) -> None:
        if self._job is not None:  # the button reads "Cancel" while downloading
            self.bridge.cancel(self._job)
            return
        model = self.chosen()
        self.progress.setValue(0)
        self.progress.show()
        self.status.setText(f"Downloading {model.name}…")
        self.download_button.setText("Cancel")
        self.models.setEnabled(False)
        self._started = time.monotonic()

        def progress(done: int, total: int | None) -> None:
            self.bridge.post(self._on_progress, (done, total))

        self._job = self.bridge.run(
            download_model(model, self.folder, progress=progress),
            on_done=self._on_done, on_error=self._on_error)
        self._job.add_done_callback(lambda f: self.bridge.post(self._on_ended, f.cancelled()))

    def _on_progress(self, done_total: tuple[int, int | None]) -> None:
        done, total = done_total
        total = total or self.chosen().size_bytes
        self.progress.setValue(int(1000 * done / total) if total else 0)
        elapsed = time.monotonic() - self._started
        rate = done / elapsed if elapsed > 1 else 0
        left = f", about {(total - done) / rate / 60:.0f} min left" if rate else ""
        self.status.setText(f"{done / GB:.2f} of {total / GB:.2f} GB{left}")

    def _on_done(self, path: Path) -> None:
        self.status.setText(f"Downloaded and checked: {path}")
        self.downloaded.emit(str(path))
        self.accept()

    def _on_error(self, error: BaseException) -> None:
        text = error.user_text() if isinstance(error, SwitchboardError) else str(error)
        self.status.setText(text)

    def _on_ended(self, cancelled: bool) -> None:
        self._job = None
        self.download_button.setText("Download")
        self.models.setEnabled(True)
        if cancelled:
            self.status.setText("Cancelled. The part already downloaded is kept; "
                                "Download carries on from there.")

    def reject(self) -> None:
        if self._job is not None:
            self.bridge.cancel(self._job)
        super().reject()
