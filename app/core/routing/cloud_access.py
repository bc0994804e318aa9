"""Whether the cloud planner may be asked: the one place these checks live. The router
uses it to decide, and `CloudPlanner` checks it again before anything is sent."""

from __future__ import annotations

from app.core.policy import Policy
from app.core.routing.router import CloudAccess
from app.core.settings import Settings


def cloud_access(settings: Settings, policy: Policy, *, key_saved: bool | None = None,
                 budget_left_micro_usd: int | None = None) -> CloudAccess:
    """What IT's policy, the settings and (when known) the key store and the ledger allow.

    `key_saved` and `budget_left_micro_usd` are None where the caller has not looked
    (the key store and the ledger block; the planner looks itself before a call).
    """
    if not policy.cloud_allowed:
        return CloudAccess(False, "IT has turned cloud planning off on this computer")
    if settings.monthly_budget_usd <= 0:
        return CloudAccess(False, "no monthly budget is set")
    if not policy.allows_model(settings.planner_model):
        return CloudAccess(False, f"IT allows only {', '.join(policy.allowed_planner_models)}")
    if key_saved is False:
        return CloudAccess(False, "no OpenRouter key is saved")
    if budget_left_micro_usd is not None and budget_left_micro_usd <= 0:
        return CloudAccess(False, "this month's budget is used up")
    return CloudAccess(True)
