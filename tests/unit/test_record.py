"""The record of calls: a row for each model call made inside a piece of work, its
baseline at the planner's price, a damaged file kept aside, a full disk that never
fails the call; and what a month comes to (report, CSV)."""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from app.core import paths
from app.core.chat import footer
from app.core.history import Message
from app.core.routing.record import (
    COLUMNS,
    Call,
    CallFacts,
    CallRecord,
    Outcome,
    Work,
    current_work,
    purpose,
    record_call,
    reference_prices,
    working_on,
)
from app.core.routing.report import month_report, write_csv
from app.core.routing.router import Override, Route
from app.core.routing.tiers import Tier, Workflow

WHEN = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def facts(tier: Tier = Tier.OFFICE_NODE, node: str = "ai-1:8080", *, prompt: int = 1000,
          completion: int = 500, cost: int = 0, outcome: str = Outcome.OK,
          fallback_from: tuple[str, ...] = (), at: datetime = WHEN) -> CallFacts:
    return CallFacts(tier=tier, node=node, model="qwen", started_at=at, prompt_tokens=prompt,
                     completion_tokens=completion, tokens_counted=False, cost_micro_usd=cost,
                     first_token_ms=120, total_ms=900, outcome=outcome,
                     fallback_from=fallback_from)


LOCAL = Route(False, "a single-step request runs locally")


def work(record: CallRecord | None, workflow: Workflow = Workflow.CHAT,
         route: Route = LOCAL) -> Work:
    return Work(workflow, route, record, reference_prices("anthropic/claude-sonnet-4.5"))


def test_a_call_inside_work_is_recorded_with_its_route_and_baseline() -> None:
    record = CallRecord()

    async def main() -> None:
        with working_on(work(record, Workflow.PLANNED_TASK,
                             Route(True, "you asked to plan this", Override.PLAN))) as w:
            with purpose("plan"):
                await record_call(facts(Tier.CLOUD, "OpenRouter", prompt=2000, completion=300,
                                        cost=10_500))
            await record_call(facts(fallback_from=("ai-2:8080",)))
            assert current_work() is w
        assert current_work() is None
        assert w.tally.tokens == 3800 and w.tally.cloud_cost_micro_usd == 10_500
        assert w.tally.places == ["ai-1:8080"] and w.tally.planned_in_cloud
        assert w.tally.fallbacks == 1

    asyncio.run(main())
    plan, step = record.calls()
    record.close()
    assert (plan.workflow, plan.purpose, plan.route, plan.override, plan.tier) == (
        "planned_task", "plan", "cloud plan", "plan", "cloud")
    assert plan.reason == "you asked to plan this"
    # Claude Sonnet 4.5 on OpenRouter: $3 a million prompt tokens, $15 a million answer.
    assert plan.baseline_micro_usd == 2000 * 3 + 300 * 15
    assert (step.purpose, step.node, step.fallbacks, step.fallback_from) == (
        "answer", "ai-1:8080", 1, "ai-2:8080")
    assert step.baseline_micro_usd == 1000 * 3 + 500 * 15 and step.cost_micro_usd == 0
    assert step.at == WHEN and step.first_token_ms == 120


def test_a_call_outside_any_work_is_not_recorded() -> None:
    assert asyncio.run(record_call(facts())) is None
    record = CallRecord()
    assert record.calls() == []
    record.close()


def test_the_baseline_uses_openrouters_price_once_fetched() -> None:
    record = CallRecord()
    assert record.baseline_prices("openai/gpt-5").source == "reference"
    unknown = record.baseline_prices("some/new-model")
    assert unknown.source == "reference for anthropic/claude-sonnet-4.5"
    record.remember_prices("some/new-model", Decimal("0.000002"), Decimal("0.00001"))
    fetched = record.baseline_prices("some/new-model")
    assert fetched.source == "OpenRouter"
    assert fetched.micro_usd(1000, 100) == 2000 + 1000
    record.close()


def test_a_damaged_record_is_kept_aside_and_a_new_one_started() -> None:
    path = paths.data_dir() / "calls.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    record = CallRecord()
    assert record.calls() == []
    assert len(record.problems) == 1 and "kept as calls.sqlite3.damaged-" in record.problems[0]
    record.close()
    (aside,) = paths.data_dir().glob("calls.sqlite3.damaged-*")
    assert aside.read_bytes().startswith(b"this is not a database")


def test_a_full_disk_never_fails_the_call(caplog: pytest.LogCaptureFixture) -> None:
    record = CallRecord()
    pages = record._db.execute("PRAGMA page_count").fetchone()[0]
    record._db.execute(f"PRAGMA max_page_count={pages}")

    async def main() -> Call | None:
        with working_on(work(record)) as w:
            result = None
            for _ in range(200):  # enough rows to need a new page
                result = await record_call(facts())
            assert w.tally.calls == 200  # the footer still adds them up
            return result

    assert asyncio.run(main()) is not None
    assert "could not be recorded" in caplog.text and "full" in caplog.text
    record.close()


def test_calls_are_read_by_month(tmp_path: Path) -> None:
    record = CallRecord(tmp_path / "calls.sqlite3")

    async def main() -> None:
        with working_on(work(record)):
            for moment in (datetime(2026, 10, 31, 23, 59, tzinfo=UTC), WHEN,
                           datetime(2026, 12, 1, 0, 0, tzinfo=UTC)):
                await record_call(facts(at=moment))

    asyncio.run(main())
    assert [c.at.day for c in record.calls("2026-11")] == [20]
    assert len(record.calls()) == 3
    record.close()
    # Nothing but counts and names is kept: no column can hold a prompt or an answer.
    with sqlite3.connect(tmp_path / "calls.sqlite3") as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(calls)")}
    assert not columns & {"prompt", "answer", "text", "content", "messages"}


# ---------------------------------------------------------------- what a month comes to


def call(tier: Tier, workflow: Workflow, tokens: int, *, cost: int = 0, baseline: int = 0,
         fallbacks: int = 0, day: int = 20) -> Call:
    return Call(at=datetime(2026, 11, day, 12, tzinfo=UTC), workflow=workflow.value,
                purpose="answer", route="local", reason="r", override="", tier=tier.value,
                node="n", model="m", prompt_tokens=tokens, completion_tokens=0,
                tokens_counted=False, cost_micro_usd=cost, baseline_micro_usd=baseline,
                first_token_ms=1, total_ms=2, fallbacks=fallbacks,
                fallback_from="x" if fallbacks else "", outcome="ok")


def test_a_month_adds_up_by_tier_workflow_and_day() -> None:
    calls = [
        call(Tier.OFFICE_NODE, Workflow.CHAT, 6000, baseline=30_000, day=2),
        call(Tier.LOCAL_GPUS, Workflow.SUMMARY, 3000, baseline=15_000, fallbacks=1, day=2),
        call(Tier.CLOUD, Workflow.PLANNED_TASK, 1000, cost=9_000, baseline=9_000, day=5),
        call(Tier.OFFICE_NODE, Workflow.PLANNED_TASK, 2000, cost=100, baseline=10_000, day=5),
    ]
    other_month = replace(call(Tier.CLOUD, Workflow.CHAT, 99),
                          at=datetime(2026, 12, 1, tzinfo=UTC))
    report = month_report([*calls, other_month], "2026-11", today=date(2026, 11, 6))
    total = report.total
    assert total.calls == 4
    assert total.tokens_by_tier == {"office_node": 8000, "local_gpus": 3000, "cloud": 1000}
    assert total.local_share == pytest.approx(11000 / 12000)
    assert (total.cloud_cost_micro_usd, total.local_cost_micro_usd) == (9_000, 100)
    assert total.baseline_micro_usd == 64_000
    assert total.savings_micro_usd == 64_000 - 9_000 - 100
    assert total.fallback_rate == 0.25
    planned = report.by_workflow["planned_task"]
    assert (planned.calls, planned.local_share) == (2, pytest.approx(2000 / 3000))
    assert report.by_workflow["document_question"].calls == 0  # every workflow is listed
    assert sorted(report.by_day) == [date(2026, 11, d) for d in range(1, 7)]
    assert report.by_day[date(2026, 11, 2)].tokens == 9000
    doc = report.to_json()
    assert {"month", "calls", "tokens_by_tier", "local_share", "cloud_cost_micro_usd",
            "baseline_micro_usd", "savings_micro_usd", "fallback_rate",
            "by_workflow"} <= set(doc)


def test_the_csv_has_one_row_a_call_with_the_records_columns() -> None:
    out = io.StringIO()
    calls = [call(Tier.CLOUD, Workflow.CHAT, 10, cost=5), call(Tier.OFFICE_NODE,
                                                               Workflow.SUMMARY, 20)]
    write_csv(calls, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == list(COLUMNS)
    assert [(r["tier"], r["prompt_tokens"], r["cost_micro_usd"]) for r in rows] == [
        ("cloud", "10", "5"), ("office_node", "20", "0")]
    assert rows[0]["at"] == "2026-11-20T12:00:00Z" and rows[0]["tokens_counted"] == "0"


def test_an_answers_footer_says_where_it_ran_and_what_it_took() -> None:
    local = Message(1, 1, "assistant", "x", ran_on="ai-1:8080", route="local", tokens=1234)
    planned = Message(2, 1, "assistant", "x", ran_on="ai-1:8080, Local GPUs",
                      route="cloud plan", tokens=5000, cost_micro_usd=12_400)
    assert footer(local) == "Ran on ai-1:8080 · 1,234 tokens · no cloud cost"
    assert footer(planned) == ("Planned in the cloud · ran on ai-1:8080, Local GPUs · "
                               "5,000 tokens · $0.01")
    assert footer(Message(3, 1, "assistant", "old answer")) == ""
