"""Benchmark: the app's streaming client (`OpenAIClient.stream_chat`) against raw httpx
and the `openai` SDK, on the same answers from the stand-in node.

Run: `python tests/bench/bench_client.py [--rounds 9]`. The node runs in a child process
(its threads would otherwise share this process's GIL and CPU clock); the clients take
turns in this process, round after round, so the machine's noise hits them alike. Two
answers: 1,000 chunks as fast as the node sends them (unpaced: what the client itself
costs), and 200 chunks at 200 tokens a second (paced: a fast real model). Per client:
when the last token arrived (median of the rounds) and the CPU time of this process per
chunk (median). Raw httpx reads the lines and decodes each chunk's JSON, no more: the
least any client can do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402

from app.core.llm.openai_client import Delta, OpenAIClient, Timeouts  # noqa: E402
from tests.bench.common import (  # noqa: E402
    Figure,
    StandInNode,
    at_most,
    median,
    no_goal,
    print_table,
    skipped,
)

TITLE = "Streaming client overhead"
ABOUT = (
    "`OpenAIClient.stream_chat` (the app's one client) against raw httpx (read the lines, "
    "decode each chunk's JSON: the least a client can do) and the `openai` SDK, on the "
    "same answers from the stand-in node running in a child process. Unpaced: 1,000 "
    "chunks as fast as the node sends them; paced: 200 chunks at 200 tokens a second. "
    "Medians of the rounds; CPU is this process's, per chunk."
)
MESSAGES = [{"role": "user", "content": "Write about the quarterly report."}]
MODEL = "stand-in-model"

Reader = Callable[[], Awaitable[tuple[float, int]]]


def raw_httpx(base_url: str) -> tuple[Reader, Callable[[], Awaitable[None]]]:
    client = httpx.AsyncClient(timeout=httpx.Timeout(60.0))
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}

    async def read() -> tuple[float, int]:
        count, last = 0, 0.0
        async with client.stream("POST", f"{base_url}/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                for choice in json.loads(data)["choices"]:
                    if choice["delta"].get("content"):
                        count += 1
                        last = time.perf_counter()
        return last, count

    return read, client.aclose


def openai_sdk(base_url: str) -> tuple[Reader, Callable[[], Awaitable[None]]] | None:
    try:
        import openai
    except ImportError:
        return None
    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0)

    async def read() -> tuple[float, int]:
        count, last = 0, 0.0
        stream = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True)  # type: ignore[arg-type,unused-ignore]
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    count += 1
                    last = time.perf_counter()
        return last, count

    return read, client.close


def ours(base_url: str) -> tuple[Reader, Callable[[], Awaitable[None]]]:
    client = OpenAIClient(base_url, timeouts=Timeouts(first_token=60, stall=60))

    async def read() -> tuple[float, int]:
        count, last = 0, 0.0
        async for event in client.stream_chat(MESSAGES, model=MODEL):
            if isinstance(event, Delta):
                count += 1
                last = time.perf_counter()
        return last, count

    return read, client.aclose


async def measure(node: StandInNode, chunks: int, delay_s: float, rounds: int
                  ) -> dict[str, dict[str, float]]:
    """Per client: the median time to the last token (s) and CPU per chunk (s)."""
    node.answer(chunks, delay_s)
    clients: dict[str, tuple[Reader, Callable[[], Awaitable[None]]]] = {
        "raw httpx": raw_httpx(node.base_url), "ours": ours(node.base_url)}
    sdk = openai_sdk(node.base_url)
    if sdk is not None:
        clients["openai SDK"] = sdk
    times: dict[str, list[float]] = {name: [] for name in clients}
    cpu: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for read, _ in clients.values():  # warm-up: imports, first connection
            await read()
        for _ in range(rounds):
            for name, (read, _) in clients.items():
                started, cpu_started = time.perf_counter(), time.process_time()
                last, count = await read()
                cpu[name].append((time.process_time() - cpu_started) / count)
                times[name].append(last - started)
                if count != chunks:
                    raise RuntimeError(f"{name} read {count} of {chunks} chunks")
    finally:
        for _, close in clients.values():
            await close()
    return {name: {"last": median(times[name]), "cpu": median(cpu[name]),
                   "cpu_worst": max(cpu[name])} for name in clients}


def figures(unpaced: dict[str, dict[str, float]], paced: dict[str, dict[str, float]],
            rounds: int) -> list[Figure]:
    raw, us = unpaced["raw httpx"], unpaced["ours"]
    sdk = unpaced.get("openai SDK")
    no_sdk = "the openai SDK is not installed in .venv: its comparison is skipped"
    lag = (us["last"] - raw["last"]) * 1000
    out = [
        Figure("client, last token of 1,000 unpaced chunks", us["last"] * 1000, "ms",
               "≤ raw httpx + 33 ms", lag <= 33, raw["last"] * 1000, "raw httpx",
               f"+{lag:.1f} ms after raw httpx; median of {rounds} rounds"),
        at_most("client CPU per chunk, unpaced", us["cpu"] * 1e6, 100, "µs",
                baseline=raw["cpu"] * 1e6, baseline_name="raw httpx",
                note=f"worst round {us['cpu_worst'] * 1e6:.0f} µs"),
    ]
    if sdk is not None:
        out.append(no_goal("client CPU per chunk, unpaced, against the openai SDK",
                           us["cpu"] * 1e6, "µs", baseline=sdk["cpu"] * 1e6,
                           baseline_name="openai SDK"))
        out.append(no_goal("client, last token of 1,000 unpaced chunks, against the "
                           "openai SDK", us["last"] * 1000, "ms",
                           baseline=sdk["last"] * 1000, baseline_name="openai SDK"))
    else:
        out.append(skipped("client against the openai SDK", no_sdk))
    raw_p, us_p = paced["raw httpx"], paced["ours"]
    lag_p = (us_p["last"] - raw_p["last"]) * 1000
    out.append(no_goal("client CPU per chunk, paced at 200 tok/s", us_p["cpu"] * 1e6, "µs",
                       baseline=raw_p["cpu"] * 1e6, baseline_name="raw httpx"))
    out.append(no_goal("client, last token of 200 chunks paced at 200 tok/s",
                       us_p["last"] * 1000, "ms", baseline=raw_p["last"] * 1000,
                       baseline_name="raw httpx", note=f"{lag_p:+.1f} ms after raw httpx"))
    if "openai SDK" in paced:
        out.append(no_goal("client CPU per chunk, paced, against the openai SDK",
                           us_p["cpu"] * 1e6, "µs", baseline=paced["openai SDK"]["cpu"] * 1e6,
                           baseline_name="openai SDK"))
    return out


def run(rounds: int = 9, paced_rounds: int = 3) -> list[Figure]:
    with StandInNode() as node:
        unpaced = asyncio.run(measure(node, 1000, 0.0, rounds))
        paced = asyncio.run(measure(node, 200, 1 / 200, paced_rounds))
    _print(unpaced, "1,000 chunks, unpaced")
    _print(paced, "200 chunks at 200 tok/s")
    return figures(unpaced, paced, rounds)


def _print(results: dict[str, Any], what: str) -> None:
    print(f"{what}:")
    for name, r in results.items():
        print(f"  {name:<11} last token {r['last'] * 1000:8.1f} ms   CPU a chunk "
              f"{r['cpu'] * 1e6:6.1f} µs (worst round {r['cpu_worst'] * 1e6:.1f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--paced-rounds", type=int, default=3)
    args = parser.parse_args()
    print_table(run(args.rounds, args.paced_rounds))
