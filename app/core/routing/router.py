"""Deciding, for each request, whether it is planned in the cloud first or answered
locally, and saying why. Execution is always local; only planning may go to the cloud.

Inputs are typed: the user's `Mode`, a one-message `Override` ("Plan this" / "Just
answer"), whether the cloud planner can be used now (`CloudAccess`, from
`routing.cloud_access`, the one place those checks live) and, in Auto, the classifier's
verdict on the prompt. The decision and its reason go to the log and, with every model
call it leads to, to the record of calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from app.core.routing.classifier import Verdict, classify

log = logging.getLogger(__name__)


class Mode(StrEnum):
    """How the user wants requests planned (a setting, and the window's mode menu)."""

    AUTO = "auto"
    LOCAL_ONLY = "local only"
    PLAN_WITH_CLOUD = "plan with cloud"


class Override(StrEnum):
    """The user's choice for one message, whatever the mode."""

    PLAN = "plan"  # "Plan this"
    ANSWER = "answer"  # "Just answer"


@dataclass(frozen=True, slots=True)
class CloudAccess:
    """Whether the cloud planner may be asked now, and if not, why (in words)."""

    ready: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    plan_in_cloud: bool
    reason: str  # in words, for the log, the record of calls and the user
    override: Override | None = None
    # Worth planning: planned in the cloud, or locally when the cloud can't be asked.
    planned: bool = False

    def __post_init__(self) -> None:
        if self.plan_in_cloud:
            object.__setattr__(self, "planned", True)

    @property
    def name(self) -> str:
        """"cloud plan", "local plan" or "local", as the record of calls stores it."""
        if self.plan_in_cloud:
            return "cloud plan"
        return "local plan" if self.planned else "local"


def decide(prompt: str, *, mode: Mode, cloud: CloudAccess,
           override: Override | None = None, verdict: Verdict | None = None) -> Route:
    """Where this request is planned. `verdict` is the classifier's (computed here in
    Auto when not given: a caller may have asked the local model on a borderline case)."""
    route = _decide(prompt, Mode(mode), cloud, override, verdict)
    log.info("route: %s, because %s", "plan in the cloud" if route.plan_in_cloud
             else "planned here", route.reason)
    return route


def _decide(prompt: str, mode: Mode, cloud: CloudAccess, override: Override | None,
            verdict: Verdict | None) -> Route:
    if override is Override.ANSWER:
        return Route(False, "you asked to just answer", override)
    if override is Override.PLAN:
        wants, why = True, "you asked to plan this"
    elif mode is Mode.LOCAL_ONLY:
        return Route(False, "you chose Local only")
    elif mode is Mode.PLAN_WITH_CLOUD:
        wants, why = True, "you chose Plan with cloud"
    else:
        verdict = verdict or classify(prompt)
        if not verdict.plan:
            return Route(False, verdict.reason)
        wants, why = True, verdict.reason
    if not cloud.ready:
        return Route(False, f"cloud planning is not available ({cloud.reason})", override,
                     planned=wants)
    return Route(wants, why, override)
