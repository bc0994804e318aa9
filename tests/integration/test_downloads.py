"""Model downloads against a real HTTP server on loopback that honours Range requests and
can drop the connection, ignore Range, serve corrupted bytes or send slowly."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.errors import DownloadFailed, NotEnoughDisk
from app.core.runtime import downloads
from app.core.runtime.downloads import ModelFile, RecommendedModel, download, download_model
from tests.fixtures.file_server import Knobs, serve_files

SIZE = 1_500_000
DATA = random.Random(0).randbytes(SIZE)
SHA256 = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server() -> Iterator[tuple[str, Knobs]]:
    with serve_files({"/model.gguf": DATA}) as served:
        yield served


def _get(url: str, dest: Path, calls: list[tuple[int, int | None]] | None = None, *,
         sha256: str | None = SHA256, expected_size: int | None = SIZE) -> Path:
    progress = (lambda done, total: calls.append((done, total))) if calls is not None \
        else (lambda done, total: None)
    return asyncio.run(download(f"{url}/model.gguf", dest, sha256=sha256,
                                expected_size=expected_size, progress=progress))


def test_full_download_checks_out_and_reports_progress(server: tuple[str, Knobs],
                                                       tmp_path: Path) -> None:
    url, knobs = server
    calls: list[tuple[int, int | None]] = []
    dest = _get(url, tmp_path / "models" / "model.gguf", calls)
    assert dest.read_bytes() == DATA
    assert not dest.with_suffix(".gguf.part").exists()
    assert calls[-1] == (SIZE, SIZE)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert knobs.ranges == [None]


def test_size_from_content_length_when_not_given(server: tuple[str, Knobs],
                                                 tmp_path: Path) -> None:
    url, _ = server
    calls: list[tuple[int, int | None]] = []
    dest = _get(url, tmp_path / "model.gguf", calls, sha256=None, expected_size=None)
    assert dest.read_bytes() == DATA
    assert all(total == SIZE for _, total in calls)


def test_interrupted_download_keeps_its_part_and_resumes(server: tuple[str, Knobs],
                                                         tmp_path: Path) -> None:
    url, knobs = server
    dest = tmp_path / "model.gguf"
    part = tmp_path / "model.gguf.part"
    knobs.drop_after = 600_000
    with pytest.raises(DownloadFailed, match="connection failed"):
        _get(url, dest)
    assert part.stat().st_size == 600_000
    assert not dest.exists()

    _get(url, dest)
    assert knobs.ranges == [None, "bytes=600000-"]
    assert dest.read_bytes() == DATA
    assert not part.exists()


def test_server_ignoring_range_restarts_cleanly(server: tuple[str, Knobs],
                                                tmp_path: Path) -> None:
    url, knobs = server
    dest = tmp_path / "model.gguf"
    (tmp_path / "model.gguf.part").write_bytes(DATA[:300_000])
    knobs.ignore_range = True
    _get(url, dest)
    assert knobs.ranges == ["bytes=300000-"]
    assert dest.read_bytes() == DATA


def test_complete_part_is_verified_and_kept(server: tuple[str, Knobs], tmp_path: Path) -> None:
    url, knobs = server
    (tmp_path / "model.gguf.part").write_bytes(DATA)
    dest = _get(url, tmp_path / "model.gguf", expected_size=None)  # server answers 416
    assert knobs.ranges == [f"bytes={SIZE}-"]
    assert dest.read_bytes() == DATA


def test_corrupted_download_is_deleted(server: tuple[str, Knobs], tmp_path: Path) -> None:
    url, knobs = server
    knobs.corrupt = True
    with pytest.raises(DownloadFailed) as failed:
        _get(url, tmp_path / "model.gguf")
    assert failed.value.detail == "the file is damaged (checksum mismatch)"
    assert list(tmp_path.iterdir()) == []


def test_not_enough_disk_is_refused_before_any_request(
        server: tuple[str, Knobs], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The one fake: a full disk can't be made here.
    url, knobs = server

    @dataclass
    class Usage:
        total: int = 10**12
        used: int = 10**12 - 100_000_000
        free: int = 100_000_000

    monkeypatch.setattr(downloads, "disk_usage", lambda _path: Usage())
    with pytest.raises(NotEnoughDisk) as refused:
        _get(url, tmp_path / "model.gguf")
    assert refused.value.detail == "0.2 GB needed, 0.1 GB free"
    assert knobs.ranges == []


def test_cancelling_keeps_the_part_for_later(server: tuple[str, Knobs], tmp_path: Path) -> None:
    url, knobs = server
    knobs.slow = True
    dest = tmp_path / "model.gguf"

    async def start_then_cancel() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(download(
            f"{url}/model.gguf", dest, sha256=SHA256, expected_size=SIZE,
            progress=lambda done, total: started.set()))
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(start_then_cancel())
    kept = (tmp_path / "model.gguf.part").stat().st_size
    assert 0 < kept < SIZE
    assert not dest.exists()

    knobs.slow = False
    _get(url, dest)
    assert knobs.ranges == [None, f"bytes={kept}-"]
    assert dest.read_bytes() == DATA


def test_split_model_downloads_every_part(server: tuple[str, Knobs], tmp_path: Path) -> None:
    url, knobs = server
    halves = DATA[:700_000], DATA[700_000:]
    knobs.files = {f"/m-0000{n}-of-00002.gguf": half for n, half in enumerate(halves, start=1)}
    model = RecommendedModel(
        name="test", size_bytes=SIZE, min_vram_mib=0, description="",
        parts=tuple(ModelFile(f"{url}/m-0000{n}-of-00002.gguf",
                              sha256=hashlib.sha256(half).hexdigest(), size_bytes=len(half))
                    for n, half in enumerate(halves, start=1)))
    calls: list[tuple[int, int | None]] = []
    first = asyncio.run(download_model(model, tmp_path, progress=lambda *a: calls.append(a)))
    assert first == tmp_path / "m-00001-of-00002.gguf"
    assert first.read_bytes() + (tmp_path / "m-00002-of-00002.gguf").read_bytes() == DATA
    assert calls[-1] == (SIZE, SIZE)


def test_recommended_models_are_official_qwen_q4_k_m() -> None:
    sizes = [model.size_bytes for model in downloads.RECOMMENDED_MODELS]
    assert sizes == sorted(sizes, reverse=True)
    for model in downloads.RECOMMENDED_MODELS:
        assert model.file_name.endswith(f"-00001-of-{len(model.parts):05d}.gguf")
        for part in model.parts:
            assert part.url.startswith("https://huggingface.co/Qwen/Qwen2.5-")
            assert "-q4_k_m-" in part.file_name
