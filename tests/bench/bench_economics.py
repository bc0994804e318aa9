"""Benchmark: what the split saves. A 15-person department's working days are replayed
through the real router, planner and executor: the cloud planner is the stand-in
OpenRouter charging OpenRouter's list price for Claude Sonnet 4.5 ($3 a million prompt
tokens, $15 a million completion tokens), the office runs two real llama.cpp nodes
(`llama-server`, four slots each) over the test model. Each person has a home of their
own (settings, ledger, record of calls) with a $20 monthly cloud budget.

The mix a person sends a day (seeded, so every run replays the same month):
- 18 requests of one step, drawn from the single-step prompts of the router's labelled
  set (tests/data/routing_prompts.tsv: questions, drafts, rewrites, pasted emails),
  answers of up to 300 tokens;
- 1.5 document summaries: PDFs of 2–12 pages of about 450 tokens a page;
- 1 multi-step task, drawn from the set's prompts worth planning, carried out (when
  Auto plans it in the cloud, as it does most) in the stand-in planner's three steps and
  an assembled answer of up to 300 tokens each.

Auto decides every request as it would for the user, so its mistakes count: a
single-step prompt it plans costs a cloud call.

Figures come from the record of calls, as the Usage page and `switchboard report` read
them. The test model's tokenizer is byte-level (about a character a token); real models
average about four characters a token, so the office's token counts are divided by
`TEST_MODEL_TOKENS_PER_TOKEN` to be comparable with the cloud's. The baseline prices
every token (local and cloud, normalised) at the planner's price.

Goals: at least 90% of tokens local; cloud spend at most 10% of the baseline; no user
over budget; no document bytes in any request the cloud received.

Run: `python tests/bench/bench_economics.py [--days N]` (default 2 days; the figures
are scaled to a 21-day month, which changes no share or ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("SWITCHBOARD_POLICY", "/nonexistent/policy.json")

import keyring  # noqa: E402

from app.core import secrets  # noqa: E402
from app.core.budget import Ledger  # noqa: E402
from app.core.money import format_usd  # noqa: E402
from app.core.privacy import LOCAL_ONLY, LocalOnly  # noqa: E402
from app.core.routing.record import CallRecord  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from app.core.workspace import Workspace  # noqa: E402
from tests.bench.common import Figure, at_least  # noqa: E402
from tests.fixtures.documents import pdf_with_pages  # noqa: E402
from tests.fixtures.llama_cpp_server import LlamaCppServer  # noqa: E402
from tests.fixtures.memory_keyring import MemoryKeyring  # noqa: E402
from tests.fixtures.openrouter_server import API_KEY, OpenRouterServer  # noqa: E402
from tests.fixtures.tiny_gguf import write_tiny_model  # noqa: E402

TITLE = "The split's economics"
ABOUT = (
    "A 15-person department's working days replayed through the real router, planner and "
    "executor: two real llama.cpp nodes (`llama-server`, four slots each, the test model) "
    "and the stand-in OpenRouter charging Claude Sonnet 4.5's list price. Each person has "
    "their own home, ledger and record of calls, and a $20 monthly budget; a day's mix is "
    "18 single-step requests from the router's labelled set, 1.5 document summaries and "
    "one multi-step task, Auto deciding each. Figures from the record of calls (the test "
    "model's byte-level tokens divided by 4), scaled to a 21-day month. The suite replays "
    "one day; the script two by default (`--days N`)."
)
PEOPLE = 15
WORKING_DAYS = 21
PLANNER = "anthropic/claude-sonnet-4.5"
PRICES = {PLANNER: ("0.000003", "0.000015")}  # OpenRouter's list price, USD a token
TEST_MODEL_TOKENS_PER_TOKEN = 4
BUDGET_MICRO_USD = 20_000_000  # each person's monthly cloud budget: $20
CHATS_A_DAY = 18
SUMMARIES_A_DAY = 1.5
TASKS_A_DAY = 1
DATA = Path(__file__).resolve().parents[1] / "data" / "routing_prompts.tsv"


def labelled(label: str) -> list[str]:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] for line in lines
            if not line.startswith("#") and line.startswith(label + "\t")]


SINGLE, PLANNED = labelled("single"), labelled("plan")


async def person_day(workspace: Workspace, rng: random.Random, folder: Path) -> None:
    """A person's day: each request in a chat of its own, as most are."""
    jobs: list[tuple[str, object]] = []
    jobs += [("chat", None)] * CHATS_A_DAY
    jobs += [("summary", None)] * (int(SUMMARIES_A_DAY) + (rng.random() < SUMMARIES_A_DAY % 1))
    jobs += [("task", None)] * TASKS_A_DAY
    rng.shuffle(jobs)
    for kind, _ in jobs:
        chat = workspace.history.create_chat()
        if kind == "chat":
            await workspace.send(chat.id, rng.choice(SINGLE), lambda e: None)
        elif kind == "summary":
            pages = rng.randint(2, 12)
            pdf = pdf_with_pages(folder, pages, name=f"doc-{rng.randrange(10**9)}.pdf",
                                 filler_lines=4)
            await workspace.summarize_document(chat.id, pdf, lambda e: None)
        else:
            await workspace.send(chat.id, rng.choice(PLANNED), lambda e: None)


def documents_in(cloud: OpenRouterServer, marked: LocalOnly) -> int:
    """Bytes of requests to the cloud that carry document text."""
    return sum(len(r.body) for r in cloud.requests if marked.found_in(r.body.decode()))


async def main(days: int) -> list[Figure]:
    keyring.set_keyring(MemoryKeyring())
    secrets.SECURE_BACKENDS = secrets.SECURE_BACKENDS | {
        "tests.fixtures.memory_keyring.MemoryKeyring"}
    rng = random.Random(2026)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        model = write_tiny_model(root / "tiny.gguf")
        nodes = [stack.enter_context(LlamaCppServer(model, parallel=4, ctx=16384,
                                                    api_key="office-token"))
                 for _ in range(2)]
        cloud = stack.enter_context(OpenRouterServer(prices=PRICES))
        os.environ["SWITCHBOARD_OPENROUTER_URL"] = cloud.base_url
        homes = [root / f"person-{n}" for n in range(PEOPLE)]
        started = time.perf_counter()
        for day in range(days):
            for n, home in enumerate(homes):
                os.environ["SWITCHBOARD_HOME"] = str(home)
                if day == 0:
                    secrets.set_secret(secrets.NODE_TOKEN, "office-token")
                    secrets.set_secret(secrets.OPENROUTER_KEY, API_KEY)
                    Settings().changed(node_urls=[n.base_url for n in nodes],
                                       planner_model=PLANNER, planner_max_tokens=800,
                                       monthly_budget_usd=20, mode="auto",
                                       max_tokens=300).save()
                workspace = Workspace.open()
                try:
                    await person_day(workspace, rng, root)
                finally:
                    await workspace.close()
            print(f"day {day + 1} of {days} replayed ({time.perf_counter() - started:.0f} s)",
                  flush=True)
        return report(homes, days, cloud)


def report(homes: list[Path], days: int, cloud: OpenRouterServer) -> list[Figure]:
    local = 0.0
    cloud_tokens = cloud_cost = baseline = planned = calls = over = 0
    for home in homes:
        os.environ["SWITCHBOARD_HOME"] = str(home)
        record = CallRecord()
        rows = record.calls()
        record.close()
        for call in rows:
            calls += 1
            if call.tier == "cloud":
                cloud_tokens += call.tokens
                cloud_cost += call.cost_micro_usd
                planned += 1
                baseline += call.baseline_micro_usd
            else:
                tokens = call.tokens / TEST_MODEL_TOKENS_PER_TOKEN
                local += tokens
                baseline += round(call.baseline_micro_usd / TEST_MODEL_TOKENS_PER_TOKEN)
        with Ledger(home / "data" / "ledger.sqlite3") as ledger:
            charged = ledger.month_summary().charged_micro_usd
        over += max(0, charged - BUDGET_MICRO_USD)
    scale = WORKING_DAYS / days
    share = local / (local + cloud_tokens)
    spend_share = cloud_cost / baseline
    doc_bytes = documents_in(cloud, LOCAL_ONLY)
    print(f"\n{PEOPLE} people, {days} day(s) replayed, scaled to a {WORKING_DAYS}-day month:")
    print(f"  model calls           {calls * scale:,.0f} ({planned * scale:,.0f} plans in the "
          "cloud)")
    print(f"  tokens, local         {local * scale:,.0f} (office nodes; normalised)")
    print(f"  tokens, cloud         {cloud_tokens * scale:,.0f}")
    print(f"  run locally           {share:.1%}   goal >= 90%   "
          f"{'met' if share >= 0.9 else 'NOT met'}")
    print(f"  cloud spend           {format_usd(round(cloud_cost * scale))} a month")
    print(f"  cloud-only baseline   {format_usd(round(baseline * scale))} a month")
    print(f"  spend / baseline      {spend_share:.1%}   goal <= 10%   "
          f"{'met' if spend_share <= 0.1 else 'NOT met'}")
    print(f"  budget overshoot      {format_usd(over)}   goal $0   "
          f"{'met' if over == 0 else 'NOT met'}")
    print(f"  document bytes sent   {doc_bytes}   goal 0   "
          f"{'met' if doc_bytes == 0 else 'NOT met'}")
    month = f"{days} day(s) replayed, scaled to a {WORKING_DAYS}-day month"
    return [
        at_least("tokens run locally", share * 100, 90, "%",
                 note=f"{local * scale / 1e6:.2f} M local, {cloud_tokens * scale / 1e3:.0f} k "
                      f"cloud a month; {month}"),
        Figure("cloud spend", spend_share * 100, "%", "≤ 10% of baseline",
               spend_share <= 0.1, 100.0, "cloud-only",
               note=f"{format_usd(round(cloud_cost * scale))} of "
                    f"{format_usd(round(baseline * scale))} a month"),
        Figure("budget overshoot", over / 1e6, "USD", "none", over == 0),
        Figure("document bytes sent to the cloud", doc_bytes, "bytes", "none", doc_bytes == 0),
    ]


def run(days: int = 1) -> list[Figure]:
    logging.basicConfig(level=logging.ERROR)
    return asyncio.run(main(days))


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=2)
    asyncio.run(main(parser.parse_args().days))
