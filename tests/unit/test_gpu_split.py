"""The GPU split on the inventories the issue names, for the reference model's shape
(Qwen2.5-32B-Instruct Q4_K_M) and for the tiny test model."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.runtime import gpu_split
from app.core.runtime.gguf_inspect import inspect_model
from app.core.runtime.gpu_split import _assign, plan_split
from app.core.runtime.gpus import Gpu, parse_gpu_list
from app.core.runtime.model_info import ModelInfo

INVENTORIES = {
    "none": "none",
    "1x8GB": "8192",
    "1x24GB": "24564",
    "2x24GB": "24564,24564",
    "24+12GB": "24564,12288",
    "4x16GB": "16384,16384,16384,16384",
}
GPU_INVENTORIES = [name for name in INVENTORIES if name != "none"]

# Qwen2.5-32B-Instruct Q4_K_M as bartowski/Qwen publish it: output.weight is Q6_K
# (210 bytes per 256 weights), token_embd about the same, the rest spread evenly.
_VOCAB, _EMBD, _FILE = 152064, 5120, 19_850_000_000
_EMBEDDING = _VOCAB * _EMBD * 210 // 256
_OUTPUT = _EMBEDDING + _EMBD * 4  # output.weight and output_norm
_LAYER = (_FILE - _EMBEDDING - _OUTPUT) // 64
QWEN_32B = ModelInfo(
    path=None, file_size=_FILE, architecture="qwen2", name="Qwen2.5-32B-Instruct",
    parameter_count=32_763_876_352, quantisation="Q4_K_M", n_layers=64, n_ctx_train=32768,
    n_embd=_EMBD, n_head=40, n_head_kv=8, head_dim_k=128, head_dim_v=128, vocab_size=_VOCAB,
    has_chat_template=True, layer_bytes=(_LAYER,) * 64, output_bytes=_OUTPUT,
    embedding_bytes=_EMBEDDING)


def gpus(name: str) -> list[Gpu]:
    return parse_gpu_list(INVENTORIES[name])


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path) -> ModelInfo:
    return inspect_model(tiny_model_path)


@pytest.fixture(params=["qwen-32b", "tiny"])
def model(request: pytest.FixtureRequest) -> ModelInfo:
    if request.param == "tiny":
        return request.getfixturevalue("tiny")
    return QWEN_32B


# --- the reference model on each inventory -------------------------------------------

def test_two_24gb_gpus_hold_the_32b_with_a_long_context() -> None:
    p = plan_split(QWEN_32B, gpus("2x24GB"))
    assert p.fits and p.n_gpu_layers == 65 and p.gpu_blocks == 64
    assert p.n_ctx >= 8192 and p.n_ctx % 256 == 0
    assert p.tensor_split == pytest.approx((0.5, 0.5), abs=0.02)
    assert p.flash_attn and p.split_mode == "layer" and p.cache_type == "f16"
    assert p.warnings == ()
    assert p.cpu_mib < 1024  # only the token embeddings stay in system memory


def test_24_plus_12_splits_by_usable_memory() -> None:
    p = plan_split(QWEN_32B, gpus("24+12GB"))
    assert p.fits
    by_usable = p.usable_mib[0] / sum(p.usable_mib)
    assert p.tensor_split[0] == pytest.approx(by_usable, abs=0.03)
    assert p.tensor_split[0] / p.tensor_split[1] == pytest.approx(2, rel=0.15)
    assert p.per_gpu_mib[0] > p.per_gpu_mib[1]
    assert p.main_gpu == 0  # the one with the most room


def test_one_24gb_gpu_holds_the_32b_with_a_shorter_context() -> None:
    p = plan_split(QWEN_32B, gpus("1x24GB"))
    assert p.fits and p.n_gpu_layers == 65
    assert 2048 <= p.n_ctx < QWEN_32B.n_ctx_train
    # the full trained context does not fit, and the split says so if asked for it
    asked = plan_split(QWEN_32B, gpus("1x24GB"), n_ctx=32768)
    assert not asked.fits
    assert any(f"at {p.n_ctx:,} it would" in w for w in asked.warnings)


def test_one_8gb_gpu_takes_part_of_the_32b_and_says_so() -> None:
    p = plan_split(QWEN_32B, gpus("1x8GB"))
    assert not p.fits
    assert 2 <= p.n_gpu_layers < 65 and p.gpu_blocks == p.n_gpu_layers - 1
    assert p.flash_attn and p.tensor_split == (1.0,)
    assert any(f"Only {p.gpu_blocks} of 64 layers fit on your GPU;" in w for w in p.warnings)
    assert p.cpu_mib > 10_000  # most of the model stays in system memory


def test_no_gpu_gives_a_cpu_plan() -> None:
    p = plan_split(QWEN_32B, [])
    assert not p.fits and p.n_gpu_layers == 0 and p.gpu_blocks == 0
    assert p.tensor_split == () and p.per_gpu_mib == () and not p.flash_attn
    assert p.cpu_mib > 18_000
    assert any("processor" in w for w in p.warnings)


def test_four_16gb_gpus_share_the_32b_evenly() -> None:
    p = plan_split(QWEN_32B, gpus("4x16GB"))
    assert p.fits and p.n_ctx == QWEN_32B.n_ctx_train
    assert p.tensor_split == pytest.approx((0.25,) * 4, abs=0.03)
    assert max(p.per_gpu_mib) - min(p.per_gpu_mib) < 1024


def test_gpus_without_free_memory_are_left_out_and_named() -> None:
    busy = [Gpu(0, "NVIDIA RTX A2000", 6144, 300), Gpu(1, "NVIDIA RTX 4090", 24564, 24564)]
    p = plan_split(QWEN_32B, busy)
    assert p.tensor_split[0] == 0 and p.per_gpu_mib[0] == 0
    assert any("GPU 0 (NVIDIA RTX A2000) has too little free memory" in w for w in p.warnings)
    assert plan_split(QWEN_32B, busy[:1]).n_gpu_layers == 0


def test_a_quantised_cache_buys_context() -> None:
    f16 = plan_split(QWEN_32B, gpus("1x24GB"))
    q8 = plan_split(QWEN_32B, gpus("1x24GB"), cache_type="q8_0")
    assert q8.fits and q8.n_ctx > f16.n_ctx and q8.cache_type == "q8_0"
    cpu = plan_split(QWEN_32B, [], cache_type="q8_0")
    assert cpu.cache_type == "f16"  # llama.cpp needs flash attention for a quantised V


def test_the_users_context_is_kept_when_it_fits_and_capped_at_the_trained_one() -> None:
    assert plan_split(QWEN_32B, gpus("2x24GB"), n_ctx=8192).n_ctx == 8192
    capped = plan_split(QWEN_32B, gpus("2x24GB"), n_ctx=100_000)
    assert capped.n_ctx == 32768
    assert any("trained for 32,768 tokens" in w for w in capped.warnings)


def test_unknown_cache_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="cache type"):
        plan_split(QWEN_32B, gpus("1x24GB"), cache_type="q3_x")


# --- properties on every inventory and both models -------------------------------------

@pytest.mark.parametrize("inventory", list(INVENTORIES))
def test_no_gpu_is_asked_for_more_than_it_can_give(model: ModelInfo, inventory: str) -> None:
    p = plan_split(model, gpus(inventory))
    assert len(p.per_gpu_mib) == len(p.usable_mib) == len(gpus(inventory))
    assert all(need <= usable for need, usable in zip(p.per_gpu_mib, p.usable_mib,
                                                      strict=True))
    if p.n_gpu_layers:
        assert sum(p.tensor_split) == pytest.approx(1.0)
        assert len(p.tensor_split) == len(p.usable_mib)
        assert p.flash_attn
    assert 0 <= p.n_gpu_layers <= model.n_layers + 1
    assert p.fits == (p.n_gpu_layers == model.n_layers + 1)
    assert p.n_ctx <= model.n_ctx_train
    assert set(p.to_json()) >= {"fits", "n_gpu_layers", "tensor_split", "n_ctx",
                                "per_gpu_mib", "warnings", "main_gpu", "flash_attn",
                                "cache_type", "split_mode", "cpu_mib"}


@pytest.mark.parametrize("inventory", GPU_INVENTORIES)
def test_a_longer_context_never_puts_more_layers_on_the_gpus(inventory: str) -> None:
    layers = [plan_split(QWEN_32B, gpus(inventory), n_ctx=ctx).n_gpu_layers
              for ctx in (2048, 4096, 8192, 16384, 24576, 32768)]
    assert layers == sorted(layers, reverse=True)


@pytest.mark.parametrize("inventory", GPU_INVENTORIES)
def test_the_tiny_model_fits_everywhere_at_its_trained_context(tiny: ModelInfo,
                                                               inventory: str) -> None:
    p = plan_split(tiny, gpus(inventory))
    assert p.fits and p.n_gpu_layers == tiny.n_layers + 1
    assert p.n_ctx == tiny.n_ctx_train
    assert p.warnings == ()


def test_the_tiny_model_on_no_gpu(tiny: ModelInfo) -> None:
    p = plan_split(tiny, [])
    assert p.n_gpu_layers == 0 and p.n_ctx == tiny.n_ctx_train


def test_planning_halves_the_contexts_and_tries_each_layer_count_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[object] = []
    layout = gpu_split._layout
    monkeypatch.setattr(gpu_split, "_layout", lambda *a, **k: tried.append(a) or layout(*a, **k))
    contexts = QWEN_32B.n_ctx_train // gpu_split.CTX_STEP
    for inventory in INVENTORIES:
        tried.clear()
        plan_split(QWEN_32B, gpus(inventory))
        # Quick enough to plan as the user types: not every layer count at every context
        # (64 × 128 layouts), but a halving search of the contexts, then at most one try
        # for each layer count.
        assert len(tried) <= 2 * contexts.bit_length() + QWEN_32B.n_layers, inventory


# --- llama.cpp's placement rule -------------------------------------------------------

def test_layers_are_placed_as_llama_cpp_places_them() -> None:
    # 4 blocks + output, all offloaded, half and half: blocks 0-2 on GPU 0, block 3 and
    # the output on GPU 1 (upper_bound of i/5 in the split points 0.5, 1.0).
    assert _assign(4, 5, (0.5, 0.5)) == [0, 0, 0, 1, 1]
    # n_gpu_layers 3: the output layer first, then the last two blocks.
    assert _assign(4, 3, (0.5, 0.5)) == [-1, -1, 0, 0, 1]
    assert _assign(4, 0, (1.0,)) == [-1] * 5
    # a GPU with no share gets no layer
    assert _assign(4, 5, (0.0, 1.0)) == [1] * 5
