"""Paths follow SWITCHBOARD_HOME; atomic writes never leave a half-written file."""

import errno
import os
from pathlib import Path

import pytest

from app.core import paths


def test_home_override_redirects_every_folder(switchboard_home: Path) -> None:
    for folder in (paths.config_dir(), paths.data_dir(), paths.log_dir(), paths.runtime_dir()):
        assert folder.is_dir()
        assert folder.is_relative_to(switchboard_home)
    assert paths.settings_file().parent == paths.config_dir()


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "settings.json"
    paths.atomic_write_text(target, "old")

    def full_disk(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        paths.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]  # no temp file left
