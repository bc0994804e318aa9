"""Benchmark and check on a machine with an NVIDIA GPU: the Local GPUs tier on real CUDA.

Run there, with llama.cpp's libraries built for CUDA from the source that
llama-cpp-python vendors (`tests/bench/build_cuda_llama.sh`):

    LLAMA_CPP_LIB_PATH=<build>/bin python tests/bench/bench_cuda.py

What the app finds (its GPU inventory, through NVML or nvidia-smi), the plan it makes for
a generated 175 M-parameter model, and the app's whole local path (`LocalGPUs`: inspect,
plan, the supervised child, the streaming client) answering with that plan, against the
same path planned for a computer without GPUs. With `SWITCHBOARD_LLAMA_SERVER` naming
that build's `llama-server`, also `bench_summary` on it, the model on the GPU: what an
office node with a GPU gains from its four slots, and how much of it a summary gets.
Skipped, not failed, where no NVIDIA GPU is found (CI has none): the suite then keeps the
figures last measured on one.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import Figure, failed, no_goal, print_table, skipped  # noqa: E402
from tests.fixtures.tiny_gguf import CUDA, TINY, Shape, write_tiny_model  # noqa: E402

TITLE = "Local GPUs on a real CUDA GPU"
ABOUT = (
    "On a machine with an NVIDIA GPU, llama.cpp built for CUDA from the source "
    "llama-cpp-python vendors: the GPUs the app finds, the plan it makes for a generated "
    "175 M-parameter Qwen2 (`tests/fixtures/tiny_gguf.py`, shape `CUDA`), and `LocalGPUs` "
    "(inspect, plan, the supervised child, the streaming client) answering 256 tokens "
    "with that plan (best of three after a warm-up), against the same path planned for no "
    "GPU (`SWITCHBOARD_GPUS=none`, one answer after a warm-up). Then `bench_summary` on "
    "that build's `llama-server` with every layer on the GPU and the same model."
)
ANSWER_TOKENS = 256
PROMPT = [{"role": "user", "content": "Write a long story about a telephone switchboard."}]


async def tokens_per_s(backend: object, rounds: int = 3) -> tuple[float, float]:
    """(seconds to the first answer, including the model's load; best tokens a second)."""
    from app.core.llm.openai_client import Delta

    async def answer() -> float:
        started, count = time.perf_counter(), 0
        async for event in backend.stream_chat(  # type: ignore[attr-defined]
                PROMPT, max_tokens=ANSWER_TOKENS, temperature=0.0):
            count += isinstance(event, Delta)
        if count < ANSWER_TOKENS // 2:
            raise RuntimeError(f"only {count} tokens came back")
        return count / (time.perf_counter() - started)

    started = time.perf_counter()
    await answer()
    first = time.perf_counter() - started
    return first, max([await answer() for _ in range(rounds)])


async def local_gpus(model: Path, rounds: int) -> tuple[object, float, float]:
    """The Local GPUs tier for `model` as the app runs it; (its plan, the first answer's
    seconds, tokens a second)."""
    from app.core.llm.local_gpus import LocalGPUs
    from app.core.settings import Settings

    backend = LocalGPUs(Settings().changed(model_path=str(model), idle_unload_min=0))
    try:
        first, rate = await tokens_per_s(backend, rounds)
    finally:
        await backend.aclose()
    return backend.split, first, rate


def run(shape: Shape = CUDA) -> list[Figure]:
    figures = on_local_gpus(shape)
    if figures[0].met is None and figures[0].ours is None:  # no GPU here
        return figures
    server = os.environ.get("SWITCHBOARD_LLAMA_SERVER")
    if not server:
        return [*figures, skipped("summary on a 4-slot llama-server on the GPU",
                                  "SWITCHBOARD_LLAMA_SERVER names no CUDA llama-server")]
    os.environ.setdefault("LLAMA_ARG_N_GPU_LAYERS", "999")  # llama-server reads LLAMA_ARG_*
    from tests.bench import bench_summary

    return figures + [dataclasses.replace(f, name=f"{f.name}, on the GPU")
                      for f in bench_summary.run(shape=shape)]


def on_local_gpus(shape: Shape) -> list[Figure]:
    from app.core import paths
    from app.core.runtime.gguf_inspect import inspect_model
    from app.core.runtime.gpu_split import plan_summary
    from app.core.runtime.gpus import inventory

    name = f"Local GPUs on CUDA, tokens/s of a {ANSWER_TOKENS}-token answer through the app"
    found = inventory()
    if not found:
        return [skipped(name, "no NVIDIA GPU on this machine")]
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, SWITCHBOARD_HOME=tmp):
        model = write_tiny_model(Path(tmp) / "cuda.gguf", shape=shape)
        layers = inspect_model(model).n_layers
        plan, first, rate = asyncio.run(local_gpus(model, rounds=3))
        log = (paths.log_dir() / "runtime.log").read_text(errors="replace")
        offloaded = re.findall(r"offloaded (\d+)/(\d+) layers to GPU", log)
        print("".join(line for line in log.splitlines(keepends=True)
                      if re.search(r"CUDA|GPU|offload", line)), flush=True)
        with mock.patch.dict(os.environ, SWITCHBOARD_GPUS="none"):  # planned for no GPU
            _, cpu_first, cpu_rate = asyncio.run(local_gpus(model, rounds=1))
    words = plan_summary(plan, found)  # type: ignore[arg-type]
    gpus = "; ".join(f"{g.name}, {g.total_mib:,} MiB ({g.free_mib:,} free)" for g in found)
    on_gpu = [int(done) for done, _ in offloaded]
    figures = [
        no_goal("GPUs the app finds", len(found), "", note=gpus),
        no_goal(name, rate, "tok/s", baseline=cpu_rate,
                baseline_name="the same path planned for no GPU",
                note=f"first answer {first:.1f} s with the model's load (no GPU: "
                     f"{cpu_first:.1f} s); the plan in the app's words: {words}"),
    ]
    if not on_gpu:
        figures.append(failed("model layers on the GPU", "the runtime's log names no "
                              "offloaded layers: is LLAMA_CPP_LIB_PATH a CUDA build?"))
    else:
        figures.append(Figure("model layers on the GPU", on_gpu[0], "layers",
                              f"all {layers} (+ output)", on_gpu[0] >= layers,
                              note=f"llama.cpp's log: offloaded {offloaded[0][0]}/"
                                   f"{offloaded[0][1]} layers to GPU"))
    return figures


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="the test model: to try the script "
                   "itself (with SWITCHBOARD_GPUS=24564 on a machine without a GPU)")
    print_table(run(TINY if p.parse_args().tiny else CUDA))
