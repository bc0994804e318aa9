"""Benchmark: tokens per second through the app's local path (the supervised llama.cpp
child, HTTP, SSE, the app's streaming client) against a direct in-process llama_cpp
generation of the same model and settings, for answers of 64, 512 and 2048 tokens.

Run: `python tests/bench/bench_local_runtime.py`. Both sides run in this one process's
session, interleaved, best of several rounds, so the machine's noise hits both alike.
The ratio (app ÷ direct) should stay ≥ 0.95 at every length: a ratio that falls as
answers grow means a per-token cost that grows with the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import llama_cpp  # noqa: E402

from app.core.llm.openai_client import Delta, OpenAIClient, Timeouts  # noqa: E402
from app.core.runtime.supervisor import Supervisor, serve_command  # noqa: E402
from tests.bench.common import Figure  # noqa: E402
from tests.fixtures.tiny_gguf import BENCH, TINY, write_tiny_model  # noqa: E402

TITLE = "Local GPUs: tokens per second"
ABOUT = (
    "The app's local path (the supervised llama.cpp child, HTTP + SSE on 127.0.0.1, the "
    "app's streaming client) against a direct in-process `llama_cpp` generation of the same "
    "model with the same settings (one thread, 4,096-token context, greedy), interleaved, "
    "best of the rounds. The model is a generated 34 M-parameter Qwen2 "
    "(`tests/fixtures/tiny_gguf.py`, shape `BENCH`): a few milliseconds a token on one "
    "core, so per-token overheads weigh as they would beside a real model's compute. Above "
    "1.0 the app's path overlaps generation with sending on the second core."
)

N_CTX = 4096
THREADS = 1
PROMPT = [{"role": "user", "content": "Write a long story about a telephone switchboard."}]


def direct_tokens_per_s(llm: llama_cpp.Llama, n: int) -> float:
    """llama.cpp as fast as Python can drive it: generate and detokenise each token once."""
    prompt = llm.tokenize(b"<|im_start|>user\nWrite a long story about a telephone "
                          b"switchboard.<|im_end|>\n<|im_start|>assistant\n", special=True)
    llm.reset()
    started = time.perf_counter()
    text = []
    for i, token in enumerate(llm.generate(prompt, temp=0.0, reset=True)):
        text.append(llm.detokenize([token]))
        if i + 1 == n:
            break
    return n / (time.perf_counter() - started)


async def app_tokens_per_s(client: OpenAIClient, n: int) -> float:
    started = time.perf_counter()
    count = 0
    async for event in client.stream_chat(PROMPT, model="local", max_tokens=n, temperature=0.0):
        if isinstance(event, Delta):
            count += 1
    elapsed = time.perf_counter() - started
    assert count == n, f"expected {n} deltas, got {count}"
    return n / elapsed


async def measure(lengths: list[int], rounds: int, tiny: bool
                  ) -> list[tuple[int, float, float]]:
    """(tokens, direct tok/s, app tok/s) for each answer length, best of `rounds`."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_model(Path(tmp) / "bench.gguf", shape=TINY if tiny else BENCH)
        llm = llama_cpp.Llama(model_path=str(model), n_ctx=N_CTX, n_threads=THREADS,
                              logits_all=False, verbose=False)
        supervisor = Supervisor(
            serve_command(model, ["--alias", "local", "--n-ctx", str(N_CTX),
                                  "--n-threads", str(THREADS)]), Path(tmp) / "runtime.log")
        url, token = await supervisor.ensure_ready()
        client = OpenAIClient(url, token=token, timeouts=Timeouts(first_token=60, stall=60))
        try:
            await app_tokens_per_s(client, 16)  # warm-up, both sides
            direct_tokens_per_s(llm, 16)
            print(f"{'tokens':>7} {'direct tok/s':>13} {'app tok/s':>10} {'ratio':>6}")
            for n in lengths:
                direct = max(direct_tokens_per_s(llm, n) for _ in range(rounds))
                ours = max([await app_tokens_per_s(client, n) for _ in range(rounds)])
                print(f"{n:>7} {direct:>13.1f} {ours:>10.1f} {ours / direct:>6.2f}", flush=True)
                results.append((n, direct, ours))
        finally:
            await client.aclose()
            await supervisor.stop()
    return results


def run(lengths: tuple[int, ...] = (64, 512, 2048), rounds: int = 2) -> list[Figure]:
    results = asyncio.run(measure(list(lengths), rounds, tiny=False))
    return [Figure(f"Local GPUs path, tokens/s for a {n:,}-token answer", ours, "tok/s",
                   "≥ 0.95 × baseline", ours >= 0.95 * direct, direct,
                   "llama_cpp in-process", note=f"best of {rounds} rounds")
            for n, direct, ours in results]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="64,512,2048")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tiny", action="store_true",
                   help="the test suite's 0.4 MB model: so fast that per-token HTTP costs "
                        "dominate; the default model costs a few ms a token, as real ones do")
    a = p.parse_args()
    asyncio.run(measure([int(x) for x in a.lengths.split(",")], a.rounds, a.tiny))
