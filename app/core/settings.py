"""The user's settings, each declared once with its type, default and bounds.

Settings are a frozen dataclass: `Settings.load()` reads them (a corrupt file is moved
aside and defaults load; a bad value falls back to its default with a note), `changed()`
validates new values and `save()` writes them atomically. Secrets are never settings:
the office node's token lives in the OS keyring (see `secrets`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.core import paths
from app.core.errors import SettingsError

SCHEMA_VERSION = 1


def _setting(default: Any, label: str, *, min: float | None = None, max: float | None = None,
             kind: str = "", choices: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"label": label, "min": min, "max": max, "kind": kind,
                                            "choices": choices})


BACKENDS = ("office node", "local GPUs")


@dataclass(frozen=True, slots=True)
class Settings:
    backend: str = _setting("office node", "Run chats on", choices=BACKENDS)
    node_url: str = _setting("", "Office node address", kind="url")
    model: str = _setting("", "Model")
    ca_bundle: str = _setting("", "Office CA certificate (PEM file)", kind="file")
    connect_timeout_s: float = _setting(10.0, "Connection timeout (s)", min=1, max=120)
    first_token_timeout_s: float = _setting(180.0, "Time allowed for the first word (s)",
                                            min=5, max=3600)
    stall_timeout_s: float = _setting(60.0, "Time allowed between words (s)", min=2, max=600)
    max_tokens: int = _setting(2048, "Longest answer (tokens)", min=16, max=131072)
    temperature: float = _setting(0.7, "Creativity (temperature)", min=0, max=2)
    model_path: str = _setting("", "Model file on this computer (GGUF)", kind="file")
    local_ctx: int = _setting(0, "Local context length (0: the largest that fits)",
                              min=0, max=1_048_576)
    idle_unload_min: int = _setting(15, "Free the GPUs after this many idle minutes (0: never)",
                                    min=0, max=24 * 60)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(f, getattr(self, f.name))

    def changed(self, **values: Any) -> Settings:
        """A copy with `values` applied; raises SettingsError naming the first bad one."""
        unknown = set(values) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise SettingsError(f"unknown setting {sorted(unknown)[0]!r}")
        coerced = {name: _coerce(_field(name), value) for name, value in values.items()}
        return dataclasses.replace(self, **coerced)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path | None = None) -> None:
        path = path or paths.settings_file()
        doc = {"version": SCHEMA_VERSION, "settings": self.to_dict()}
        try:
            paths.atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        except OSError as e:
            from app.core.errors import StorageFailed

            raise StorageFailed(f"settings: {e.strerror or e}") from e

    @classmethod
    def load(cls, path: Path | None = None) -> tuple[Settings, list[str]]:
        """The saved settings and a list of problems found, in the user's words.

        Never raises for a bad file: a file that isn't valid JSON is kept aside as
        `settings.json.corrupt-<time>` and defaults load; a bad value gets its default.
        """
        path = path or paths.settings_file()
        problems: list[str] = []
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(), problems
        except OSError as e:
            return cls(), [f"Settings could not be read ({e.strerror}); using defaults."]
        try:
            doc = json.loads(raw)
            values = doc["settings"]
            if not isinstance(values, dict):
                raise TypeError("settings is not an object")
        except (ValueError, KeyError, TypeError):
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            path.replace(aside)
            return cls(), [f"The settings file was damaged; it was kept as {aside.name} "
                           "and default settings are in use."]
        good: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            try:
                good[f.name] = _coerce(f, values[f.name])
            except SettingsError as e:
                problems.append(f"{e.detail}; the default is in use.")
        return cls(**good), problems


def describe(name: str) -> dict[str, Any]:
    """Label, default and bounds of one setting, for the Settings dialog and the CLI."""
    f = _field(name)
    return {"name": name, "default": f.default, **f.metadata}


def _field(name: str) -> dataclasses.Field[Any]:
    for f in dataclasses.fields(Settings):
        if f.name == name:
            return f
    raise SettingsError(f"unknown setting {name!r}")


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    label = f.metadata["label"]
    want = type(f.default)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, str) and want is str:
        value = value.strip()
    if not isinstance(value, want) or isinstance(value, bool) != (want is bool):
        raise SettingsError(f"{label}: expected {want.__name__}, got {value!r}")
    _check(f, value)
    return value


def _check(f: dataclasses.Field[Any], value: Any) -> None:
    label, lo, hi = f.metadata["label"], f.metadata["min"], f.metadata["max"]
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(f"{label}: {value!r} is not a number")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise SettingsError(f"{label}: {value!r} is outside {lo:g}–{hi:g}")
    if f.metadata["choices"] and value not in f.metadata["choices"]:
        raise SettingsError(f"{label}: {value!r} is not one of {', '.join(f.metadata['choices'])}")
    if f.metadata["kind"] == "url" and value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SettingsError(f"{label}: {value!r} is not an http:// or https:// address")
