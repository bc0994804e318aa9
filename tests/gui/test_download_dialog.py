"""Downloading a recommended model from the Local GPUs page, against a file server on
loopback: progress, a checked file that becomes the model, and Cancel keeping the part
(which needs the real core thread: the download must still be running to be cancelled)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.runtime import downloads
from app.core.runtime.downloads import ModelFile, RecommendedModel
from app.core.settings import Settings
from app.ui import download_dialog
from app.ui.download_dialog import DownloadDialog
from app.ui.local_gpus_page import LocalGpusPage
from tests.fixtures.file_server import Knobs, serve_files
from tests.gui.conftest import BuildApp
from tests.gui.sync_bridge import SyncBridge

DATA = random.Random(1).randbytes(2_000_000)


@pytest.fixture
def one_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RecommendedModel, Knobs]]:
    with serve_files({"/tiny-q4_k_m.gguf": DATA}) as (url, knobs):
        model = RecommendedModel(
            name="Tiny test model", size_bytes=len(DATA), min_vram_mib=1024,
            description="Served from this machine for the test.",
            parts=(ModelFile(f"{url}/tiny-q4_k_m.gguf", hashlib.sha256(DATA).hexdigest(),
                             len(DATA)),))
        monkeypatch.setattr(downloads, "RECOMMENDED_MODELS", (model,))
        monkeypatch.setattr(download_dialog, "RECOMMENDED_MODELS", (model,))
        yield model, knobs


def test_download_fills_in_the_model_file(qtbot: QtBot, sync_bridge: SyncBridge,
                                          one_model: tuple[RecommendedModel, Knobs]) -> None:
    page = LocalGpusPage(sync_bridge, Settings())
    qtbot.addWidget(page)
    page.download_button.click()
    downloader = page.findChild(DownloadDialog)
    assert downloader is not None and downloader.models.count() == 1
    values: list[int] = []
    downloader.progress.valueChanged.connect(values.append)
    with qtbot.waitSignal(downloader.downloaded, timeout=20_000) as done:
        qtbot.mouseClick(downloader.download_button, Qt.MouseButton.LeftButton)
    path = Path(done.args[0])
    assert path.read_bytes() == DATA and path.name == "tiny-q4_k_m.gguf"
    assert page.model_path.text() == str(path)
    assert values and values[-1] == 1000


def test_cancel_keeps_the_part_for_a_resume(qtbot: QtBot, tmp_path: Path,
                                            one_model: tuple[RecommendedModel, Knobs],
                                            build_app: BuildApp) -> None:
    app = build_app()
    _model, knobs = one_model
    knobs.slow = True  # 32 KB every 20 ms: time to press Cancel
    dialog = DownloadDialog(app.bridge, tmp_path)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.progress.value() > 50, timeout=10_000)
    assert dialog.download_button.text() == "Cancel"
    qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.download_button.text() == "Download", timeout=5000)
    assert "Cancelled" in dialog.status.text()
    part = tmp_path / "tiny-q4_k_m.gguf.part"
    assert part.exists() and 0 < part.stat().st_size < len(DATA)
    assert not (tmp_path / "tiny-q4_k_m.gguf").exists()
