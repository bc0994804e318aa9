"""Benchmark: summarising a 100-page PDF on a real llama.cpp node with 4 slots, the app
using its slots against the same app held to one part at a time.

Run: `python tests/bench/bench_summary.py [--pages 100] [--rounds 1]`. One C++
`llama-server` (`tests/fixtures/llama_cpp_server.py`: `--parallel 4`, the test model,
one thread) serves both runs; each run is `Workspace.summarize_document` in a fresh home
(so no summary cache is shared), timed from the call to the saved summary. The baseline
is the same path with `Pool.capacity` answering one free slot. A thread reads the node's
`/slots` every 100 ms to record how many parts ran at once. What the node itself gains
from its slots is measured too: eight streamed requests shaped like the summary's parts
(a ~1,000-token prompt, 400 tokens back) sent one after another, then four at a time, by
raw httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import keyring  # noqa: E402

from app.core import secrets  # noqa: E402
from tests.bench.common import (  # noqa: E402
    Figure,
    failed,
    median,
    no_goal,
    print_table,
)
from tests.fixtures.documents import pdf_with_pages  # noqa: E402
from tests.fixtures.llama_cpp_server import BINARY, LlamaCppServer  # noqa: E402
from tests.fixtures.memory_keyring import MemoryKeyring  # noqa: E402
from tests.fixtures.tiny_gguf import TINY, Shape, write_tiny_model  # noqa: E402

TITLE = "Summary throughput on a 4-slot node"
ABOUT = (
    "`Workspace.summarize_document` of a generated 100-page PDF (a few lines a page) on one "
    "C++ `llama-server` with `--parallel 4` and the test model, in a fresh home each run, "
    "against the same path with `Pool.capacity` answering one free slot (one part at a "
    "time). Pages a second, from the call to the saved summary; a thread reads `/slots` "
    "every 100 ms for the most parts that ran at once. What the node itself gains from its "
    "slots: eight streamed requests shaped like the parts (a ~1,000-token prompt, 400 "
    "tokens back), four at a time against one after another, by raw httpx."
)
SLOTS = 4
TOKEN = "office-token"


class SlotWatcher(threading.Thread):
    def __init__(self, node: LlamaCppServer) -> None:
        import httpx

        super().__init__(name="slot-watcher", daemon=True)
        self.node, self.most = node, 0
        self.client = httpx.Client(timeout=10)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.1):
            with contextlib.suppress(Exception):  # a missed sample is no matter
                self.most = max(self.most, self.busy())

    def busy(self) -> int:
        reply = self.client.get(f"{self.node.root_url}/slots", headers=self.node.auth_headers)
        return sum(1 for slot in reply.json() if slot.get("is_processing"))


async def node_ceiling(node: LlamaCppServer, requests: int = 8) -> float:
    """How much faster the node serves `requests` part-shaped streamed requests
    `SLOTS` at a time than one after another."""
    import httpx

    prompt = "The quarterly report lists budgets, staff and dates. " * 20  # ~1,000 tokens

    async def one(client: httpx.AsyncClient, n: int) -> None:
        body = {"model": "m", "stream": True, "max_tokens": 400,
                "messages": [{"role": "user", "content": f"{n} {prompt}"}]}
        async with client.stream("POST", f"{node.base_url}/chat/completions", json=body,
                                 headers=node.auth_headers) as response:
            async for _ in response.aiter_lines():
                pass

    async with httpx.AsyncClient(timeout=300) as client:
        await one(client, -1)
        started = time.perf_counter()
        for n in range(requests):
            await one(client, n)
        sequential = time.perf_counter() - started
        gate = asyncio.Semaphore(SLOTS)

        async def gated(n: int) -> None:
            async with gate:
                await one(client, n)

        started = time.perf_counter()
        await asyncio.gather(*(gated(n) for n in range(requests, 2 * requests)))
        return sequential / (time.perf_counter() - started)


async def summarise(node: LlamaCppServer, pdf: Path, home: Path) -> tuple[float, str]:
    os.environ["SWITCHBOARD_HOME"] = str(home)
    from app.core.settings import Settings
    from app.core.workspace import Workspace

    Settings().changed(node_urls=[node.base_url]).save()
    workspace = Workspace.open()
    try:
        chat = workspace.history.create_chat()
        started = time.perf_counter()
        message = await workspace.summarize_document(chat.id, pdf, lambda event: None)
        took = time.perf_counter() - started
    finally:
        await workspace.close()
    if message.status != "complete":
        raise RuntimeError(f"the summary ended {message.status}: {message.error}")
    return took, message.content


def one_at_a_time() -> Any:
    """Make `Pool.capacity` answer one free slot; returns the undo."""
    from app.core.routing.pool import Pool

    original = Pool.capacity

    async def capacity(self: Pool) -> Any:
        return dataclasses.replace(await original(self), parallel=1)

    Pool.capacity = capacity  # type: ignore[method-assign]
    return lambda: setattr(Pool, "capacity", original)


def run(pages: int = 100, rounds: int = 1, filler_lines: int = 4,
        shape: Shape = TINY) -> list[Figure]:
    name = f"summary of a {pages}-page PDF on a node with {SLOTS} slots"
    if not BINARY.exists():
        return [failed(name, f"{BINARY} is missing: run packaging/dev-setup.sh")]
    keyring.set_keyring(MemoryKeyring())
    secrets.SECURE_BACKENDS = secrets.SECURE_BACKENDS | {
        "tests.fixtures.memory_keyring.MemoryKeyring"}
    os.environ["SWITCHBOARD_NODE_TOKEN"] = TOKEN
    os.environ.setdefault("SWITCHBOARD_POLICY", "/nonexistent/policy.json")
    ours: list[float] = []
    base: list[float] = []
    most: dict[str, int] = {"ours": 0, "base": 0}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = write_tiny_model(folder / "model.gguf", shape=shape)
        pdf = pdf_with_pages(folder, pages, filler_lines=filler_lines)
        with LlamaCppServer(model, parallel=SLOTS, ctx=2048 * SLOTS, api_key=TOKEN) as node:
            ceiling = asyncio.run(node_ceiling(node))
            print(f"the node alone: {ceiling:.2f}× faster {SLOTS} at a time", flush=True)
            for round_ in range(rounds):
                for side in ("base", "ours"):
                    watcher = SlotWatcher(node)
                    watcher.start()
                    undo = one_at_a_time() if side == "base" else None
                    try:
                        took, _ = asyncio.run(summarise(node, pdf,
                                                        folder / f"home-{side}-{round_}"))
                    finally:
                        if undo:
                            undo()
                        watcher.stopping.set()
                        watcher.join()
                    (ours if side == "ours" else base).append(took)
                    most[side] = max(most[side], watcher.most)
                    what = "one part at a time" if side == "base" else "ours"
                    print(f"round {round_ + 1}, {what}: {took:.1f} s, at most {watcher.most} "
                          "parts at once", flush=True)
    rate, base_rate = pages / median(ours), pages / median(base)
    return [
        Figure(name, rate, "pages/s", "≥ 2.5 × baseline", rate >= 2.5 * base_rate, base_rate,
               "one part at a time",
               note=f"{median(ours):.1f} s against "
                    f"{median(base):.1f} s; at most {most['ours']} parts ran at once (one "
                    f"at a time: {most['base']})"),
        no_goal(f"the node's own speed-up, {SLOTS} part-shaped requests at a time", ceiling,
                "×", baseline=1.0, baseline_name="one after another",
                note="raw httpx, no app, requests back to back: how much more the node "
                     "itself computes with its slots on this machine"),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--filler-lines", type=int, default=4)
    args = parser.parse_args()
    print_table(run(args.pages, args.rounds, args.filler_lines))
