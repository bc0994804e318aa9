"""The machine policy IT writes: what every user of this computer may do, whatever their
own settings say. One JSON file: `%ProgramData%\\Switchboard\\policy.json` on Windows,
`/etc/switchboard/policy.json` elsewhere (`SWITCHBOARD_POLICY` points elsewhere, for
tests and IT's own checks).

A policy file that can't be read turns the cloud off: IT wrote it to bound something,
so a broken one must not lift the bounds.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POLICY_ENV = "SWITCHBOARD_POLICY"


@dataclass(frozen=True, slots=True)
class Policy:
    office_node_urls: tuple[str, ...] = ()
    cloud_allowed: bool = True
    budget_ceiling_usd: float | None = None  # the most any user may spend a month
    allowed_planner_models: tuple[str, ...] = ()  # empty: any

    def allows_model(self, model: str) -> bool:
        return not self.allowed_planner_models or model in self.allowed_planner_models


def policy_file() -> Path:
    if override := os.environ.get(POLICY_ENV):
        return Path(override)
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "Switchboard/policy.json"
    return Path("/etc/switchboard/policy.json")


def load_policy(path: Path | None = None) -> tuple[Policy, list[str]]:
    """The policy and any problem with it, in words for the user; never raises."""
    path = path or policy_file()
    try:
        doc: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Policy(), []
    except (OSError, ValueError) as e:
        return Policy(cloud_allowed=False), [
            f"The computer's policy file {path} can't be read ({e}); cloud planning is off."]
    try:
        ceiling = doc.get("budget_ceiling_usd")
        policy = Policy(
            office_node_urls=tuple(str(u) for u in doc.get("office_node_urls", ())),
            cloud_allowed=bool(doc.get("cloud_allowed", True)),
            budget_ceiling_usd=None if ceiling is None else max(0.0, float(ceiling)),
            allowed_planner_models=tuple(str(m) for m in doc.get("allowed_planner_models", ())),
        )
    except (AttributeError, TypeError, ValueError) as e:
        return Policy(cloud_allowed=False), [
            f"The computer's policy file {path} is not valid ({e}); cloud planning is off."]
    return policy, []
