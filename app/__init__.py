"""Switchboard: run an office's AI work on hardware the office owns.

`__version__` has one source: pyproject.toml's version, read from a checkout's file or the
installed package's metadata; a frozen build instead reads the version its build stamped
into the bundle.
"""

from __future__ import annotations

import os
import sys

# Written by packaging/switchboard.spec into the bundle, at _internal/app/VERSION.
STAMPED_VERSION_FILE = "VERSION"
UNKNOWN_VERSION = "0+unknown"


def _stamped_version() -> str | None:
    """The version a frozen build was stamped with (PyInstaller unpacks data under
    sys._MEIPASS), or None when this isn't a frozen build or the stamp is missing."""
    bundle = getattr(sys, "_MEIPASS", None)
    if not getattr(sys, "frozen", False) or not bundle:
        return None
    try:
        with open(os.path.join(bundle, "app", STAMPED_VERSION_FILE), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _installed_version() -> str | None:
    """pyproject.toml's version as installed (pip install)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("switchboard")
    except PackageNotFoundError:
        return None


def _checkout_version() -> str | None:
    """The version in the pyproject.toml beside `app/`, when that file is Switchboard's: a
    checkout's (an installed `app/` may sit beside another project's)."""
    import tomllib

    pyproject = os.path.join(os.path.dirname(os.path.dirname(__file__)), "pyproject.toml")
    try:
        with open(pyproject, "rb") as f:
            project = tomllib.load(f)["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None
    return str(project.get("version")) if project.get("name") == "switchboard" else None


def _version() -> str:
    # A checkout's own pyproject.toml before the installed metadata, which `pip install -e`
    # wrote once and which goes stale; reading it also spares a run from a checkout the
    # modules importlib.metadata brings.
    return _stamped_version() or _checkout_version() or _installed_version() or UNKNOWN_VERSION


def __getattr__(name: str) -> str:
    # Worked out on first use, not at import: every child process (the document reader,
    # the model runtime) imports this package, and reading package metadata would slow
    # each one's start.
    if name == "__version__":
        version = _version()
        globals()["__version__"] = version
        return version
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
