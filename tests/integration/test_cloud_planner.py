"""Cloud planning within the budget, against a stand-in OpenRouter: reserve the worst
case first, settle with the reported cost, never overspend, even 20 calls at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from app.core import errors, secrets
from app.core.budget import Ledger, worst_case_micro_usd
from app.core.cloud import CloudPlanner, estimate_prompt_tokens
from app.core.llm.openai_client import Delta, Finished
from app.core.llm.openrouter import OpenRouter
from app.core.policy import Policy, load_policy
from app.core.settings import Settings
from tests.fixtures.openrouter_server import API_KEY, KeyState, OpenRouterServer

ASK = [{"role": "user", "content": "Plan the quarterly report in steps."}]
MODEL = "stand-in/planner"
MAX_TOKENS = 64


def worst_case() -> int:
    return worst_case_micro_usd(estimate_prompt_tokens(ASK), MAX_TOKENS,
                                {"prompt": "0.000003", "completion": "0.000015"})


@pytest.fixture
def cloud() -> Iterator[OpenRouterServer]:
    secrets.set_secret(secrets.OPENROUTER_KEY, API_KEY)
    with OpenRouterServer(latency_s=0.3) as server:
        yield server


def planner(server: OpenRouterServer, tmp_path: Path, *, budget_usd: float,
            policy: Policy | None = None) -> CloudPlanner:
    settings = Settings().changed(monthly_budget_usd=budget_usd, planner_model=MODEL,
                                  planner_max_tokens=MAX_TOKENS)
    return CloudPlanner(settings, policy or Policy(), Ledger(tmp_path / "ledger.sqlite3"),
                        client_factory=lambda key: OpenRouter(key, base_url=server.base_url))


async def run(p: CloudPlanner) -> Finished:
    finished = None
    async for event in p.plan(ASK):
        if isinstance(event, Finished):
            finished = event
    assert finished is not None
    return finished


def test_a_plan_is_reserved_then_settled_at_its_reported_cost(cloud: OpenRouterServer,
                                                              tmp_path: Path) -> None:
    p = planner(cloud, tmp_path, budget_usd=20)
    finished = asyncio.run(run(p))
    cost = finished.usage.cost_micro_usd if finished.usage else None
    assert cost and 0 < cost < worst_case()
    summary = p.ledger.month_summary()
    assert (summary.spent_micro_usd, summary.reserved_micro_usd, summary.calls) == (cost, 0, 1)
    assert cloud.remaining() is None or cloud.remaining() >= 0


def test_twenty_at_once_with_a_budget_for_ten(cloud: OpenRouterServer, tmp_path: Path) -> None:
    cap = 10 * worst_case() + worst_case() // 2
    p = planner(cloud, tmp_path, budget_usd=cap / 1_000_000)
    assert p.user_cap_micro_usd() == cap

    async def twenty() -> list[object]:
        return await asyncio.gather(*(run(p) for _ in range(20)), return_exceptions=True)

    results = asyncio.run(twenty())
    done = [r for r in results if isinstance(r, Finished)]
    refused = [r for r in results if isinstance(r, errors.BudgetExhausted)]
    assert (len(done), len(refused)) == (10, 10), results
    assert len(cloud.chat_requests()) == 10  # the refused ones never reached the cloud
    summary = p.ledger.month_summary()
    assert summary.charged_micro_usd <= cap
    assert summary.reserved_micro_usd == 0  # every admitted call was settled


def test_the_keys_own_limit_caps_the_budget(tmp_path: Path) -> None:
    secrets.set_secret(secrets.OPENROUTER_KEY, API_KEY)
    left = Decimal(worst_case() - 1) / 1_000_000  # a micro-dollar short of one call
    with OpenRouterServer(key=KeyState(limit="5", usage=str(5 - left))) as server:
        p = planner(server, tmp_path, budget_usd=20)
        with pytest.raises(errors.BudgetExhausted):
            asyncio.run(run(p))
        assert server.chat_requests() == []


def test_the_policy_ceiling_caps_the_users_budget(cloud: OpenRouterServer,
                                                  tmp_path: Path) -> None:
    p = planner(cloud, tmp_path, budget_usd=20,
                policy=Policy(budget_ceiling_usd=worst_case() / 2_000_000))
    with pytest.raises(errors.BudgetExhausted):
        asyncio.run(run(p))
    assert cloud.chat_requests() == []


@pytest.mark.parametrize(("policy", "budget_usd", "words"), [
    (Policy(cloud_allowed=False), 20.0, "IT has turned cloud planning off"),
    (Policy(), 0.0, "no monthly budget"),
    (Policy(allowed_planner_models=("someone/else",)), 20.0, "IT allows only someone/else"),
])
def test_cloud_planning_off_sends_nothing(cloud: OpenRouterServer, tmp_path: Path,
                                          policy: Policy, budget_usd: float,
                                          words: str) -> None:
    p = planner(cloud, tmp_path, budget_usd=budget_usd, policy=policy)
    with pytest.raises(errors.CloudPlanningOff) as caught:
        asyncio.run(run(p))
    assert words in caught.value.detail
    assert cloud.requests == []


def test_no_key_saved_sends_nothing(cloud: OpenRouterServer, tmp_path: Path) -> None:
    secrets.delete_secret(secrets.OPENROUTER_KEY)
    with pytest.raises(errors.CloudPlanningOff, match="no OpenRouter key"):
        asyncio.run(run(planner(cloud, tmp_path, budget_usd=20)))
    assert cloud.requests == []


def test_402_charges_nothing_and_says_so(cloud: OpenRouterServer, tmp_path: Path) -> None:
    cloud.inject("402")
    p = planner(cloud, tmp_path, budget_usd=20)
    with pytest.raises(errors.CloudCreditExhausted):
        asyncio.run(run(p))
    summary = p.ledger.month_summary()
    assert summary.charged_micro_usd == 0 and summary.calls == 1


def test_a_stream_cut_before_its_cost_stays_charged_and_flagged(cloud: OpenRouterServer,
                                                                tmp_path: Path) -> None:
    cloud.inject("drop_mid_stream")
    p = planner(cloud, tmp_path, budget_usd=20)
    received: list[str] = []

    async def main() -> None:
        async for event in p.plan(ASK):
            if isinstance(event, Delta):
                received.append(event.text)

    with pytest.raises(errors.SwitchboardError):
        asyncio.run(main())
    summary = p.ledger.month_summary()
    assert summary.flagged_count == 1 and summary.flagged_micro_usd == worst_case()
    assert summary.charged_micro_usd == worst_case()


def test_a_broken_policy_file_turns_the_cloud_off(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text("{ not json")
    policy, problems = load_policy(path)
    assert policy.cloud_allowed is False and "cloud planning is off" in problems[0]
    path.write_text('{"budget_ceiling_usd": 50, "allowed_planner_models": ["a/b"]}')
    policy, problems = load_policy(path)
    assert (policy.budget_ceiling_usd, policy.allowed_planner_models, problems) == \
        (50.0, ("a/b",), [])
    assert load_policy(tmp_path / "absent.json") == (Policy(), [])
