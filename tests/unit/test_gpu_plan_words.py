"""The GPU split plan as the user reads it: one plain sentence for each kind of plan (one
GPU, several alike or not, some of them, some layers on the processor, nothing on a GPU),
and the detailed report counting the model's layers, not llama.cpp's n_gpu_layers."""

from __future__ import annotations

import re

import pytest

from app.core.runtime.gpu_split import SplitPlan, plan_split, plan_summary, split_report
from app.core.runtime.gpus import Gpu
from tests.unit.test_gpu_split import QWEN_32B, gpus

LENGTH = re.compile(r"; a conversation can be up to about [\d,]+ tokens \(some [\d,]+ words\) "
                    r"long\.$")


def plan(n_mib: list[int], n_ctx: int | None = None) -> tuple[SplitPlan, list[Gpu]]:
    devices = [Gpu(i, f"GPU {i}", mib, mib) for i, mib in enumerate(n_mib)]
    return plan_split(QWEN_32B, devices, n_ctx=n_ctx), devices


def test_one_gpu_that_holds_it_all() -> None:
    p, devices = plan([24564], n_ctx=8192)
    text = plan_summary(p, devices)
    assert re.match(r"All 64 layers on your GPU, about \d+ GB of its 24; ", text), text
    assert text.endswith("a conversation can be up to about 8,100 tokens "
                         "(some 6,100 words) long.")


def test_two_alike_gpus_share_it() -> None:
    p, devices = plan([24564, 24564])
    text = plan_summary(p, devices)
    assert p.n_gpu_layers == 65  # llama.cpp's count; the user reads the model's 64
    assert re.match(r"All 64 layers on your two GPUs, about [\d.–]+ GB of 24 on each; ",
                    text), text
    assert LENGTH.search(text) and "about 32,000 tokens" in text
    assert "65" not in text


def test_unlike_gpus_are_told_apart() -> None:
    p, devices = plan([24564, 12288])
    text = plan_summary(p, devices)
    assert re.match(r"All 64 layers on your two GPUs, about \d+ GB of 24 on the first and "
                    r"[\d.]+ GB of 12 on the second; ", text), text


def test_a_gpu_without_room_is_left_out() -> None:
    devices = [Gpu(0, "busy", 6144, 300), Gpu(1, "free", 24564, 24564)]
    text = plan_summary(plan_split(QWEN_32B, devices), devices)
    assert text.startswith("All 64 layers on one of your two GPUs, about "), text
    assert " of its 24; " in text


def test_some_layers_on_the_processor() -> None:
    p, devices = plan([8192])
    text = plan_summary(p, devices)
    on_cpu = 64 - p.gpu_blocks
    assert text.startswith(f"{p.gpu_blocks} of 64 layers on your GPU (about ")
    assert f" of its 8) and the other {on_cpu} on the processor (about " in text
    assert "so answers are slower" in text and LENGTH.search(text)


@pytest.mark.parametrize("inventory", ["none", "1x8GB"])
def test_nothing_on_a_gpu(inventory: str) -> None:
    devices = gpus(inventory) if inventory == "none" else [Gpu(0, "busy", 8192, 500)]
    p = plan_split(QWEN_32B, devices)
    assert p.n_gpu_layers == 0
    text = plan_summary(p, devices)
    start = ("There is no NVIDIA GPU here, so the model runs" if not devices
             else "None of the model's 64 layers fit on your GPU, so it runs")
    assert text.startswith(start), text
    assert re.search(r"on the processor in about 2\d GB of system memory and answers are "
                     r"slow; a conversation can be up to about 4,000 tokens", text), text


def test_a_short_context_is_given_exactly() -> None:
    p, devices = plan([24564], n_ctx=512)
    assert plan_summary(p, devices).endswith("a conversation can be up to 512 tokens long.")


def test_the_details_count_the_models_layers() -> None:
    p, devices = plan([24564, 24564])
    report = split_report(p, QWEN_32B, devices)
    assert "(Q4_K_M, 64 layers)" in report
    assert "layers on the GPUs: all 64 and the output layer (llama.cpp n_gpu_layers 65)" \
        in report
    part, devices = plan([8192])
    assert (f"layers on the GPUs: {part.gpu_blocks} of 64 and the output layer "
            f"(llama.cpp n_gpu_layers {part.gpu_blocks + 1})") in split_report(
                part, QWEN_32B, devices)
    none = plan_split(QWEN_32B, [])
    report = split_report(none, QWEN_32B, [])
    assert "layers on the GPUs: none (llama.cpp n_gpu_layers 0)" in report
    assert all(len(line) <= 76 for line in report.splitlines())  # notes wrap, not clip
