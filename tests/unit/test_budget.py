"""The budget ledger: cloud calls are reserved at their worst case, settled at their real
cost, refused past the cap, and charged to the UTC month they were made in."""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from app import cli
from app.core import budget, money
from app.core.budget import Ledger, cap, worst_case_micro_usd
from app.core.errors import BudgetExhausted, LedgerBusy, LedgerDamaged, StorageFailed
from tests.fixtures.policy_files import write_policy

USD = 1_000_000
JAN_15 = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


class Clock:
    """A settable clock, like the app's: aware UTC datetimes."""

    def __init__(self, now: datetime = JAN_15) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def ledger_at(tmp_path: Path, clock: Clock | None = None, **kwargs: object) -> Ledger:
    return Ledger(tmp_path / "ledger.sqlite3", clock=clock or Clock(), **kwargs)  # type: ignore[arg-type]


def reserve(ledger: Ledger, amount: int, limit: int) -> budget.Reservation:
    return ledger.reserve(amount, limit, purpose="plan", model="anthropic/claude-sonnet-4")


# -- money ---------------------------------------------------------------------------------

def test_worst_case_is_prompt_plus_max_tokens_plus_request() -> None:
    prices = {"prompt": "0.000003", "completion": "0.000015", "request": "0.0001"}
    # 1000 × 3 µ$ + 500 × 15 µ$ + 100 µ$
    assert worst_case_micro_usd(1000, 500, prices) == 3000 + 7500 + 100
    assert worst_case_micro_usd(0, 0, {"prompt": "0", "completion": "0"}) == 0  # free model
    decimals = {"prompt": Decimal("0.000003"), "completion": Decimal("0.000015")}
    assert worst_case_micro_usd(1000, 500, decimals) == 10_500  # no request price: 0


def test_worst_case_rounds_up_to_a_whole_micro_dollar_never_down() -> None:
    tiny = {"prompt": "0.0000000001", "completion": "0"}  # 0.0001 µ$ a token
    assert worst_case_micro_usd(1, 0, tiny) == 1
    assert worst_case_micro_usd(10_000, 0, tiny) == 1  # exactly 1 µ$
    assert worst_case_micro_usd(10_001, 0, tiny) == 2
    # 1.0000000000000000000000000001 µ$: beyond a float's and the default Decimal precision.
    fine = {"prompt": "0.000001", "completion": "0.0000000000000000000000000000000001"}
    assert worst_case_micro_usd(1, 1, fine) == 2


def test_worst_case_refuses_prices_it_cannot_be_sure_of() -> None:
    with pytest.raises(TypeError):
        worst_case_micro_usd(10, 10, {"prompt": 0.000003, "completion": "0"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="not a fixed price"):  # OpenRouter's router: "-1"
        worst_case_micro_usd(10, 10, {"prompt": "-1", "completion": "-1"})
    with pytest.raises(ValueError, match="no completion price"):
        worst_case_micro_usd(10, 10, {"prompt": "0.000001"})
    with pytest.raises(ValueError, match="not a number"):
        worst_case_micro_usd(10, 10, {"prompt": "cheap", "completion": "0"})
    with pytest.raises(ValueError, match="max_tokens"):
        worst_case_micro_usd(10, -1, {"prompt": "0", "completion": "0"})


def test_the_cap_is_the_smallest_limit_that_applies() -> None:
    assert cap(20 * USD, None, None) == 20 * USD
    assert cap(20 * USD, 10 * USD, None) == 10 * USD  # IT's ceiling
    assert cap(20 * USD, 10 * USD, 3 * USD) == 3 * USD  # the key's remaining credit
    assert cap(20 * USD, None, 50 * USD) == 20 * USD
    assert cap(5 * USD, 10 * USD, 50 * USD) == 5 * USD
    assert cap(20 * USD, None, -1) == 0  # a key over its limit: nothing, never negative


def test_dollars_and_micro_dollars() -> None:
    assert money.micro_usd(20, spend=False) == 20 * USD
    assert money.micro_usd(12.5, spend=False) == 12_500_000
    assert money.micro_usd("0.0000019", spend=False) == 1  # a limit rounds down
    assert money.micro_usd("0.0000011", spend=True) == 2  # a spend rounds up
    assert money.micro_usd(0.0012345, spend=True) == 1235  # through the text, not the float
    for not_money in (True, "n/a", "NaN", float("inf"), None):
        with pytest.raises(ValueError):
            money.micro_usd(not_money, spend=True)  # type: ignore[arg-type]
    assert money.format_usd(3_115_000) == "$3.12"
    assert money.format_usd(20 * USD) == "$20.00"
    assert money.format_usd(1234 * USD) == "$1,234.00"
    assert money.format_cost(2_800) == "$0.0028"


# -- reserving and settling ----------------------------------------------------------------

def test_reserve_then_settle_charges_the_real_cost(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    first = reserve(ledger, 30_000, USD)
    assert (first.amount_micro_usd, first.month, first.state) == (30_000, "2025-01", "open")
    assert first.reserved_at == JAN_15
    second = reserve(ledger, 50_000, USD)
    summary = ledger.month_summary(cap_micro_usd=USD)
    assert (summary.spent_micro_usd, summary.reserved_micro_usd) == (0, 80_000)
    assert summary.remaining_micro_usd == USD - 80_000

    ledger.settle(first.id, 12_345)
    summary = ledger.month_summary(cap_micro_usd=USD)
    assert (summary.spent_micro_usd, summary.reserved_micro_usd) == (12_345, 50_000)
    assert summary.charged_micro_usd == 62_345
    assert summary.remaining_micro_usd == USD - 62_345
    assert summary.calls == 2 and summary.flagged_count == 0
    settled = ledger.reservation(first.id)
    assert settled is not None and settled.state == "settled"
    assert settled.charged_micro_usd == 12_345

    ledger.settle(second.id, 0)  # failed before the cloud did any work
    assert ledger.month_summary().charged_micro_usd == 12_345
    with pytest.raises(ValueError, match="already settled"):
        ledger.settle(second.id, 10)
    with pytest.raises(KeyError):
        ledger.settle(999, 10)


def test_a_cost_above_the_estimate_is_recorded_as_it_is(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    r = reserve(ledger, 1_000, USD)
    ledger.settle(r.id, 1_500)
    assert ledger.month_summary().spent_micro_usd == 1_500


def test_exactly_at_the_cap_is_allowed_one_micro_dollar_over_is_refused(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    settled = reserve(ledger, 400_000, USD)
    ledger.settle(settled.id, 300_000)
    reserve(ledger, 200_000, USD)  # open: 300k settled + 200k reserved
    with pytest.raises(BudgetExhausted) as refused:
        reserve(ledger, 500_001, USD)
    assert refused.value.title == "This month's cloud planning budget is used up."
    assert "1 February 2025" in refused.value.hint and "Settings" in refused.value.hint
    assert "$0.50 of $1.00 is left" in refused.value.detail
    assert ledger.month_summary().calls == 2  # nothing written

    reserve(ledger, 500_000, USD)  # exactly to the cap
    assert ledger.month_summary(cap_micro_usd=USD).remaining_micro_usd == 0
    with pytest.raises(BudgetExhausted):
        reserve(ledger, 1, USD)
    reserve(ledger, 0, USD)  # a free model still fits


def test_a_lower_cap_refuses_what_a_higher_one_admitted(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    reserve(ledger, 600_000, USD)
    with pytest.raises(BudgetExhausted):
        reserve(ledger, 1, 500_000)  # e.g. the key's remaining credit dropped
    assert ledger.month_summary(cap_micro_usd=500_000).remaining_micro_usd == 0


def test_flag_unsettled_keeps_the_money_charged(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    r = reserve(ledger, 70_000, 100_000)
    ledger.flag_unsettled(r.id, "the stream was cut before the cost arrived")
    summary = ledger.month_summary(cap_micro_usd=100_000)
    assert (summary.reserved_micro_usd, summary.flagged_micro_usd) == (0, 70_000)
    assert summary.flagged_count == 1 and summary.remaining_micro_usd == 30_000
    with pytest.raises(BudgetExhausted):
        reserve(ledger, 30_001, 100_000)
    [flagged] = ledger.to_reconcile()
    assert (flagged.id, flagged.state, flagged.note) == (
        r.id, "unsettled", "the stream was cut before the cost arrived")

    ledger.close()
    again = ledger_at(tmp_path)  # reopening releases nothing
    assert again.month_summary(cap_micro_usd=100_000).remaining_micro_usd == 30_000

    again.settle(r.id, 20_000)  # reconciled later with the real cost
    assert again.to_reconcile() == []
    assert again.month_summary(cap_micro_usd=100_000).remaining_micro_usd == 80_000
    with pytest.raises(ValueError, match="already settled"):
        again.flag_unsettled(r.id, "late")


def test_an_open_reservation_survives_reopening_and_old_ones_are_flagged(tmp_path: Path) -> None:
    clock = Clock()
    ledger = ledger_at(tmp_path, clock)
    r = reserve(ledger, 250_000, USD)
    # No settle, no close: the process "dies" here.
    again = ledger_at(tmp_path, clock)
    assert again.recovered == 0  # a minute-old call may still be streaming elsewhere
    assert again.month_summary().reserved_micro_usd == 250_000

    clock.now += timedelta(hours=1)
    later = ledger_at(tmp_path, clock)
    assert later.recovered == 1
    summary = later.month_summary(cap_micro_usd=USD)
    assert (summary.reserved_micro_usd, summary.flagged_micro_usd) == (0, 250_000)
    assert summary.remaining_micro_usd == 750_000
    [flagged] = later.to_reconcile()
    assert flagged.id == r.id and "closed" in flagged.note


def test_arguments_that_are_not_money_are_refused(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            reserve(ledger, bad, USD)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        reserve(ledger, 1, -1)
    assert ledger.month_summary().calls == 0


def test_a_naive_clock_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        Ledger(tmp_path / "ledger.sqlite3", clock=lambda: datetime(2025, 1, 1))


# -- months --------------------------------------------------------------------------------

def test_months_roll_over_at_midnight_utc(tmp_path: Path) -> None:
    clock = Clock(datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC))
    ledger = ledger_at(tmp_path, clock)
    january = reserve(ledger, 900_000, USD)
    assert january.month == "2025-01"
    with pytest.raises(BudgetExhausted) as refused:
        reserve(ledger, 200_000, USD)
    assert "1 February 2025" in refused.value.hint

    clock.now += timedelta(seconds=1)
    february = reserve(ledger, 200_000, USD)  # a new month, a whole new budget
    assert february.month == "2025-02"
    assert ledger.current_month() == "2025-02"
    ledger.settle(january.id, 100_000)  # settled in February, charged to January
    assert ledger.month_summary("2025-01").spent_micro_usd == 100_000
    assert ledger.month_summary().reserved_micro_usd == 200_000
    assert ledger.month_summary().spent_micro_usd == 0


def test_the_month_is_the_utc_month_whatever_the_clock_zone(tmp_path: Path) -> None:
    # 00:30 on 1 Feb in Berlin is still 31 Jan in UTC.
    berlin = timezone(timedelta(hours=1))
    ledger = ledger_at(tmp_path, Clock(datetime(2025, 2, 1, 0, 30, tzinfo=berlin)))
    r = reserve(ledger, 1, USD)
    assert r.month == "2025-01" and r.reserved_at.tzinfo == UTC


def test_daily_spend_lists_every_day_of_the_month(tmp_path: Path) -> None:
    clock = Clock(datetime(2024, 2, 3, 9, 0, tzinfo=UTC))
    ledger = ledger_at(tmp_path, clock)
    a = reserve(ledger, 100, USD)
    reserve(ledger, 200, USD)  # open: counted at its reserved amount
    ledger.settle(a.id, 40)
    clock.now = datetime(2024, 2, 29, 23, 0, tzinfo=UTC)
    reserve(ledger, 7, USD)
    days = ledger.daily_spend("2024-02")
    assert len(days) == 29  # a leap year
    assert days[0] == (date(2024, 2, 1), 0)
    assert days[2] == (date(2024, 2, 3), 240)
    assert days[-1] == (date(2024, 2, 29), 7)
    assert sum(amount for _, amount in days) == ledger.month_summary().charged_micro_usd
    assert ledger.daily_spend()[2][1] == 240  # this month by default
    with pytest.raises(ValueError, match="YYYY-MM"):
        ledger.daily_spend("February")


def test_past_months_newest_first_with_their_cap(tmp_path: Path) -> None:
    clock = Clock(datetime(2024, 12, 10, tzinfo=UTC))
    ledger = ledger_at(tmp_path, clock)
    ledger.settle(reserve(ledger, 5_000, 20 * USD).id, 4_000)
    clock.now = datetime(2025, 1, 2, tzinfo=UTC)
    reserve(ledger, 1_000, 10 * USD)
    ledger.flag_unsettled(reserve(ledger, 2_000, 15 * USD).id, "cut")
    assert [(s.month, s.charged_micro_usd, s.cap_micro_usd) for s in ledger.months()] == [
        ("2025-01", 3_000, 15 * USD), ("2024-12", 4_000, 20 * USD)]
    empty = ledger.month_summary("2023-05")
    assert (empty.charged_micro_usd, empty.calls, empty.cap_micro_usd) == (0, 0, None)
    assert empty.remaining_micro_usd is None


# -- storage -------------------------------------------------------------------------------

def test_the_ledger_is_in_the_data_folder_in_wal_mode(switchboard_home: Path) -> None:
    with Ledger() as ledger:
        assert ledger.path == switchboard_home / "data" / "ledger.sqlite3"
        reserve(ledger, 1, USD)
        assert ledger.path.with_name("ledger.sqlite3-wal").exists()
        assert ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_write_lock_held_past_the_timeout_is_ledger_busy(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path, busy_timeout_s=0.2)
    other = sqlite3.connect(tmp_path / "ledger.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LedgerBusy) as caught:
            reserve(ledger, 1, USD)
        assert "locked" in caught.value.detail
        assert ledger.month_summary().calls == 0  # reading is not blocked (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    reserve(ledger, 1, USD)


def test_a_full_disk_is_a_storage_failure_and_nothing_is_charged(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    reserve(ledger, 10, USD)
    page_count = ledger._db.execute("PRAGMA page_count").fetchone()[0]
    ledger._db.execute(f"PRAGMA max_page_count={page_count}")  # SQLite's own "disk full"
    with pytest.raises(StorageFailed) as caught:
        ledger.reserve(10, USD, purpose="x" * 200_000, model="m")
    assert type(caught.value) is StorageFailed and "full" in caught.value.detail
    assert ledger.month_summary().charged_micro_usd == 10


def test_a_damaged_ledger_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    db.write_bytes(b"not a database" * 1000)
    with pytest.raises(LedgerDamaged) as caught:
        Ledger(db)
    assert "damaged" in caught.value.title
    # Starting again empty would hand back money already spent.
    assert db.read_bytes() == b"not a database" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite3"]


def test_an_unwritable_place_is_a_storage_failure(tmp_path: Path) -> None:
    with pytest.raises(StorageFailed):
        Ledger(tmp_path / "no such folder" / "ledger.sqlite3")


# -- the CLI -------------------------------------------------------------------------------

def test_cli_budget_json_prints_this_month(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    with Ledger() as ledger:
        settled = reserve(ledger, 50_000, USD)
        ledger.settle(settled.id, 31_200)
        reserve(ledger, 20_000, USD)
    out = io.StringIO()
    assert cli.budget(as_json=True, out=out) == 0
    report = json.loads(out.getvalue())
    assert report["month"] == now.strftime("%Y-%m")
    assert report["spent_micro_usd"] == 31_200
    assert report["reserved_micro_usd"] == 20_000
    assert report["charged_micro_usd"] == 51_200
    assert report["ledger"].endswith("ledger.sqlite3")
    if not hasattr(cli.Settings(), "monthly_budget_usd"):
        assert report["cap_micro_usd"] is None and report["remaining_micro_usd"] is None

    text = io.StringIO()
    assert cli.budget(as_json=False, out=text) == 0
    assert "spent:      $0.03" in text.getvalue() and "reserved:   $0.02" in text.getvalue()


def test_cli_budget_uses_the_monthly_budget_setting() -> None:
    cli.Settings().changed(monthly_budget_usd=20.0).save()
    with Ledger() as ledger:
        reserve(ledger, 3_120_000, 20 * USD)
    out = io.StringIO()
    assert cli.budget(as_json=True, out=out) == 0
    report = json.loads(out.getvalue())
    assert (report["cap_micro_usd"], report["remaining_micro_usd"]) == (20 * USD, 16_880_000)
    text = io.StringIO()
    cli.budget(out=text)
    assert "cap:        $20.00" in text.getvalue()
    assert "remaining:  $16.88" in text.getvalue()


def test_cli_budget_caps_the_setting_at_its_ceiling() -> None:
    write_policy({"budget_ceiling_usd": 5})
    cli.Settings().changed(monthly_budget_usd=20.0).save()
    out = io.StringIO()
    assert cli.budget(as_json=True, out=out) == 0
    assert json.loads(out.getvalue())["cap_micro_usd"] == 5 * USD


def test_cli_budget_with_a_damaged_ledger_exits_2(switchboard_home: Path) -> None:
    db = budget.default_path()
    db.write_bytes(b"junk" * 4096)
    err = io.StringIO()
    assert cli.budget(out=io.StringIO(), err=err) == 2
    assert "damaged" in err.getvalue()
