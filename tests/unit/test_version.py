"""`app.__version__` has one source: pyproject.toml's version, read from a checkout's file
or the installed metadata, or in a frozen build the version its build stamped into the
bundle (tests/packaging freezes one)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import app

ROOT = Path(__file__).parents[2]


def pyproject_version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def test_the_version_is_pyprojects() -> None:
    assert app.__version__ == pyproject_version()
    assert app._checkout_version() == pyproject_version()


def test_an_install_reads_the_metadata_and_ignores_another_projects_pyproject(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An installed app/ in a folder that also holds some other project's pyproject.toml.
    (tmp_path / "app").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\nversion = "9.9"\n')
    monkeypatch.setattr(app, "__file__", str(tmp_path / "app" / "__init__.py"))
    monkeypatch.setattr(app, "_installed_version", lambda: "1.2.3")
    assert app._checkout_version() is None
    assert app._version() == "1.2.3"


def test_a_frozen_build_reads_the_version_it_was_stamped_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / app.STAMPED_VERSION_FILE).write_text("7.8.9\n", encoding="utf-8")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert app._version() == "7.8.9"


def test_a_frozen_build_without_a_stamp_falls_back_to_pyproject(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert app._version() == pyproject_version()


def test_a_stamp_outside_a_frozen_build_is_ignored(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / app.STAMPED_VERSION_FILE).write_text("7.8.9\n", encoding="utf-8")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)  # e.g. a test's
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert app._version() == pyproject_version()


def test_importing_app_and_reading_the_version_loads_no_qt_nor_package_metadata() -> None:
    # A checkout reads its own pyproject.toml: pip install -e's metadata goes stale, and
    # importlib.metadata would load modules the window's start has no other use for.
    code = ("import sys, app; print(app.__version__); "
            "print(sorted(m for m in sys.modules if m.startswith("
            "('PySide6', 'shiboken6', 'importlib.metadata'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout == f"{pyproject_version()}\n[]\n", result.stdout + result.stderr
