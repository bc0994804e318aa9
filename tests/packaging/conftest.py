"""Shared by the packaging tests: the release that `packaging/build.py --test-certificate`
makes, once a session, exactly as CI's release check runs it (freeze, smoke-run, sign,
compile installer.iss under wine, verify); and fresh wine prefixes to install into.

The scripts in packaging/ are not a package (a PyPI package is called `packaging`), so
that folder is put on the path and they are imported by their own names."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "packaging"))

import inno  # noqa: E402
import signing  # noqa: E402

from tests.fixtures.desktop import desktop  # noqa: E402

VERSION = "7.8.9"  # not pyproject's: proves the build's version reaches everything it stamps


@dataclass(frozen=True)
class Release:
    out: Path
    setup: Path
    root_certificate: Path
    app_dir: Path  # the frozen app the setup carries
    work_dir: Path  # PyInstaller's work folder (the version resources are here)
    log: str


@pytest.fixture(scope="session")
def wine_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A wine prefix set up once (as Windows 10, which the installer requires), under
    Xvfb: setup.exe draws even when silent."""
    with desktop() as screen:
        prefix = tmp_path_factory.mktemp("wine") / "prefix"
        home = prefix.parent / "home"
        home.mkdir()
        env = {**inno.Wine(prefix).env(), **screen.env, "HOME": str(home)}
        subprocess.run(["wineboot", "-i"], env=env, check=True, capture_output=True,
                       timeout=300)
        subprocess.run(["wine", "winecfg", "-v", "win10"], env=env, check=True,
                       capture_output=True, timeout=120)
        subprocess.run(["wineserver", "-w"], env=env, check=True, timeout=120)
        yield prefix


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory, wine_template: Path) -> Release:
    out = tmp_path_factory.mktemp("release")
    env = {**os.environ, "WINEPREFIX": str(wine_template)}
    env.pop("SWITCHBOARD_SIGN_COMMAND", None)
    env.pop("SWITCHBOARD_SIGN_PFX", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "build.py"), "--test-certificate",
         "--version", VERSION, "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=1500)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    return Release(out, out / f"SwitchboardSetup-{VERSION}.exe",
                   out / signing.TEST_ROOT_NAME, out / "build" / "dist" / "Switchboard",
                   out / "build" / "pyinstaller", log)
