"""Where Switchboard keeps its files: one place, over platformdirs.

`SWITCHBOARD_HOME` redirects everything at once (tests, portable installs): config,
data, logs and runtime state then live in sub-folders of that directory.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import platformdirs

APP_NAME = "Switchboard"
HOME_ENV = "SWITCHBOARD_HOME"


def _home_override() -> Path | None:
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    """User settings (settings.json)."""
    home = _home_override()
    return _ensure(home / "config" if home else platformdirs.user_config_path(APP_NAME, False))


def data_dir() -> Path:
    """Chats, the ledger and other user data."""
    home = _home_override()
    return _ensure(home / "data" if home else platformdirs.user_data_path(APP_NAME, False))


def log_dir() -> Path:
    home = _home_override()
    return _ensure(home / "logs" if home else platformdirs.user_log_path(APP_NAME, False))


def runtime_dir() -> Path:
    """Locks and sockets for this user's session."""
    home = _home_override()
    if home:
        return _ensure(home / "run")
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR (a bare X session, a service) platformdirs warns and
        # falls back to /tmp/runtime-<uid>, which is what we want anyway.
        warnings.simplefilter("ignore")
        return _ensure(platformdirs.user_runtime_path(APP_NAME, False))


def settings_file() -> Path:
    return config_dir() / "settings.json"


def history_db() -> Path:
    return data_dir() / "history.sqlite3"


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that a crash or a full disk leaves either the old or the new one.

    The text goes to a temporary file beside the target, is fsynced, then replaces it.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
