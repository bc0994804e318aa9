"""The user's settings, each declared once with its type, default and bounds.

Settings are a frozen dataclass: `Settings.load()` reads them (a corrupt file is moved
aside and defaults load; a bad value falls back to its default with a note; a file from a
newer Switchboard is read as far as this one understands it and left alone), `changed()`
validates new values and `save()` writes them atomically. Secrets are never settings:
the office node's token lives in the OS keyring (see `secrets`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.core import paths
from app.core.errors import SettingsError, StorageFailed
from app.core.routing.router import Mode

SCHEMA_VERSION = 1


def _setting(default: Any, label: str, *, min: float | None = None, max: float | None = None,
             kind: str = "", choices: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"label": label, "min": min, "max": max, "kind": kind,
                                            "choices": choices})


class RunOn(StrEnum):
    """Where chats run: the office's nodes, or this computer's GPUs."""

    OFFICE_NODE = "office node"
    LOCAL_GPUS = "local GPUs"


class Theme(StrEnum):
    """How the windows look: as the system does, or always light or dark."""

    SYSTEM = "system"
    LIGHT = "light"
    DARK = "dark"


BACKENDS = tuple(RunOn)
MODES = tuple(Mode)
THEMES = tuple(Theme)


@dataclass(frozen=True, slots=True)
class Settings:
    backend: str = _setting(RunOn.OFFICE_NODE, "Run chats on", choices=BACKENDS)
    mode: str = _setting(Mode.AUTO, "Planning", choices=MODES)
    # The office nodes, in the order to prefer when they are equally busy.
    node_urls: tuple[str, ...] = _setting((), "Office node addresses", kind="url")
    # When no office node answers, run on the Local GPUs (if a model is chosen).
    local_fallback: bool = _setting(False, "Use my GPUs when no office node answers")
    model: str = _setting("", "Model")
    ca_bundle: str = _setting("", "Office CA certificate (PEM file)", kind="file")
    connect_timeout_s: float = _setting(10.0, "Connection timeout (s)", min=1, max=120)
    # How long a node may take to start its reply (it sends that at once, before reading
    # the prompt): longer, and it is stuck, and the request moves to another node.
    first_byte_timeout_s: float = _setting(30.0, "Time allowed for a node to take a request (s)",
                                           min=1, max=600)
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
    monthly_budget_usd: float = _setting(0.0, "Cloud planning budget a month (USD; 0: off)",
                                         min=0, max=100_000)
    planner_model: str = _setting("anthropic/claude-sonnet-4.5", "Cloud planner model")
    planner_max_tokens: int = _setting(2048, "Longest plan (tokens)", min=64, max=32768)
    review_plans: bool = _setting(False, "Show each plan before it runs, to edit it")
    theme: str = _setting(Theme.SYSTEM, "Appearance", choices=THEMES)
    # Opens quick ask from anywhere; "" turns it off. Qt's portable key text.
    quick_ask_hotkey: str = _setting("Ctrl+Alt+Space", "Quick ask shortcut (anywhere)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(f, getattr(self, f.name))

    @property
    def node_url(self) -> str:
        """The first office node's address ("" when none is set up)."""
        return self.node_urls[0] if self.node_urls else ""

    def changed(self, **values: Any) -> Settings:
        """A copy with `values` applied; raises SettingsError naming the first bad one."""
        unknown = set(values) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise SettingsError(f"unknown setting {sorted(unknown)[0]!r}")
        coerced = {name: _coerce(_field(name), value) for name, value in values.items()}
        return dataclasses.replace(self, **coerced)

    def to_dict(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}

    def save(self, path: Path | None = None) -> None:
        path = path or paths.settings_file()
        doc = {"version": SCHEMA_VERSION, "settings": self.to_dict()}
        try:
            paths.atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        except OSError as e:
            raise StorageFailed(f"settings: {e.strerror or e}") from e

    @classmethod
    def load(cls, path: Path | None = None) -> tuple[Settings, list[str]]:
        """The saved settings and a list of problems found, in the user's words.

        Never raises: a file that isn't valid JSON is kept aside as
        `settings.json.corrupt-<time>` and defaults load; a bad value gets its default; a
        file saved by a newer Switchboard is read as far as this one understands it and
        left where it is, so going back to the newer version finds all its settings.
        """
        problems: list[str] = []
        try:
            path = path or paths.settings_file()
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(), problems
        except OSError as e:
            return cls(), [f"Settings could not be read ({e.strerror or e}); using defaults."]
        try:
            doc = json.loads(raw.decode("utf-8"))  # UnicodeDecodeError is a ValueError
        except (ValueError, RecursionError):
            doc = None
        version = doc.get("version") if isinstance(doc, dict) else None
        if (isinstance(doc, dict) and isinstance(version, int) and not isinstance(version, bool)
                and version > SCHEMA_VERSION):
            # Not damaged, only newer: moving it aside would lose settings on a downgrade.
            values = doc.get("settings")
            values = values if isinstance(values, dict) else {}
            problems.append("The settings were saved by a newer version of Switchboard; "
                            "the ones this version knows are in use.")
        elif isinstance(doc, dict) and isinstance(doc.get("settings"), dict):
            values = doc["settings"]
        else:
            return cls(), [_keep_aside(path)]
        good: dict[str, Any] = {}
        if "node_url" in values and "node_urls" not in values:  # saved before the pool
            values = {**values, "node_urls": [values["node_url"]] if values["node_url"] else []}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            try:
                good[f.name] = _coerce(f, values[f.name])
            except SettingsError as e:
                problems.append(f"{e.detail}; the default is in use.")
        return cls(**good), problems


def _keep_aside(path: Path) -> str:
    """Move a damaged settings file aside; returns the problem to tell the user."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        path.replace(aside)
    except OSError as e:
        return (f"The settings file was damaged and could not be kept aside "
                f"({e.strerror or e}); default settings are in use, and saving settings "
                "will replace it.")
    return (f"The settings file was damaged; it was kept as {aside.name} "
            "and default settings are in use.")


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
    choice = want if issubclass(want, StrEnum) else None  # a mode, where chats run
    if choice is not None:
        want = str
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, str) and want is str:
        value = value.strip()
    if want is tuple:
        value = _string_list(label, value)
    if f.metadata["kind"] == "url":
        value = tuple(map(normalise_address, value)) if want is tuple \
            else normalise_address(value)
    if not isinstance(value, want) or isinstance(value, bool) != (want is bool):
        raise SettingsError(f"{label}: expected {want.__name__}, got {value!r}")
    _check(f, value)
    return choice(str(value)) if choice is not None else value


def _string_list(label: str, value: Any) -> tuple[str, ...]:
    """A list of strings from a list, or from text with one a line or comma-separated;
    blanks dropped, each kept once, in order."""
    if isinstance(value, str):
        value = value.replace(",", "\n").splitlines()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"{label}: expected a list of text, got {value!r}")
    return tuple(dict.fromkeys(v.strip() for v in value if v.strip()))


def normalise_address(address: str) -> str:
    """A bare `host:port` (or `host`) as `http://host:port`; anything else as given."""
    address = address.strip()
    if address and "://" not in address:
        return f"http://{address}"
    return address


def _check(f: dataclasses.Field[Any], value: Any) -> None:
    if isinstance(value, tuple):
        for item in value:
            _check_one(f, item)
        return
    _check_one(f, value)


def _check_one(f: dataclasses.Field[Any], value: Any) -> None:
    label, lo, hi = f.metadata["label"], f.metadata["min"], f.metadata["max"]
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(f"{label}: {value!r} is not a number")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise SettingsError(f"{label}: {value!r} is outside {lo:g}–{hi:g}")
    if f.metadata["choices"] and value not in f.metadata["choices"]:
        raise SettingsError(f"{label}: {value!r} is not one of {', '.join(f.metadata['choices'])}")
    if f.metadata["kind"] == "url" and value:
        try:
            parts = urlsplit(value)
        except ValueError:  # "Invalid IPv6 URL", e.g. "http://[::1/v1"
            raise SettingsError(f"{label}: {value!r} is not a valid address") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"{label}: {value!r} is not an http:// or https:// address")
        try:
            port = parts.port  # raises for a port that isn't a number from 0 to 65535
        except ValueError:
            port = 0
        if port == 0:
            raise SettingsError(f"{label}: {value!r} has a port that is not a number "
                                "from 1 to 65535")
