"""Deciding, for each request, whether to plan it in the cloud first or run it locally
only, and saying why. Execution is always local; only planning may go to the cloud.

Inputs: the user's mode (Auto / Local only / Plan with cloud), the request, and whether
cloud planning is possible now (policy, budget, key). Every decision is logged.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)

LONG_REQUEST_CHARS = 600
# Words that mark a request as multi-step work worth planning.
_MULTI_STEP = re.compile(
    r"\b(plan|steps?|step-by-step|first\b.*\bthen|break (it|this) down|roadmap|"
    r"project|strategy|outline|compare .+ and|migrat\w+|design)\b",
    re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class Route:
    plan_in_cloud: bool
    reason: str  # in words, for the log and the user


def decide(prompt: str, *, mode: str, cloud_ready: bool, cloud_reason: str = "") -> Route:
    """Where this request is planned. `cloud_reason` says why the cloud isn't ready."""
    if mode == "local only":
        route = Route(False, "you chose Local only")
    elif not cloud_ready:
        route = Route(False, f"cloud planning is not available ({cloud_reason})")
    elif mode == "plan with cloud":
        route = Route(True, "you chose Plan with cloud")
    elif len(prompt) >= LONG_REQUEST_CHARS or _MULTI_STEP.search(prompt):
        route = Route(True, "it looks like multi-step work")
    else:
        route = Route(False, "a single-step request runs locally")
    log.info("route: %s, because %s", "plan in the cloud" if route.plan_in_cloud
             else "local only", route.reason)
    return route
