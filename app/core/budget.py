"""The cloud planning budget: a ledger in SQLite (WAL) that reserves before a cloud call and
settles after it, so the user's monthly budget is never overspent.

Money is integer micro-dollars (see `money`); budget months are UTC calendar months.
Every reservation counts against its month from the moment it is written until it is
settled with the real cost; a call cut off before its cost arrived stays charged at the
reserved amount and is flagged for reconciliation, and so does one left open by a process
that died. Reserving is one `BEGIN IMMEDIATE` transaction, so several Switchboard
processes on one ledger file cannot overspend together.

The ledger's methods block (on the disk, and up to `busy_timeout_s` on another process's
write): call them from the core's loop through `asyncio.to_thread`.
"""

from __future__ import annotations

import calendar
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal, Inexact, localcontext
from pathlib import Path
from typing import Any, Literal

from app.core import paths
from app.core.db import open_checked, translated
from app.core.errors import BudgetExhausted, LedgerBusy, LedgerDamaged
from app.core.money import MICRO_PER_USD, format_usd

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.sqlite3"

# An open reservation older than this when a ledger is opened was left by a process that
# closed or died before the cost arrived: no planning call streams this long. It is only
# relabelled for reconciliation; it stays charged either way.
STALE_AFTER = timedelta(minutes=15)
APP_CLOSED = "Switchboard closed before the cost of this call arrived."

State = Literal["open", "settled", "unsettled"]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_path() -> Path:
    return paths.data_dir() / LEDGER_FILE


@dataclass(frozen=True, slots=True)
class Reservation:
    """One cloud call's charge. `charged_micro_usd` is what it counts against its month:
    the real cost once settled, the reserved (worst-case) amount until then."""

    id: int
    amount_micro_usd: int  # the worst case reserved before the call
    month: str  # "YYYY-MM", UTC
    reserved_at: datetime
    purpose: str
    model: str
    state: State = "open"
    cost_micro_usd: int | None = None  # the real cost, once settled
    note: str = ""  # why it is flagged for reconciliation

    @property
    def charged_micro_usd(self) -> int:
        if self.state == "settled" and self.cost_micro_usd is not None:
            return self.cost_micro_usd
        return self.amount_micro_usd


@dataclass(frozen=True, slots=True)
class MonthSummary:
    """One budget month. Everything charged = settled + reserved + flagged.

    `cap_micro_usd` is the cap passed to `month_summary`, or else the cap in force at the
    month's last reservation (None when neither is known); `remaining_micro_usd` is None
    without a cap and never below zero.
    """

    month: str
    spent_micro_usd: int  # settled with the real cost
    reserved_micro_usd: int  # open: the call is in flight (or its process died very recently)
    flagged_micro_usd: int  # no cost arrived: charged at the reserved amount, to reconcile
    flagged_count: int
    calls: int
    cap_micro_usd: int | None

    @property
    def charged_micro_usd(self) -> int:
        return self.spent_micro_usd + self.reserved_micro_usd + self.flagged_micro_usd

    @property
    def remaining_micro_usd(self) -> int | None:
        if self.cap_micro_usd is None:
            return None
        return max(0, self.cap_micro_usd - self.charged_micro_usd)

    def to_json(self) -> dict[str, object]:
        return {"month": self.month, "spent_micro_usd": self.spent_micro_usd,
                "reserved_micro_usd": self.reserved_micro_usd,
                "flagged_micro_usd": self.flagged_micro_usd, "flagged_count": self.flagged_count,
                "charged_micro_usd": self.charged_micro_usd, "calls": self.calls,
                "cap_micro_usd": self.cap_micro_usd,
                "remaining_micro_usd": self.remaining_micro_usd}


# ---------------------------------------------------------------------------------------
# Money


def worst_case_micro_usd(prompt_tokens: int, max_tokens: int,
                         prices: Mapping[str, Decimal | str]) -> int:
    """What a call can cost at most, rounded up to a whole micro-dollar.

    `prices` are OpenRouter's, USD per token as exact decimals (the strings from
    `/api/v1/models` or Decimals of them): `prompt`, `completion` and optionally `request`
    (per call). Floats are refused: they are not exact. A negative price (OpenRouter's "-1"
    for a router whose price depends on the model it picks) has no worst case and is
    refused too.
    """
    for name, count in (("prompt_tokens", prompt_tokens), ("max_tokens", max_tokens)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{name} must be a whole number of tokens >= 0, not {count!r}")
    prompt, completion, request = (_price(prices, name, required=name != "request")
                                   for name in ("prompt", "completion", "request"))
    with localcontext() as ctx:
        # Exact or an error: a rounded product could round a cost down.
        ctx.prec = 200
        ctx.traps[Inexact] = True
        usd = prompt * prompt_tokens + completion * max_tokens + request
        return int((usd * MICRO_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def _price(prices: Mapping[str, Decimal | str], name: str, *, required: bool) -> Decimal:
    value = prices.get(name)
    if value is None or value == "":
        if required:
            raise ValueError(f"no {name} price")
        return Decimal(0)
    if not isinstance(value, Decimal | str):
        raise TypeError(f"the {name} price must be a Decimal or a decimal string, "
                        f"not {type(value).__name__}")
    try:
        price = Decimal(value)
    except ArithmeticError as e:  # decimal.InvalidOperation
        raise ValueError(f"the {name} price {value!r} is not a number") from e
    if not price.is_finite() or price < 0:
        raise ValueError(f"the {name} price {value!r} is not a fixed price")
    return price


def cap(user_budget_micro_usd: int, policy_ceiling_micro_usd: int | None = None,
        key_remaining_micro_usd: int | None = None) -> int:
    """The monthly cap: the smallest of the user's budget, IT's ceiling in the machine
    policy and what the OpenRouter key has left (None: no such limit). Never below zero."""
    limits = [user_budget_micro_usd, policy_ceiling_micro_usd, key_remaining_micro_usd]
    return max(0, min(limit for limit in limits if limit is not None))


# ---------------------------------------------------------------------------------------
# Months


def month_of(moment: datetime) -> str:
    """The budget month ("YYYY-MM") of an aware datetime, in UTC."""
    return _utc(moment).strftime("%Y-%m")


def next_month_start(month: str) -> date:
    year, mon = _parse_month(month)
    return date(year + mon // 12, mon % 12 + 1, 1)


def _parse_month(month: str) -> tuple[int, int]:
    try:
        year, mon = (int(part) for part in month.split("-"))
        date(year, mon, 1)
    except ValueError as e:
        raise ValueError(f"a month is written YYYY-MM, not {month!r}") from e
    return year, mon


_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December")


def _in_words(day: date) -> str:
    # Not strftime("%B"): that follows the C locale, which Qt may have changed.
    return f"{day.day} {_MONTH_NAMES[day.month - 1]} {day.year}"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"the clock must give an aware datetime (UTC), not {moment!r}")
    return moment.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    # A fixed width, so that stamps sort and compare as text; the date is the first 10.
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unstamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------
# The ledger

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reservations (
    id INTEGER PRIMARY KEY,
    month TEXT NOT NULL,                  -- 'YYYY-MM', UTC: the month it is charged to
    reserved_at TEXT NOT NULL,            -- 'YYYY-MM-DDTHH:MM:SS.ffffffZ', UTC
    amount_micro_usd INTEGER NOT NULL CHECK (amount_micro_usd >= 0),
    cap_micro_usd INTEGER NOT NULL,       -- the cap it was admitted under
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'settled', 'unsettled')),
    cost_micro_usd INTEGER CHECK (cost_micro_usd IS NULL OR cost_micro_usd >= 0),
    settled_at TEXT,
    purpose TEXT NOT NULL,
    model TEXT NOT NULL,
    pid INTEGER NOT NULL,                 -- the process that reserved it
    note TEXT NOT NULL DEFAULT ''         -- why it is flagged for reconciliation
);
CREATE INDEX IF NOT EXISTS reservations_by_month ON reservations(month, state);
"""

# What a row counts against its month: the real cost once settled, else the reserved amount.
_CHARGED = "CASE WHEN state = 'settled' THEN cost_micro_usd ELSE amount_micro_usd END"
_COLUMNS = "id, amount_micro_usd, month, reserved_at, purpose, model, state, cost_micro_usd, note"

def _translated(path: Path) -> AbstractContextManager[None]:
    """sqlite3's failures as LedgerBusy (locked past the timeout), LedgerDamaged or
    StorageFailed (disk full, I/O error, no such folder)."""
    return translated(f"budget ledger {path}", LedgerDamaged, LedgerBusy)


class Ledger:
    """The budget ledger at `path` (default: `ledger.sqlite3` in the data folder).

    `clock` gives the current time as an aware datetime (tests inject one). Thread-safe; each
    Ledger has one connection, and any number of Ledgers, in any processes, may share a file.
    Opening relabels open reservations older than `stale_after` as unsettled, "app closed"
    (`recovered` counts them): still charged, now shown for reconciliation. A damaged file
    raises LedgerDamaged and is left exactly as it is: starting it again empty would give
    back money already spent.
    """

    def __init__(self, path: Path | None = None, *, clock: Clock = utc_now,
                 busy_timeout_s: float = 10.0, stale_after: timedelta = STALE_AFTER) -> None:
        self.path = path or default_path()
        self._clock = clock
        self._lock = threading.Lock()
        # `timeout` is SQLite's busy timeout: how long BEGIN IMMEDIATE waits for another
        # process's write. FULL, not NORMAL: with NORMAL a commit can be lost to a power
        # cut, and a lost reservation is budget handed back.
        self._db = open_checked(self.path, what=f"budget ledger {self.path}",
                                damaged=LedgerDamaged, busy=LedgerBusy, schema=_SCHEMA,
                                synchronous="FULL",
                                timeout=busy_timeout_s)
        try:
            self.recovered = self._mark_stale(stale_after)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK if the block raises.

        IMMEDIATE takes the write lock before the first read, so what a transaction reads
        (the month's charges) cannot change before it writes: two processes reserving at
        once are serialised, the second one waiting up to the busy timeout.
        """
        with self._lock, _translated(self.path), self._db:
            self._db.execute("BEGIN IMMEDIATE")
            yield self._db

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        with self._lock, _translated(self.path):
            return self._db.execute(sql, args).fetchall()

    def _now(self) -> datetime:
        return _utc(self._clock())

    def _mark_stale(self, stale_after: timedelta) -> int:
        before = _stamp(self._now() - stale_after)
        with self._transaction() as db:
            cur = db.execute("UPDATE reservations SET state = 'unsettled', note = ? "
                             "WHERE state = 'open' AND reserved_at < ?", (APP_CLOSED, before))
        if cur.rowcount:
            log.warning("budget: %d cloud call(s) left without a cost by a closed Switchboard "
                        "stay charged, flagged for reconciliation", cur.rowcount)
        return cur.rowcount

    # -- writing --------------------------------------------------------------------------

    def reserve(self, estimate_micro_usd: int, cap_micro_usd: int, *, purpose: str,
                model: str) -> Reservation:
        """Charge a cloud call's worst case before making it, or raise BudgetExhausted.

        Refused, with nothing written, when this month's settled spend + open and flagged
        reservations + `estimate_micro_usd` would exceed `cap_micro_usd`; exactly reaching
        the cap is allowed.
        """
        _check_amount("estimate_micro_usd", estimate_micro_usd)
        _check_amount("cap_micro_usd", cap_micro_usd)
        now = self._now()
        month = month_of(now)
        with self._transaction() as db:
            (charged,) = db.execute(
                f"SELECT COALESCE(SUM({_CHARGED}), 0) FROM reservations WHERE month = ?",
                (month,)).fetchone()
            if charged + estimate_micro_usd > cap_micro_usd:
                left = max(0, cap_micro_usd - charged)
                raise BudgetExhausted(
                    f"this call could cost up to {format_usd(estimate_micro_usd)}; "
                    f"{format_usd(left)} of {format_usd(cap_micro_usd)} is left",
                    until=_in_words(next_month_start(month)))
            cur = db.execute(
                "INSERT INTO reservations (month, reserved_at, amount_micro_usd, cap_micro_usd, "
                "purpose, model, pid) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (month, _stamp(now), estimate_micro_usd, cap_micro_usd, purpose, model,
                 os.getpid()))
        return Reservation(int(cur.lastrowid or 0), estimate_micro_usd, month, now, purpose, model)

    def settle(self, reservation_id: int, cost_micro_usd: int) -> None:
        """Charge the real cost (the response's `usage.cost`) instead of the worst case.

        A flagged reservation may be settled later, when its cost is found (reconciliation,
        or a call still streaming when another process flagged it). A call that failed before
        the cloud did any work is settled with 0. The cost is recorded as it is, even above
        the reserved amount: the ledger says what was spent.
        """
        _check_amount("cost_micro_usd", cost_micro_usd)
        with self._transaction() as db:
            state = self._state(db, reservation_id)
            if state == "settled":
                raise ValueError(f"reservation {reservation_id} is already settled")
            db.execute("UPDATE reservations SET state = 'settled', cost_micro_usd = ?, "
                       "settled_at = ? WHERE id = ?",
                       (cost_micro_usd, _stamp(self._now()), reservation_id))

    def flag_unsettled(self, reservation_id: int, why: str) -> None:
        """The call ended without a cost (a stream cut off): it stays charged at the reserved
        amount and is flagged, with `why`, for reconciliation."""
        with self._transaction() as db:
            state = self._state(db, reservation_id)
            if state == "settled":
                raise ValueError(f"reservation {reservation_id} is already settled")
            db.execute("UPDATE reservations SET state = 'unsettled', note = ? WHERE id = ?",
                       (why, reservation_id))

    @staticmethod
    def _state(db: sqlite3.Connection, reservation_id: int) -> str:
        row = db.execute("SELECT state FROM reservations WHERE id = ?",
                         (reservation_id,)).fetchone()
        if row is None:
            raise KeyError(f"no reservation {reservation_id}")
        return str(row[0])

    # -- reading --------------------------------------------------------------------------

    def current_month(self) -> str:
        return month_of(self._now())

    def month_summary(self, month: str | None = None, *,
                      cap_micro_usd: int | None = None) -> MonthSummary:
        """This month's (or `month`'s, "YYYY-MM") spend, reservations and flags."""
        month = month or self.current_month()
        _parse_month(month)
        [summary] = self._summaries("WHERE month = ?", (month,), cap_micro_usd) or [
            MonthSummary(month, 0, 0, 0, 0, 0, cap_micro_usd)]
        return summary

    def months(self) -> list[MonthSummary]:
        """Every month with a cloud call, newest first, each with the cap of its last call."""
        return self._summaries("", (), None)

    def _summaries(self, where: str, args: tuple[object, ...],
                   cap_micro_usd: int | None) -> list[MonthSummary]:
        rows = self._read(
            "SELECT month, "
            "  COALESCE(SUM(CASE WHEN state = 'settled' THEN cost_micro_usd END), 0), "
            "  COALESCE(SUM(CASE WHEN state = 'open' THEN amount_micro_usd END), 0), "
            "  COALESCE(SUM(CASE WHEN state = 'unsettled' THEN amount_micro_usd END), 0), "
            "  SUM(state = 'unsettled'), COUNT(*), "
            "  (SELECT r.cap_micro_usd FROM reservations r WHERE r.month = reservations.month "
            "   ORDER BY r.id DESC LIMIT 1) "
            f"FROM reservations {where} GROUP BY month ORDER BY month DESC", args)
        return [MonthSummary(m, s, r, f, n, c, cap_micro_usd if cap_micro_usd is not None else last)
                for m, s, r, f, n, c, last in rows]

    def daily_spend(self, month: str | None = None) -> list[tuple[date, int]]:
        """What each day of the month (UTC) was charged, every day listed, for a chart."""
        month = month or self.current_month()
        year, mon = _parse_month(month)
        rows = self._read(f"SELECT substr(reserved_at, 1, 10), SUM({_CHARGED}) "
                          "FROM reservations WHERE month = ? GROUP BY 1", (month,))
        by_day: dict[str, int] = dict(rows)
        days = calendar.monthrange(year, mon)[1]
        return [(d, by_day.get(d.isoformat(), 0))
                for d in (date(year, mon, n) for n in range(1, days + 1))]

    def reservation(self, reservation_id: int) -> Reservation | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM reservations WHERE id = ?", (reservation_id,))
        return _reservation(rows[0]) if rows else None

    def to_reconcile(self) -> list[Reservation]:
        """Flagged calls, oldest first: charged at their worst case until settled."""
        rows = self._read(f"SELECT {_COLUMNS} FROM reservations WHERE state = 'unsettled' "
                          "ORDER BY id")
        return [_reservation(row) for row in rows]


def _reservation(row: Any) -> Reservation:
    id_, amount, month, reserved_at, purpose, model, state, cost, note = row
    return Reservation(id_, amount, month, _unstamp(reserved_at), purpose, model, state, cost,
                       note)


def _check_amount(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number of micro-dollars >= 0, not {value!r}")
