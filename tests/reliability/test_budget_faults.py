"""Rows of the fault matrix about money: twenty app processes planning in the cloud at
once against a budget that covers ten, and a month that ends while a cloud call is
under way. The budget is never overspent, nothing is handed back that was spent, and
every request still gets an answer or a reason in words."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from app.core import budget, secrets
from app.core.budget import Ledger
from app.core.history import Message
from app.core.routing.record import CallRecord
from app.core.settings import Settings
from app.core.workspace import Workspace
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.leaks import assert_nothing_leaked, command_lines
from tests.fixtures.openrouter_server import API_KEY, OpenRouterServer
from tests.fixtures.waiting import wait_for
from tests.reliability.conftest import NODE_TOKEN, ROOT, app_env

PROMPT = "Plan the office move: book the vans, tell every team, and update the floor plan"


def plan_settings(node: str, budget_usd: float) -> None:
    Settings().changed(node_urls=[node], model="m", planner_model="stand-in/planner",
                       planner_max_tokens=400, monthly_budget_usd=budget_usd,
                       mode="plan with cloud").save()


def reservations() -> list[tuple[int, str, int | None, int]]:
    """(amount, state, cost, cap) of every reservation in the ledger."""
    with Ledger() as ledger:
        return [tuple(row) for row in ledger._db.execute(  # type: ignore[misc]
            "SELECT amount_micro_usd, state, cost_micro_usd, cap_micro_usd FROM reservations")]


def test_twenty_processes_planning_at_once_over_a_budget_for_ten(
        switchboard_home: Path, fault_server: FaultServer,
        key_store: dict[str, str]) -> None:
    fault_server.set_scenario("ok", chunks=["Done."])
    # The plans come slowly, so the twenty hold their reservations at the same time.
    with OpenRouterServer(latency_s=1.0) as cloud:
        env = app_env(**key_store, SWITCHBOARD_OPENROUTER_URL=cloud.base_url)
        subprocess.run([sys.executable, "-c", "import keyring, sys; keyring.set_password("
                        "'Switchboard', 'openrouter-api-key', sys.stdin.read())"],
                       input=API_KEY, text=True, env=env, check=True, timeout=60)
        # One call first, to learn what a call reserves (its worst case) and costs; the
        # prompts are all of one length, so all reserve the same.
        plan_settings(fault_server.base_url, 1.0)
        first = subprocess.run([sys.executable, "-m", "app", "ask", "--plan", "cloud",
                                f"{PROMPT} (z)"],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        [(worst, _, cost, _)] = reservations()
        assert cost is not None and 0 < cost <= worst
        cap = cost + 10 * worst  # room for ten more at their worst case, and no more
        plan_settings(fault_server.base_url, float(Decimal(cap) / 1_000_000))

        apps = [subprocess.Popen([sys.executable, "-m", "app", "ask", "--plan", "cloud",
                                  f"{PROMPT} ({chr(97 + n)})"], cwd=ROOT, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for n in range(20)]
        wait_for(lambda: len(cloud.chat_requests()) >= 2, "the plans are asked for")
        argv = command_lines(app.pid for app in apps)
        ended = [(app.wait(timeout=600), *app.communicate()) for app in apps]

    rows = reservations()[1:]
    assert {row[3] for row in rows} == {cap}  # the cap each reservation was checked against
    charged = sum(cost if state == "settled" else amount for amount, state, cost, _ in rows)
    assert cost + charged <= cap  # never overspent
    assert len(rows) >= 10  # the budget was used: ten at least fit
    assert all(state == "settled" for _, state, _, _ in rows)  # every call's cost known
    assert len(cloud.chat_requests()) == 1 + len(rows)  # no cloud call without a reservation
    planned_here = [err for code, out, err in ended if "planned locally" in err.lower()
                    or "budget" in err.lower()]
    for code, out, err in ended:  # every request answered, the refused planned locally
        assert code == 0, err
        assert out.strip() and "Traceback" not in err
    assert len(planned_here) >= 20 - len(rows)
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN, API_KEY], cloud=cloud,
                          argv=argv)


def test_the_month_ends_while_a_cloud_call_runs(
        switchboard_home: Path, fault_server: FaultServer, cloud: OpenRouterServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fault_server.set_scenario("ok", chunks=["Done."])
    secrets.set_secret(secrets.NODE_TOKEN, NODE_TOKEN)
    plan_settings(fault_server.base_url, 1.0)
    november_end = datetime(2026, 11, 30, 23, 59, 59, 900_000, tzinfo=UTC)
    december = datetime(2026, 12, 1, 0, 0, 0, 100_000, tzinfo=UTC)

    def clock() -> datetime:  # midnight passes once the cloud has the request
        return december if cloud.chat_requests() else november_end

    monkeypatch.setattr(budget, "utc_now", clock)
    monkeypatch.setattr("app.core.workspace.Ledger",
                        lambda *a, **k: Ledger(*a, clock=clock, **k))
    workspace = Workspace.open()

    async def main() -> Message:
        try:
            chat = workspace.history.create_chat()
            return await workspace.send(chat.id, PROMPT, lambda e: None)
        finally:
            await workspace.close()

    answer = asyncio.run(main())
    assert answer.status == "complete"
    with Ledger(clock=clock) as ledger:
        november = ledger.month_summary("2026-11")
        december_now = ledger.month_summary(cap_micro_usd=1_000_000)
    assert november.calls == 1 and november.spent_micro_usd > 0  # charged where it began
    assert november.reserved_micro_usd == 0  # and settled there, not left open
    assert december_now.month == "2026-12" and december_now.charged_micro_usd == 0
    assert december_now.remaining_micro_usd == 1_000_000  # a whole new budget
    record = CallRecord()
    try:
        cloud_calls = [c for c in record.calls() if c.tier == "cloud"]
    finally:
        record.close()
    assert len(cloud_calls) == 1 and cloud_calls[0].cost_micro_usd == november.spent_micro_usd
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN, API_KEY], cloud=cloud)
