"""The user's cloud account as Settings and the command line see it: where OpenRouter is,
the key in the system key store (whether one is saved, what OpenRouter says of it,
keeping and removing it), whether a node token is saved, and the budget's overview.

The window reaches the key store and OpenRouter only through these functions, run on the
core thread: no key or token ever passes through the GUI but the one the user pastes.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, date, datetime
from typing import NamedTuple

from app.core import logs, secrets
from app.core.budget import Ledger, MonthSummary
from app.core.llm.openrouter import DEFAULT_BASE_URL, KeyInfo, OpenRouter

URL_ENV = "SWITCHBOARD_OPENROUTER_URL"  # a stand-in for tests, or IT's gateway or proxy


def openrouter_url() -> str:
    """OpenRouter's API address: `SWITCHBOARD_OPENROUTER_URL` if set, else OpenRouter's."""
    return os.environ.get(URL_ENV, "").strip() or DEFAULT_BASE_URL


async def key_store_state() -> str:
    """"refused" (no secure store), "saved" or "none"."""
    if await asyncio.to_thread(secrets.secure_backend) is None:
        return "refused"
    saved = await asyncio.to_thread(secrets.get_secret, secrets.OPENROUTER_KEY)
    return "saved" if saved else "none"


async def check_key(pasted: str | None) -> KeyInfo | None:
    """What OpenRouter says about the pasted key, or else the saved one; None: no key."""
    if pasted:
        logs.add_secret(pasted)  # not saved yet, but never to reach the log either way
    key = pasted or await asyncio.to_thread(secrets.get_secret, secrets.OPENROUTER_KEY)
    if not key:
        return None
    client = OpenRouter(key, base_url=openrouter_url())
    try:
        return await client.key_info()
    finally:
        await client.aclose()


async def save_key(key: str | None) -> None:
    """Keep a newly pasted key (read back by `set_secret` to prove it was kept); None
    leaves the saved one as it is."""
    if key:
        await asyncio.to_thread(secrets.set_secret, secrets.OPENROUTER_KEY, key)


async def remove_key() -> None:
    await asyncio.to_thread(secrets.delete_secret, secrets.OPENROUTER_KEY)


async def node_token_saved() -> bool:
    """Whether an office node token is in the key store (the token itself stays there)."""
    return bool(await asyncio.to_thread(secrets.get_secret, secrets.NODE_TOKEN))


class BudgetOverview(NamedTuple):
    this_month: MonthSummary
    days: list[tuple[date, int]]
    earlier: list[MonthSummary]  # newest first
    today: date


def budget_overview(ledger: Ledger) -> BudgetOverview:
    """This month, its days and the months before, from `ledger` (blocks on disk)."""
    month = ledger.current_month()
    return BudgetOverview(ledger.month_summary(month), ledger.daily_spend(month),
                          [s for s in ledger.months() if s.month != month],
                          datetime.now(UTC).date())
