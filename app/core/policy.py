"""The machine policy IT writes: what every user of this computer may do, whatever their
own settings say. One JSON file: `%ProgramData%\\Switchboard\\policy.json` on Windows,
`/etc/switchboard/policy.json` elsewhere (`SWITCHBOARD_POLICY` points elsewhere, for
tests and IT's own checks). `packaging/ADMIN.md` documents the format.

`bound()` is the one place where the policy meets the user's settings: the workspace
applies it when settings load and whenever they are saved, and the Settings dialog shows
its limits.

A policy file that can't be read, or has a value of the wrong type, turns the cloud off:
IT wrote it to bound something, so a broken one must not lift the bounds. An unknown key
(a typo, or a key from a newer Switchboard) is only noted in the log: refusing the whole
file over it would turn cloud planning off for a whole department.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from app.core.errors import SettingsError
from app.core.money import format_usd, micro_usd
from app.core.routing.router import Mode
from app.core.settings import Settings

log = logging.getLogger(__name__)

POLICY_ENV = "SWITCHBOARD_POLICY"
POLICY_VERSION = 1  # the format this Switchboard writes its guide for
KNOWN_KEYS = ("version", "office_node_urls", "cloud_allowed", "budget_ceiling_usd",
              "allowed_planner_models")
SET_BY_IT = "Set by your IT department"
CLOUD_MODES = (Mode.AUTO, Mode.PLAN_WITH_CLOUD)  # the planning modes that may call the cloud


@dataclass(frozen=True, slots=True)
class NodeTerms:
    """What IT says of one office node beyond its address."""

    name: str = ""  # shown to users instead of host:port
    usd_per_million_tokens: Decimal = Decimal(0)  # its running cost, for the record of calls


@dataclass(frozen=True, slots=True)
class Policy:
    office_node_urls: tuple[str, ...] = ()  # empty: any; else exactly these, the pool
    # IT's name and running cost of each node that has them, by address.
    node_terms: tuple[tuple[str, NodeTerms], ...] = ()
    cloud_allowed: bool = True
    budget_ceiling_usd: float | None = None  # the most any user may spend a month
    allowed_planner_models: tuple[str, ...] = ()  # empty: any; else only these, first default

    def allows_model(self, model: str) -> bool:
        return not self.allowed_planner_models or model in self.allowed_planner_models

    def terms(self, url: str) -> NodeTerms:
        for address, terms in self.node_terms:
            if address.rstrip("/") == url.rstrip("/"):
                return terms
        return NodeTerms()


@dataclass(frozen=True, slots=True)
class PolicyFile:
    """What reading the machine's policy file found."""

    path: Path
    policy: Policy
    found: bool = False
    problems: tuple[str, ...] = ()  # for the user: the file is not in force, cloud is off
    notes: tuple[str, ...] = ()  # for IT (the log, `switchboard doctor`): unknown keys…


def policy_file() -> Path:
    """Where the policy is read from (no disk access)."""
    if override := os.environ.get(POLICY_ENV):
        return Path(override)
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "Switchboard/policy.json"
    return Path("/etc/switchboard/policy.json")


def read_policy(path: Path | None = None) -> PolicyFile:
    """The policy file and what was wrong with it; never raises. Blocks on disk."""
    path = path or policy_file()
    try:
        # utf-8-sig: the installer and Windows editors write a byte-order mark.
        doc: Any = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        return PolicyFile(path, Policy())
    except (OSError, ValueError, RecursionError) as e:
        return PolicyFile(path, Policy(cloud_allowed=False), found=True, problems=(
            f"The computer's policy file {path} can't be read ({e}); cloud planning is off.",))
    try:
        policy, notes = _parse(doc)
    except PolicyInvalid as e:
        return PolicyFile(path, Policy(cloud_allowed=False), found=True, problems=(
            f"The computer's policy file {path} is not valid ({e}); cloud planning is off.",))
    return PolicyFile(path, policy, found=True, notes=tuple(notes))


def load_policy(path: Path | None = None) -> tuple[Policy, list[str]]:
    """The policy and any problem with it, in words for the user; never raises.

    Notes for IT (an unknown key, a newer format) go to the log."""
    read = read_policy(path)
    for note in read.notes:
        log.warning("policy file %s: %s", read.path, note)
    return read.policy, list(read.problems)


class PolicyInvalid(ValueError):
    """A policy file that parses as JSON but is not a policy (the words say why)."""


def _parse(doc: Any) -> tuple[Policy, list[str]]:
    if not isinstance(doc, dict):
        raise PolicyInvalid("it must be a JSON object, {…}")
    notes = [f"unknown key {key!r} ignored" for key in doc if key not in KNOWN_KEYS]
    version = doc.get("version", POLICY_VERSION)
    if not _is_int(version) or version < 1:
        raise PolicyInvalid(f"version must be a whole number from 1, not {version!r}")
    if version > POLICY_VERSION:
        notes.insert(0, f"written for a newer Switchboard (version {version}); the keys "
                        "this version knows are in force")
    cloud_allowed = doc.get("cloud_allowed", True)
    if not isinstance(cloud_allowed, bool):
        raise PolicyInvalid(f"cloud_allowed must be true or false, not {cloud_allowed!r}")
    ceiling = doc.get("budget_ceiling_usd")
    if ceiling is not None and (not _is_number(ceiling) or ceiling < 0):
        raise PolicyInvalid("budget_ceiling_usd must be a number of dollars, 0 or more, "
                            f"or null, not {ceiling!r}")
    urls, terms = _nodes(doc.get("office_node_urls", []))
    return Policy(office_node_urls=urls, node_terms=terms, cloud_allowed=cloud_allowed,
                  budget_ceiling_usd=None if ceiling is None else float(ceiling),
                  allowed_planner_models=_strings(doc, "allowed_planner_models")), notes


def _nodes(entries: Any) -> tuple[tuple[str, ...], tuple[tuple[str, NodeTerms], ...]]:
    """`office_node_urls`: addresses, or objects {"url", "name", "usd_per_million_tokens"}."""
    wrong = ('office_node_urls must be a list of addresses, or of {"url": …, "name": …, '
             f'"usd_per_million_tokens": …}}, not {entries!r}')
    if not isinstance(entries, list):
        raise PolicyInvalid(wrong)
    urls: list[str] = []
    terms: list[tuple[str, NodeTerms]] = []
    for entry in entries:
        if isinstance(entry, dict):
            unknown = set(entry) - {"url", "name", "usd_per_million_tokens"}
            url, name = entry.get("url"), entry.get("name", "")
            cost = entry.get("usd_per_million_tokens", 0)
            if unknown or not isinstance(url, str) or not isinstance(name, str) \
                    or not _is_number(cost) or cost < 0:
                raise PolicyInvalid(wrong)
            terms.append((url.strip(), NodeTerms(name.strip(), Decimal(str(cost)))))
        elif not isinstance(entry, str):
            raise PolicyInvalid(wrong)
        else:
            url = entry
        if not url.strip():
            raise PolicyInvalid(wrong)
        try:
            Settings(node_urls=(url.strip(),))  # the same check as the Settings dialog's
        except SettingsError as e:
            raise PolicyInvalid(f"office_node_urls: {e.detail}") from None
        urls.append(url.strip())
    return tuple(dict.fromkeys(urls)), tuple(terms)


def _strings(doc: dict[str, Any], key: str) -> tuple[str, ...]:
    values = doc.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip()
                                               for v in values):
        raise PolicyInvalid(f"{key} must be a list of non-empty strings, [\"…\", …], "
                            f"not {values!r}")
    return tuple(dict.fromkeys(v.strip() for v in values))  # in order, once each


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


# -- the policy over the user's settings -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limit:
    """How the policy bounds one setting, for the Settings dialog."""

    why: str  # in the user's words
    choices: tuple[str, ...] = ()  # the only values allowed (empty: any)
    maximum: float | None = None
    all_of: bool = False  # a list setting that is all of `choices`, as IT ordered them

    @property
    def fixed(self) -> bool:
        """IT allows exactly one value: the field shows it and can't be changed."""
        return self.all_of or len(self.choices) == 1


@dataclass(frozen=True, slots=True)
class Bounded:
    """The settings in force, and what IT's policy did to them."""

    settings: Settings
    limits: Mapping[str, Limit] = field(default_factory=dict)  # setting name → its limit
    changes: tuple[str, ...] = ()  # what the policy changed, in words, for the log


def bound(settings: Settings, policy: Policy) -> Bounded:
    """The user's settings as the policy allows them (no I/O).

    The same settings bound twice come out the same, so this can be applied on load, on
    every save and to whatever the Settings dialog sends without drifting.
    """
    limits: dict[str, Limit] = {}
    values: dict[str, Any] = {}
    if urls := policy.office_node_urls:
        # The user's nodes where IT allows them (a script's `--node`); all of IT's when
        # none is: spreading a department's work over its nodes is what IT listed them for.
        limits["node_urls"] = Limit(SET_BY_IT if len(urls) == 1 else
                                    f"{SET_BY_IT}: these office nodes", choices=urls,
                                    all_of=True)
        chosen = tuple(dict.fromkeys(allowed for url in settings.node_urls
                                     if (allowed := _match(url, urls))))
        if (chosen or urls) != settings.node_urls:
            values["node_urls"] = chosen or urls
    if (ceiling := policy.budget_ceiling_usd) is not None:
        limits["monthly_budget_usd"] = Limit(
            f"{SET_BY_IT}: at most {format_usd(micro_usd(ceiling, spend=False))} a month",
            maximum=ceiling)
        if settings.monthly_budget_usd > ceiling:
            values["monthly_budget_usd"] = float(ceiling)
    if models := policy.allowed_planner_models:
        limits["planner_model"] = Limit(SET_BY_IT if len(models) == 1 else
                                        f"{SET_BY_IT}: only these planner models",
                                        choices=models)
        if settings.planner_model not in models:
            values["planner_model"] = models[0]
    if not policy.cloud_allowed:
        limits["mode"] = Limit(f"{SET_BY_IT}: cloud planning is off",
                               choices=(Mode.LOCAL_ONLY,))
        if settings.mode in CLOUD_MODES:
            values["mode"] = Mode.LOCAL_ONLY
    changes = tuple(f"{_label(name)}: IT's policy puts {_shown(value)} in place of "
                    f"{_shown(getattr(settings, name))}" for name, value in values.items())
    return Bounded(dataclasses.replace(settings, **values), limits, changes)


def _match(url: str, allowed: tuple[str, ...]) -> str:
    """The allowed address `url` is (a trailing "/" aside), as IT wrote it; "" if none."""
    for candidate in allowed:
        if candidate.rstrip("/") == url.rstrip("/"):
            return candidate
    return ""


def _shown(value: object) -> str:
    """A setting's value as the user wrote it: a mode by its words, not its enum."""
    return repr(str(value) if isinstance(value, StrEnum) else value)


def _label(name: str) -> str:
    return str(next(f.metadata["label"] for f in dataclasses.fields(Settings) if f.name == name))
