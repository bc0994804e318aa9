"""The router: the user's mode and one-message overrides, whether the cloud may be asked
(one check, `cloud_access`), and, in Auto, the classifier — measured on the held-out
part of a labelled set of department prompts (`tests/data/routing_prompts.tsv`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app.core.policy import Policy
from app.core.routing.classifier import ask_of, classify
from app.core.routing.cloud_access import cloud_access
from app.core.routing.router import CloudAccess, Mode, Override, decide
from app.core.settings import Settings

DATA = Path(__file__).parents[1] / "data" / "routing_prompts.tsv"
READY = CloudAccess(True)
MULTI_STEP = ("Plan the office move: list what IT, facilities and HR each need to do, build "
              "a week-by-week schedule, and draft the announcement to staff.")


def labelled() -> list[tuple[bool, str]]:
    rows = []
    for line in DATA.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        label, prompt = line.split("\t")
        rows.append((label == "plan", prompt))
    return rows


def held_out(prompt: str) -> bool:
    """A third of the set, by a hash of the prompt: never used to set the weights."""
    return hashlib.sha256(prompt.encode()).digest()[0] % 3 == 0


# ---------------------------------------------------------------- the rules


@pytest.mark.parametrize(("mode", "override", "cloud", "plans", "reason"), [
    (Mode.LOCAL_ONLY, None, READY, False, "you chose Local only"),
    (Mode.PLAN_WITH_CLOUD, None, READY, True, "you chose Plan with cloud"),
    (Mode.PLAN_WITH_CLOUD, Override.ANSWER, READY, False, "you asked to just answer"),
    (Mode.LOCAL_ONLY, Override.PLAN, READY, True, "you asked to plan this"),
    (Mode.AUTO, Override.PLAN, CloudAccess(False, "no OpenRouter key is saved"), False,
     "cloud planning is not available (no OpenRouter key is saved)"),
    (Mode.PLAN_WITH_CLOUD, None, CloudAccess(False, "no monthly budget is set"), False,
     "cloud planning is not available (no monthly budget is set)"),
])
def test_the_mode_and_an_override_decide_with_their_reason(
        mode: Mode, override: Override | None, cloud: CloudAccess, plans: bool,
        reason: str) -> None:
    route = decide("What is the project deadline?", mode=mode, cloud=cloud,
                   override=override)
    assert (route.plan_in_cloud, route.reason, route.override) == (plans, reason, override)


def test_auto_plans_multi_step_work_and_answers_a_question() -> None:
    assert decide(MULTI_STEP, mode=Mode.AUTO, cloud=READY).plan_in_cloud
    question = decide("What is the project deadline?", mode=Mode.AUTO, cloud=READY)
    assert not question.plan_in_cloud
    assert question.reason == "a single-step request runs locally"
    # Worth planning but the cloud can't be asked: local, and it says why.
    off = decide(MULTI_STEP, mode=Mode.AUTO, cloud=CloudAccess(False, "IT turned it off"))
    assert not off.plan_in_cloud and "IT turned it off" in off.reason


def test_pasted_material_is_not_the_request() -> None:
    email = ("Hi all, " + "we will plan the migration, then compare vendors, then build "
             "the roadmap and schedule the rollout with each team. " * 6)
    prompt = f"Make this more polite: {email}"
    assert ask_of(prompt) == "Make this more polite"
    assert not classify(prompt).plan


@pytest.mark.parametrize(("settings", "policy", "reason"), [
    (Settings(monthly_budget_usd=20), Policy(cloud_allowed=False),
     "IT has turned cloud planning off on this computer"),
    (Settings(), Policy(), "no monthly budget is set"),
    (Settings(monthly_budget_usd=20, planner_model="x/y"),
     Policy(allowed_planner_models=("a/b",)), "IT allows only a/b"),
])
def test_cloud_access_says_why_not(settings: Settings, policy: Policy, reason: str) -> None:
    assert cloud_access(settings, policy) == CloudAccess(False, reason)


def test_cloud_access_checks_the_key_and_the_budget_left_when_known() -> None:
    settings = Settings(monthly_budget_usd=20)
    assert cloud_access(settings, Policy()) == CloudAccess(True)
    assert cloud_access(settings, Policy(), key_saved=False).reason == \
        "no OpenRouter key is saved"
    assert cloud_access(settings, Policy(), key_saved=True, budget_left_micro_usd=0).reason \
        == "this month's budget is used up"


# ---------------------------------------------------------------- measured


def test_the_labelled_set_is_large_and_mixed() -> None:
    rows = labelled()
    assert len(rows) >= 300
    plans = sum(plan for plan, _ in rows)
    assert 0.25 < plans / len(rows) < 0.6
    assert len({prompt for _, prompt in rows}) == len(rows)
    assert len([p for p in rows if held_out(p[1])]) >= 100


def test_auto_meets_its_figures_on_the_held_out_prompts() -> None:
    rows = [(plan, prompt) for plan, prompt in labelled() if held_out(prompt)]
    decided = [(plan, decide(prompt, mode=Mode.AUTO, cloud=READY).plan_in_cloud)
               for plan, prompt in rows]
    accuracy = sum(want == got for want, got in decided) / len(decided)
    singles = [got for want, got in decided if not want]
    false_plans = sum(singles) / len(singles)
    print(f"held out: {len(decided)} prompts, accuracy {accuracy:.3f}, "
          f"single-step sent to planning {false_plans:.3f}")
    assert accuracy >= 0.90
    assert false_plans <= 0.05
