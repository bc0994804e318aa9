"""What a month of model calls came to, from the record of calls: tokens by tier, the
share run on the office's own hardware, cloud spend beside the cloud-only baseline and
the savings, and how often a call had to fall back; in all and by workflow, and by day
for the Usage page's charts. `switchboard report` prints it, as JSON or one CSV row a
call (IT merges a department's exports)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TextIO

from app.core.routing.record import COLUMNS, Call
from app.core.routing.tiers import Tier, Workflow

LOCAL_TIERS = (Tier.OFFICE_NODE, Tier.LOCAL_GPUS)


@dataclass
class Totals:
    """Calls added up: a month's, a workflow's or a day's."""

    calls: int = 0
    tokens_by_tier: dict[str, int] = field(default_factory=lambda: {t.value: 0 for t in Tier})
    cloud_cost_micro_usd: int = 0
    local_cost_micro_usd: int = 0  # IT's running cost of its nodes, where it set one
    baseline_micro_usd: int = 0
    fell_back: int = 0  # calls that ran elsewhere than first chosen

    def add(self, call: Call) -> None:
        self.calls += 1
        self.tokens_by_tier[call.tier] = self.tokens_by_tier.get(call.tier, 0) + call.tokens
        if call.tier == Tier.CLOUD:
            self.cloud_cost_micro_usd += call.cost_micro_usd
        else:
            self.local_cost_micro_usd += call.cost_micro_usd
        self.baseline_micro_usd += call.baseline_micro_usd
        self.fell_back += call.fallbacks > 0

    @property
    def tokens(self) -> int:
        return sum(self.tokens_by_tier.values())

    @property
    def local_share(self) -> float:
        """The share of tokens run on the office node or the Local GPUs (0 with none)."""
        local = sum(self.tokens_by_tier.get(t.value, 0) for t in LOCAL_TIERS)
        return local / self.tokens if self.tokens else 0.0

    @property
    def savings_micro_usd(self) -> int:
        """The baseline less what was spent: the cloud's cost and the nodes' running cost."""
        return self.baseline_micro_usd - self.cloud_cost_micro_usd - self.local_cost_micro_usd

    @property
    def fallback_rate(self) -> float:
        return self.fell_back / self.calls if self.calls else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "tokens_by_tier": dict(self.tokens_by_tier),
                "local_share": round(self.local_share, 4),
                "cloud_cost_micro_usd": self.cloud_cost_micro_usd,
                "local_cost_micro_usd": self.local_cost_micro_usd,
                "baseline_micro_usd": self.baseline_micro_usd,
                "savings_micro_usd": self.savings_micro_usd,
                "fallback_rate": round(self.fallback_rate, 4)}


@dataclass
class MonthReport:
    month: str  # "YYYY-MM", UTC
    total: Totals
    by_workflow: dict[str, Totals]  # every workflow, with or without calls
    by_day: dict[date, Totals]  # every day of the month up to today (or its end)

    def to_json(self) -> dict[str, Any]:
        return {"month": self.month, **self.total.to_json(),
                "by_workflow": {w: t.to_json() for w, t in self.by_workflow.items()},
                "by_day": {d.isoformat(): t.to_json() for d, t in self.by_day.items()}}


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def month_report(calls: Iterable[Call], month: str, *, today: date | None = None
                 ) -> MonthReport:
    """The month's calls added up; calls of other months are left out."""
    year, mon = (int(part) for part in month.split("-"))
    first = date(year, mon, 1)
    last = date(year + mon // 12, mon % 12 + 1, 1).toordinal() - 1
    today = today or datetime.now(UTC).date()
    days = range(first.toordinal(), min(last, max(today.toordinal(), first.toordinal())) + 1)
    report = MonthReport(month, Totals(), {w.value: Totals() for w in Workflow},
                         {date.fromordinal(d): Totals() for d in days})
    for call in calls:
        if call.month != month:
            continue
        report.total.add(call)
        report.by_workflow.setdefault(call.workflow, Totals()).add(call)
        report.by_day.setdefault(call.at.date(), Totals()).add(call)
    return report


def write_csv(calls: Iterable[Call], out: TextIO) -> None:
    """One row a call, the record's own columns, times in UTC (ISO 8601)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for call in calls:
        row: list[object] = []
        for name in COLUMNS:
            value = getattr(call, name)
            if isinstance(value, datetime):
                value = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
            elif isinstance(value, bool):
                value = int(value)
            row.append("" if value is None else value)
        writer.writerow(row)
