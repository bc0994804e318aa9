"""Download a recommended model (or any file) over HTTP: resumable with Range requests,
checked against free disk space before it starts and against its SHA-256 at the end.

Qt-free and async: the UI runs it as a task on the core's loop and cancels that task to
stop; the partial file (`NAME.part`) is kept so the next attempt resumes where this one
stopped.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from shutil import disk_usage
from typing import BinaryIO

import httpx

from app.core.errors import DownloadFailed, NotEnoughDisk

Progress = Callable[[int, int | None], None]  # (bytes done, bytes in all or None)

# Room left free beyond the file itself, so the disk isn't filled to the last byte.
DISK_MARGIN = 200 * 1024 * 1024
CHUNK = 1024 * 1024
PROGRESS_INTERVAL = 0.1  # seconds: at most ~10 progress calls a second
# A model is tens of GB through a CDN: connecting should be quick, but a read may stall
# for a while on a slow link before it is worth giving up (and resuming later).
TIMEOUT = httpx.Timeout(connect=15.0, read=60.0, write=30.0, pool=15.0)


@dataclass(frozen=True, slots=True)
class ModelFile:
    url: str
    sha256: str | None  # None where the publisher's hash wasn't available to us
    size_bytes: int | None  # None where unknown: the server's Content-Length is used

    @property
    def file_name(self) -> str:
        return httpx.URL(self.url).path.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class RecommendedModel:
    name: str
    # A model split into parts: llama.cpp is given parts[0] and loads the rest from the
    # same folder, so every part is downloaded beside it.
    parts: tuple[ModelFile, ...]
    size_bytes: int  # all parts together; approximate where the parts' sizes are unknown
    min_vram_mib: int  # GPU memory in all for every layer at a 4096-token context
    description: str

    @property
    def file_name(self) -> str:
        """The file to load: the first part."""
        return self.parts[0].file_name


def _qwen_parts(size: str, count: int) -> tuple[ModelFile, ...]:
    # The official Qwen GGUF repositories split Q4_K_M files into parts of about 4 GB.
    # Their SHA-256 values (the `oid sha256:` of each file's LFS pointer on Hugging
    # Face) could not be looked up from where this was written, so they are None and
    # only the size is checked; fill them in from the repository's file pages.
    repo = f"https://huggingface.co/Qwen/Qwen2.5-{size.upper()}-Instruct-GGUF/resolve/main"
    return tuple(
        ModelFile(f"{repo}/qwen2.5-{size}-instruct-q4_k_m-{no:05d}-of-{count:05d}.gguf",
                  sha256=None, size_bytes=None)
        for no in range(1, count + 1)
    )


RECOMMENDED_MODELS: tuple[RecommendedModel, ...] = (
    RecommendedModel(
        name="Qwen2.5-32B-Instruct Q4_K_M",
        parts=_qwen_parts("32b", 5),
        size_bytes=19_900_000_000,
        min_vram_mib=22_528,
        description="The best answers: two 24 GB GPUs, or one with a short context.",
    ),
    RecommendedModel(
        name="Qwen2.5-14B-Instruct Q4_K_M",
        parts=_qwen_parts("14b", 3),
        size_bytes=8_990_000_000,
        min_vram_mib=10_240,
        description="Good answers on one 12–16 GB GPU.",
    ),
    RecommendedModel(
        name="Qwen2.5-7B-Instruct Q4_K_M",
        parts=_qwen_parts("7b", 2),
        size_bytes=4_680_000_000,
        min_vram_mib=6_144,
        description="Quick and light, for an 8 GB GPU.",
    ),
)


async def download_model(model: RecommendedModel, folder: Path, *, progress: Progress,
                         client: httpx.AsyncClient | None = None) -> Path:
    """Download every part of `model` into `folder`; return the path of the file to load."""
    present = sum(_size_or_zero(dest) + _size_or_zero(_part_path(dest))
                  for dest in (folder / file.file_name for file in model.parts))
    _check_disk(folder, max(0, model.size_bytes - present))
    done_before = 0

    def overall(done: int, _: int | None) -> None:
        progress(done_before + done, model.size_bytes)

    for file in model.parts:
        dest = folder / file.file_name
        if not dest.exists():
            await download(file.url, dest, sha256=file.sha256, expected_size=file.size_bytes,
                           progress=overall, client=client)
        done_before += dest.stat().st_size
    return folder / model.file_name


async def download(url: str, dest: Path, *, sha256: str | None, expected_size: int | None,
                   progress: Progress, client: httpx.AsyncClient | None = None) -> Path:
    """Download `url` to `dest`, resuming from `dest`.part if an earlier attempt stopped.

    Raises NotEnoughDisk before any request if the rest won't fit, and DownloadFailed
    when the network fails (the part is kept) or the file is damaged (the part is
    deleted). Cancel the task to stop; the part is kept.
    """
    part = _part_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = _size_or_zero(part)
    if expected_size is not None and have > expected_size:
        part.unlink()  # longer than the whole file: not a part of it
        have = 0
    if expected_size is not None:
        _check_disk(dest.parent, expected_size - have)

    hasher = hashlib.sha256()
    if have and sha256:
        await asyncio.to_thread(_hash_into, hasher, part)

    own_client = client is None
    if client is None:
        client = httpx.AsyncClient(timeout=TIMEOUT)
    # Model files are already compressed; identity keeps Range offsets in file bytes.
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        async with client.stream("GET", url, headers=headers, follow_redirects=True) as response:
            status = response.status_code
            if have and status == 416:
                pass  # nothing left to send: the part is already the whole file
            elif status in (200, 206):
                if status == 206 and _range_start(response) != have:
                    part.unlink(missing_ok=True)
                    raise DownloadFailed("the server sent the wrong piece of the file")
                if status == 200 and have:
                    # The server ignored Range and sends the whole file: start over.
                    have = 0
                    hasher = hashlib.sha256()
                if expected_size is None and "Content-Length" in response.headers:
                    expected_size = have + int(response.headers["Content-Length"])
                    _check_disk(dest.parent, expected_size - have)
                with part.open("ab" if have else "wb") as file:
                    await _receive(response, file, hasher, have, expected_size, progress)
                    file.flush()
                    await asyncio.to_thread(os.fsync, file.fileno())
            else:
                raise DownloadFailed(f"the server answered {status} {response.reason_phrase}")
    except httpx.HTTPError as error:
        raise DownloadFailed(f"the connection failed: {error}") from error
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise NotEnoughDisk("the disk filled up during the download") from error
        raise DownloadFailed(f"the file couldn't be written: {error.strerror or error}") from error
    finally:
        if own_client:
            await client.aclose()

    size = part.stat().st_size
    if expected_size is not None and size < expected_size:
        raise DownloadFailed(f"the server stopped early, at {_gb(size)} of {_gb(expected_size)}")
    if (expected_size is not None and size != expected_size) or (
            sha256 and hasher.hexdigest() != sha256.lower()):
        part.unlink()
        raise DownloadFailed("the file is damaged (checksum mismatch)")
    os.replace(part, dest)
    _fsync_folder(dest.parent)
    progress(size, size)
    return dest


async def _receive(response: httpx.Response, file: BinaryIO, hasher: hashlib._Hash,
                   done: int, total: int | None, progress: Progress) -> None:
    last = 0.0
    # Chunks as they arrive, unbuffered, so every byte received before a failure is kept.
    async for chunk in response.aiter_bytes():
        file.write(chunk)
        hasher.update(chunk)
        done += len(chunk)
        now = time.monotonic()
        if now - last >= PROGRESS_INTERVAL:
            progress(done, total)
            last = now


def _range_start(response: httpx.Response) -> int | None:
    # "Content-Range: bytes 100-199/200"
    value = response.headers.get("Content-Range", "")
    unit, _, rest = value.partition(" ")
    start = rest.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def _check_disk(folder: Path, remaining: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = disk_usage(folder).free
    if remaining + DISK_MARGIN > free:
        raise NotEnoughDisk(f"{_gb(remaining + DISK_MARGIN)} needed, {_gb(free)} free")


def _hash_into(hasher: hashlib._Hash, path: Path) -> None:
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            hasher.update(chunk)


def _part_path(dest: Path) -> Path:
    return dest.with_suffix(dest.suffix + ".part")


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _fsync_folder(folder: Path) -> None:
    # So the rename survives a power cut; folders can't be opened for this on Windows.
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _gb(size: int) -> str:
    return f"{size / 1e9:.1f} GB"
