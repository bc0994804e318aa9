"""The record of every model call, on every tier: one row a call, never its text.

A row says when (UTC), what for (the workflow: chat, summary, document question,
planned task; and the call's purpose within it), how it was routed and why, where it
ran (tier, node, model), its tokens (from the server's usage, or counted by Switchboard
and marked so), what it cost (the cloud: OpenRouter's `usage.cost`; a node: IT's running
cost per million tokens, or nothing), what the same tokens would have cost at the cloud
planner's price (the cloud-only baseline), its timings, the fallbacks taken and how it
ended. The Usage page, `switchboard report` and the economics benchmark all read it.

How a call finds its workflow and route: the workspace opens a `Work` for each request
(`working_on`), which model calls made inside it (the tasks it starts included) find as
the current work. A call made outside any work (a test, a health check) is not recorded.
The work's `Tally` adds up its calls for the answer's footer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import astuple, dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from app.core import paths
from app.core.db import keep_aside, open_checked, translated
from app.core.errors import StorageFailed
from app.core.llm.openai_client import Delta, Finished, StreamEvent
from app.core.money import micro_usd
from app.core.routing.router import Override, Route
from app.core.routing.tiers import Tier, Workflow

log = logging.getLogger(__name__)

RECORD_FILE = "calls.sqlite3"

# What a million tokens cost on OpenRouter (prompt, completion), in USD, for the planner
# models Switchboard offers: the baseline when OpenRouter's own price list has not been
# fetched yet. OpenRouter's list prices in December 2026; a fetched price replaces them.
REFERENCE_PRICES_PER_MILLION: dict[str, tuple[str, str]] = {
    "anthropic/claude-sonnet-4.5": ("3", "15"),
    "anthropic/claude-opus-4.1": ("15", "75"),
    "openai/gpt-5": ("1.25", "10"),
    "google/gemini-2.5-pro": ("1.25", "10"),
}
DEFAULT_BASELINE_MODEL = "anthropic/claude-sonnet-4.5"


class Outcome:
    OK = "ok"
    FAILED = "failed"  # nothing came back
    CUT_OFF = "cut off"  # part of an answer came back, then a fault
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Call:
    """One model call, as the record keeps it (no prompt or answer text)."""

    at: datetime  # when it started, UTC
    workflow: str  # a Workflow
    purpose: str  # "answer", "summary part", "combining pass", "plan", "step", …
    route: str  # "local" or "cloud plan"
    reason: str
    override: str  # "", "plan" or "answer": the user's choice for this message
    tier: str  # a Tier
    node: str  # the node's name, "Local GPUs" or "OpenRouter"
    model: str
    prompt_tokens: int
    completion_tokens: int
    tokens_counted: bool  # the server reported none: Switchboard counted them
    cost_micro_usd: int
    baseline_micro_usd: int  # the same tokens at the cloud planner's price
    first_token_ms: int | None  # None when no token came
    total_ms: int
    fallbacks: int  # nodes tried before the one that answered (or failed last)
    fallback_from: str  # their names, comma-separated
    outcome: str  # an Outcome
    error: str = ""  # the error's type, when it failed

    @property
    def month(self) -> str:
        return self.at.strftime("%Y-%m")

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


COLUMNS = tuple(f.name for f in fields(Call))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,                    -- 'YYYY-MM-DDTHH:MM:SS.ffffffZ', UTC
    workflow TEXT NOT NULL,
    purpose TEXT NOT NULL,
    route TEXT NOT NULL,
    reason TEXT NOT NULL,
    override TEXT NOT NULL,
    tier TEXT NOT NULL,
    node TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    tokens_counted INTEGER NOT NULL,
    cost_micro_usd INTEGER NOT NULL,
    baseline_micro_usd INTEGER NOT NULL,
    first_token_ms INTEGER,
    total_ms INTEGER NOT NULL,
    fallbacks INTEGER NOT NULL,
    fallback_from TEXT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_by_time ON calls(at);
CREATE TABLE IF NOT EXISTS planner_prices (
    model TEXT PRIMARY KEY,
    prompt_usd_per_token TEXT NOT NULL,  -- exact decimals, as OpenRouter publishes them
    completion_usd_per_token TEXT NOT NULL,
    fetched_at TEXT NOT NULL
);
"""


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unstamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class CallRecord:
    """The record of calls in SQLite (`calls.sqlite3` in the data folder).

    Its methods block on the disk: the core calls them through `asyncio.to_thread`.
    A damaged file is kept aside and a new record started (`problems` says so): losing
    the statistics must never stop work. Thread-safe: one connection behind a lock, each
    write one transaction; several processes share the file through SQLite's locking.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.data_dir() / RECORD_FILE
        self.problems: list[str] = []
        self._lock = threading.Lock()  # parts of a summary are recorded from several threads
        try:
            self._db = self._open()
        except _RecordDamaged as damaged:
            log.error("the record of calls %s is damaged: %s", self.path, damaged.detail)
            aside = keep_aside(self.path)
            self.problems.append(f"The record of model calls was damaged; it was kept as "
                                 f"{aside.name} and a new one started.")
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        return open_checked(self.path, what="record of calls", damaged=_RecordDamaged,
                            schema=_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, call: Call) -> None:
        row = astuple(call)
        values = (_stamp(call.at), *row[1:])
        with self._lock, translated("record of calls", _RecordDamaged), self._db:
            self._db.execute("BEGIN")
            self._db.execute(f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES "
                             f"({', '.join('?' * len(COLUMNS))})", values)

    def calls(self, month: str | None = None) -> list[Call]:
        """The calls of a month ("YYYY-MM", UTC), or all of them, oldest first."""
        where, args = ("WHERE at >= ? AND at < ?", _month_bounds(month)) if month else ("", ())
        with self._lock, translated("record of calls", _RecordDamaged):
            rows = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM calls {where} "
                                    "ORDER BY at, id", args).fetchall()
        return [_call(row) for row in rows]

    def months(self) -> list[str]:
        """The months ("YYYY-MM") with calls, newest first."""
        with self._lock, translated("record of calls", _RecordDamaged):
            rows = self._db.execute("SELECT DISTINCT substr(at, 1, 7) FROM calls "
                                    "ORDER BY 1 DESC").fetchall()
        return [str(row[0]) for row in rows]

    def remember_prices(self, model: str, prompt_per_token: Decimal,
                        completion_per_token: Decimal) -> None:
        """OpenRouter's current price of a planner model, for later baselines."""
        with self._lock, translated("record of calls", _RecordDamaged), self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO planner_prices VALUES (?, ?, ?, ?)",
                             (model, str(prompt_per_token), str(completion_per_token),
                              _stamp(datetime.now(UTC))))

    def baseline_prices(self, model: str) -> BaselinePrices:
        """The planner model's price per token: as last fetched from OpenRouter, else the
        reference price, else the default planner's reference price (said in `source`)."""
        with self._lock, translated("record of calls", _RecordDamaged):
            row = self._db.execute("SELECT prompt_usd_per_token, completion_usd_per_token "
                                   "FROM planner_prices WHERE model=?", (model,)).fetchone()
        if row is not None:
            return BaselinePrices(model, Decimal(row[0]), Decimal(row[1]), "OpenRouter")
        return reference_prices(model)


class _RecordDamaged(StorageFailed):
    message = "The record of model calls is damaged."


def _month_bounds(month: str) -> tuple[str, str]:
    year, mon = (int(part) for part in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
    return _stamp(start), _stamp(end)


def _call(row: tuple[object, ...]) -> Call:
    values = list(row)
    values[0] = _unstamp(str(values[0]))
    values[COLUMNS.index("tokens_counted")] = bool(values[COLUMNS.index("tokens_counted")])
    return Call(*values)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# The baseline: what the same tokens would have cost in the cloud


@dataclass(frozen=True, slots=True)
class BaselinePrices:
    model: str
    prompt_per_token: Decimal  # USD
    completion_per_token: Decimal
    source: str  # "OpenRouter" (fetched), "reference" or "reference for <model>"

    def micro_usd(self, prompt_tokens: int, completion_tokens: int) -> int:
        usd = self.prompt_per_token * prompt_tokens \
            + self.completion_per_token * completion_tokens
        return micro_usd(usd, spend=True)


def reference_prices(model: str) -> BaselinePrices:
    source = "reference"
    if model not in REFERENCE_PRICES_PER_MILLION:
        model, source = DEFAULT_BASELINE_MODEL, f"reference for {DEFAULT_BASELINE_MODEL}"
    prompt, completion = REFERENCE_PRICES_PER_MILLION[model]
    million = Decimal(1_000_000)
    return BaselinePrices(model, Decimal(prompt) / million, Decimal(completion) / million,
                          source)


# ---------------------------------------------------------------------------------------
# The work in progress, and what its calls add up to


@dataclass
class Tally:
    """What one request's calls added up to, for the answer's footer."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_micro_usd: int = 0
    cloud_cost_micro_usd: int = 0
    calls: int = 0
    fallbacks: int = 0
    places: list[str] = field(default_factory=list)  # "node-a", "Local GPUs", in order
    planned_in_cloud: bool = False
    parent: Tally | None = field(default=None, repr=False)  # a step's tally adds up here too

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, call: Call) -> None:
        if self.parent is not None:
            self.parent.add(call)
        self.calls += 1
        self.prompt_tokens += call.prompt_tokens
        self.completion_tokens += call.completion_tokens
        self.cost_micro_usd += call.cost_micro_usd
        self.fallbacks += call.fallbacks
        if call.tier == Tier.CLOUD:
            self.cloud_cost_micro_usd += call.cost_micro_usd
            self.planned_in_cloud = True
        elif call.outcome != Outcome.FAILED and call.node not in self.places:
            self.places.append(call.node)


@dataclass
class Work:
    """One request in progress: where its calls are recorded and what they add up to."""

    workflow: Workflow
    route: Route
    record: CallRecord | None
    baseline: BaselinePrices
    tally: Tally = field(default_factory=Tally)
    purpose: str = "answer"


_current: ContextVar[Work | None] = ContextVar("switchboard_work", default=None)


def current_work() -> Work | None:
    return _current.get()


@contextmanager
def working_on(work: Work) -> Iterator[Work]:
    """Make `work` the current work for the calls made inside (and the tasks started
    inside, which copy the context when they are created)."""
    token = _current.set(work)
    try:
        yield work
    finally:
        _current.reset(token)


@contextmanager
def purpose(name: str) -> Iterator[None]:
    """Calls made inside are recorded with this purpose ("combining pass", "plan", …)."""
    work = _current.get()
    if work is None:
        yield
        return
    token = _current.set(_with_purpose(work, name))
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def part_of_work(name: str) -> Iterator[Tally]:
    """Calls made inside are one part of the current work (a step of a plan): recorded
    with this purpose, and added up in a tally of their own as well as the work's."""
    work = _current.get()
    if work is None:
        yield Tally()
        return
    tally = Tally(parent=work.tally)
    token = _current.set(Work(work.workflow, work.route, work.record, work.baseline, tally,
                              name))
    try:
        yield tally
    finally:
        _current.reset(token)


def _with_purpose(work: Work, name: str) -> Work:
    # The same tally and record, another purpose: a shallow copy shares the tally.
    return Work(work.workflow, work.route, work.record, work.baseline, work.tally, name)


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the tier that made a call knows of it; the rest comes from the current work."""

    tier: Tier
    node: str
    model: str
    started_at: datetime
    prompt_tokens: int
    completion_tokens: int
    tokens_counted: bool
    cost_micro_usd: int
    first_token_ms: int | None
    total_ms: int
    outcome: str
    fallback_from: tuple[str, ...] = ()
    error: str = ""


@dataclass
class CallTrace:
    """A call as it streams, as the record needs it: when it started, when its first word
    came, what came, and its usage once it finished. `facts` turns it into a row's facts."""

    estimated_prompt_tokens: int  # used where the server reports no usage
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    t0: float = field(default_factory=time.monotonic)
    first_token_ms: int | None = None
    text: list[str] = field(default_factory=list)
    finished: Finished | None = None

    def seen(self, event: StreamEvent) -> None:
        if isinstance(event, Delta):
            if self.first_token_ms is None:
                self.first_token_ms = round((time.monotonic() - self.t0) * 1000)
            self.text.append(event.text)
        elif isinstance(event, Finished):
            self.finished = event

    def tokens(self) -> tuple[int, int, bool]:
        """Prompt and completion tokens, and whether Switchboard counted them (the server
        reported none): about four characters a token."""
        usage = self.finished.usage if self.finished else None
        if usage is not None and (usage.prompt_tokens or usage.completion_tokens):
            return usage.prompt_tokens, usage.completion_tokens, False
        return self.estimated_prompt_tokens, math.ceil(len("".join(self.text)) / 4), True

    def facts(self, *, tier: Tier, node: str, model: str, cost_micro_usd: int, outcome: str,
              fallback_from: tuple[str, ...] = (), error: str = "") -> CallFacts:
        prompt, completion, counted = self.tokens()
        if self.finished and self.finished.model:
            model = self.finished.model
        return CallFacts(tier=tier, node=node, model=model, started_at=self.started_at,
                         prompt_tokens=prompt, completion_tokens=completion,
                         tokens_counted=counted, cost_micro_usd=cost_micro_usd,
                         first_token_ms=self.first_token_ms,
                         total_ms=round((time.monotonic() - self.t0) * 1000),
                         outcome=outcome, fallback_from=fallback_from, error=error)


async def record_call(facts: CallFacts) -> Call | None:
    """Add a call to the current work's tally and to the record; None outside any work.

    A record that can't be written (a full disk) is logged and never fails the call.
    """
    work = _current.get()
    if work is None:
        return None
    baseline = work.baseline.micro_usd(facts.prompt_tokens, facts.completion_tokens)
    override = work.route.override
    call = Call(
        at=facts.started_at, workflow=str(work.workflow), purpose=work.purpose,
        route=work.route.name, reason=work.route.reason,
        override=str(override) if isinstance(override, Override) else "",
        tier=str(facts.tier), node=facts.node, model=facts.model,
        prompt_tokens=facts.prompt_tokens, completion_tokens=facts.completion_tokens,
        tokens_counted=facts.tokens_counted, cost_micro_usd=facts.cost_micro_usd,
        baseline_micro_usd=baseline, first_token_ms=facts.first_token_ms,
        total_ms=facts.total_ms, fallbacks=len(facts.fallback_from),
        fallback_from=", ".join(facts.fallback_from), outcome=facts.outcome,
        error=facts.error)
    work.tally.add(call)
    if work.record is not None:
        try:
            await asyncio.to_thread(work.record.add, call)
        except StorageFailed as e:
            log.error("a model call could not be recorded: %s", e.detail)
    return call
