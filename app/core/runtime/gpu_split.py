"""The GPU split: how to load a GGUF model on the user's GPUs. It chooses
`n_gpu_layers`, `tensor_split` and the largest context that fits, by predicting what
llama.cpp will allocate on each GPU; and says the plan in plain words (`plan_summary`)
and in detail (`split_report`). Pure functions: no I/O, no driver calls.

The memory model follows llama.cpp's `llama_model::load_tensors` and its KV cache:

* Layers. llama.cpp counts n_layers + 1 offloadable "layers": the repeating blocks and
  the output layer (output_norm + output.weight). In the llama.cpp that the
  llama-cpp-python we ship bundles, `n_gpu_layers = k` offloads the output layer first,
  then the last k-1 blocks; n_layers + 1 offloads everything. Token
  embeddings always stay in system memory ("very little benefit to offloading the input
  layer"). Older builds offloaded the last k blocks and the output only at n_layers + 1;
  for them this plan errs on the safe side (a block is smaller than the output layer).
* Split. With split mode "layer", offloaded layer il goes to the first GPU whose
  cumulative, normalised tensor_split share exceeds (il - first_offloaded) / k
  (`std::upper_bound` over the split points): whole layers, in order, so the output
  layer lands on the last GPU. `main_gpu` only matters for split modes "none" and "row".
  `_assign` reproduces this exactly, so per-GPU sums are what llama.cpp will allocate.
* KV cache, per layer: n_ctx x n_head_kv x (head_dim_k + head_dim_v) x bytes per element
  of the cache type (f16 2, q8_0 34/32, q4_0 18/32: ggml's block sizes); it lives on
  its layer's GPU (offload_kqv, the default). One sequence: the runtime queues requests.
* Compute buffers, per GPU that holds layers (an estimate; ggml sizes them by reserving
  the worst-case graph of one n_ubatch = 512 micro-batch): activations ~72 bytes x
  n_embd per token (for Qwen2.5-32B about 180 MiB; its feed-forward is 5.4 x n_embd and
  ggml keeps ~3 such float tensors alive), the f16 attention mask (n_ubatch x n_ctx x 2),
  an f16 copy of one layer's K and V for a quantised cache, and on the GPU with the
  output layer the float logits (n_ubatch x vocab x 4: 297 MiB for Qwen's 152064 tokens).
  llama.cpp logs for layer-split models show the same shape, e.g. "CUDA0 compute buffer
  size = 144 MiB, CUDA1 (output) = 313 MiB" at n_ubatch 512 with flash attention.
  With partial offload, GPU 0 also stages one CPU layer's weights for large batches.
* Per GPU, besides what it holds: a fixed CUDA context (cuBLAS workspace, memory pools)
  of CUDA_OVERHEAD_MIB and a safety margin (MARGIN_FRACTION of its memory, at least
  MARGIN_MIN_MIB) for fragmentation and other programs. Usable = free - both.

Flash attention is on whenever CUDA is used: it is what keeps the compute buffer from
growing with n_ctx x n_head (without it the 32B's attention scores alone are 2.5 GiB at
32k context) and llama.cpp needs it for a quantised V cache.
"""

from __future__ import annotations

import math
import textwrap
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from app.core.runtime.gpus import Gpu
from app.core.runtime.model_info import ModelInfo

MIB = 1024 * 1024
CUDA_OVERHEAD_MIB = 400
MARGIN_FRACTION = 0.03
MARGIN_MIN_MIB = 256
N_BATCH = 512
N_UBATCH = 512
CTX_STEP = 256  # llama.cpp pads the KV cache to 256 cells
MIN_CTX = 2048  # less is too little for a chat with a short document
# The context for a partial-offload or CPU plan when the user chose none: enough for a
# short document; a longer one takes layers off the GPUs (or RAM) for little gain.
FALLBACK_CTX = 4096
COMFORTABLE_CTX = 8192  # below this, tell the user long documents are read in parts
ACTIVATION_BYTES_PER_EMBD = 72  # per micro-batch token, see the module docstring
REPORT_WIDTH = 76  # split_report's table; its notes wrap to it

# Bytes per element of a KV cache type: ggml block size / elements per block.
CACHE_BYTES: dict[str, float] = {
    "f32": 4.0, "f16": 2.0, "bf16": 2.0,
    "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32,
    "q4_1": 20 / 32, "q4_0": 18 / 32, "iq4_nl": 18 / 32,
}


@dataclass(frozen=True)
class SplitPlan:
    """How to load one model: the llama.cpp settings and what each device must hold."""

    fits: bool  # the whole model is on the GPUs at this context
    n_gpu_layers: int  # llama.cpp's count: n_layers + 1 (blocks + output) is everything
    n_layers: int  # the model's repeating blocks, for "40 of 64 layers"
    gpu_blocks: int  # how many of those blocks are on GPUs
    tensor_split: tuple[float, ...]  # share of layers per GPU, sums to 1; () on the CPU
    main_gpu: int
    n_ctx: int
    n_batch: int
    n_ubatch: int
    flash_attn: bool
    cache_type: str  # for both K and V
    split_mode: str  # "layer", or "none" on the CPU
    per_gpu_mib: tuple[int, ...]  # what each GPU must hold (weights, KV cache, buffers)
    usable_mib: tuple[int, ...]  # free memory less CUDA's own use and a safety margin
    cpu_mib: int  # what stays in system memory
    warnings: tuple[str, ...]  # plain words for the user

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data


def plan_split(model: ModelInfo, gpus: list[Gpu], *, n_ctx: int | None = None,
         cache_type: str = "f16") -> SplitPlan:
    """The plan for `model` on `gpus`: everything on the GPUs at the largest context that
    fits (or `n_ctx`), else as many layers as fit, else the CPU."""
    if cache_type not in CACHE_BYTES:
        raise ValueError(f"unknown KV cache type {cache_type!r}; one of {sorted(CACHE_BYTES)}")
    warnings: list[str] = []
    top = _ctx_ceiling(model)
    if n_ctx is not None:
        if n_ctx < 1:
            raise ValueError(f"n_ctx must be positive, not {n_ctx}")
        if n_ctx > model.n_ctx_train:
            warnings.append(f"This model was trained for {model.n_ctx_train:,} tokens of "
                            f"context, so it uses that instead of {n_ctx:,}.")
            n_ctx = model.n_ctx_train

    usable = tuple(_usable_bytes(g) for g in gpus)
    for gpu, room in zip(gpus, usable, strict=True):
        if room <= 0:
            warnings.append(f"GPU {gpu.index} ({gpu.name}) has too little free memory to "
                            "help; closing programs that use it may free some.")
    if not any(room > 0 for room in usable):
        if gpus:
            warnings.append("Your GPUs have too little free memory for this model, so it "
                            "runs on the processor and answers will be slow.")
        else:
            warnings.append("No NVIDIA GPU was found, so the model runs on the processor "
                            "and answers will be slow. A smaller model suits this "
                            "computer better.")
        return _cpu_plan(model, gpus, n_ctx or min(FALLBACK_CTX, top), cache_type, warnings)

    full = model.n_layers + 1
    floor = min(MIN_CTX, top)
    if n_ctx is not None:
        chosen = _layout(model, gpus, usable, full, n_ctx, cache_type)
        if chosen is None:
            best = _largest_full_ctx(model, gpus, usable, cache_type, floor, top)
            if best is not None:
                warnings.append(f"At {n_ctx:,} tokens of context the model doesn't fit "
                                f"on your GPUs; at {best:,} it would.")
            return _partial_plan(model, gpus, usable, n_ctx, cache_type, warnings)
    else:
        best = _largest_full_ctx(model, gpus, usable, cache_type, floor, top)
        if best is None:
            return _partial_plan(model, gpus, usable, min(FALLBACK_CTX, top), cache_type,
                                 warnings)
        n_ctx = best
        chosen = _layout(model, gpus, usable, full, n_ctx, cache_type)
        assert chosen is not None  # _largest_full_ctx just checked it
        if n_ctx < min(COMFORTABLE_CTX, model.n_ctx_train):
            warnings.append(f"The model fits on your {_gpus_word(gpus)} with room for "
                            f"{n_ctx:,} tokens of context; long documents are read in "
                            "parts.")
    return _gpu_plan(model, gpus, usable, full, n_ctx, cache_type, chosen, warnings)


# --- searching ------------------------------------------------------------------------

def _largest_full_ctx(model: ModelInfo, gpus: list[Gpu], usable: tuple[int, ...],
                      cache_type: str, floor: int, top: int) -> int | None:
    """The largest multiple of CTX_STEP in [floor, top] (or `top` itself when the model's
    context is shorter than one step) at which the whole model fits; None if none does."""
    full = model.n_layers + 1
    candidates = list(range(floor, top + 1, CTX_STEP)) if top >= CTX_STEP else [top]
    if _layout(model, gpus, usable, full, candidates[0], cache_type) is None:
        return None
    # Memory grows with the context, so the fitting candidates are a prefix.
    lo, hi = 0, len(candidates) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _layout(model, gpus, usable, full, candidates[mid], cache_type) is not None:
            lo = mid
        else:
            hi = mid - 1
    return candidates[lo]


def _partial_plan(model: ModelInfo, gpus: list[Gpu], usable: tuple[int, ...], n_ctx: int,
                  cache_type: str, warnings: list[str]) -> SplitPlan:
    # k = 1 would be the output layer alone: not worth a GPU plan's complications.
    for k in range(model.n_layers, 1, -1):
        chosen = _layout(model, gpus, usable, k, n_ctx, cache_type)
        if chosen is not None:
            blocks = k - 1  # the output layer goes first (see the module docstring)
            warnings.append(f"Only {blocks} of {model.n_layers} layers fit on your "
                            f"{_gpus_word(gpus)}; answers will be slower. A smaller model, "
                            "or a shorter context, would run faster.")
            return _gpu_plan(model, gpus, usable, k, n_ctx, cache_type, chosen, warnings)
    warnings.append(f"Your {_gpus_word(gpus)} can't hold even one layer of this model, "
                    "so it runs on the processor and answers will be slow.")
    return _cpu_plan(model, gpus, n_ctx, cache_type, warnings)


# --- llama.cpp's placement and its memory -----------------------------------------------

@dataclass(frozen=True)
class _Layout:
    split: tuple[float, ...]
    need: tuple[int, ...]  # bytes per GPU
    cpu: int  # bytes in system memory


def _layout(model: ModelInfo, gpus: list[Gpu], usable: tuple[int, ...], k: int, n_ctx: int,
            cache_type: str) -> _Layout | None:
    """The tensor_split and per-GPU bytes for n_gpu_layers = k, or None if a GPU overflows.

    The split is proportional to what each GPU has left for layers once its fixed costs
    (compute buffer; the output layer and logits on the last GPU) are paid, so the
    leftover room is even and the context can grow as far as possible.
    """
    n = model.n_layers
    kv_layer = _kv_layer_bytes(model, n_ctx, cache_type)
    partial = k < n + 1
    stage = max(model.layer_bytes, default=0) if partial else 0
    last = max(i for i, room in enumerate(usable) if room > 0)
    first = min(i for i, room in enumerate(usable) if room > 0)
    weights = []
    for i, room in enumerate(usable):
        if room <= 0:
            weights.append(0.0)
            continue
        fixed = _compute_bytes(model, n_ctx, cache_type, output=i == last)
        fixed += model.output_bytes if i == last else 0
        fixed += stage if i == first else 0
        weights.append(float(max(room - fixed, 1)))
    split = _normalise(weights)

    placement = _assign(n, k, split)
    need = [0] * len(gpus)
    holds_output = [False] * len(gpus)
    cpu = model.embedding_bytes + _host_compute_bytes(model, n_ctx, placement,
                                                      flash_attn=True)
    for il, device in enumerate(placement):
        is_output = il == n
        size = model.output_bytes if is_output else model.layer_bytes[il] + kv_layer
        if device < 0:
            cpu += size
        else:
            need[device] += size
            holds_output[device] |= is_output
    for i in range(len(gpus)):
        if need[i]:
            need[i] += _compute_bytes(model, n_ctx, cache_type, output=holds_output[i])
    if partial and need[first]:
        need[first] += stage
    if any(need[i] > max(usable[i], 0) for i in range(len(gpus))):
        return None
    return _Layout(split, tuple(need), cpu)


def _assign(n_layers: int, k: int, split: tuple[float, ...]) -> list[int]:
    """The device of each layer 0..n_layers (n_layers is the output layer); -1 is the CPU.

    Mirrors llama.cpp's `get_layer_buft_list`: i_gpu_start = max(n + 1 - k, 0),
    act = min(k, n + 1), device = upper_bound(cumulative split, (il - start) / act).
    """
    cumulative = []
    total = 0.0
    for share in split:
        total += share
        cumulative.append(total)
    cumulative = [c / total for c in cumulative]
    start = max(n_layers + 1 - k, 0)
    act = min(k, n_layers + 1)
    placement = []
    for il in range(n_layers + 1):
        if il < start or il - start >= act:
            placement.append(-1)
        else:
            device = bisect_right(cumulative, (il - start) / act)
            placement.append(min(device, len(split) - 1))
    return placement


def _kv_layer_bytes(model: ModelInfo, n_ctx: int, cache_type: str) -> int:
    cells = math.ceil(n_ctx / CTX_STEP) * CTX_STEP
    return math.ceil(cells * model.n_head_kv * (model.head_dim_k + model.head_dim_v)
                     * CACHE_BYTES[cache_type])


def _compute_bytes(model: ModelInfo, n_ctx: int, cache_type: str, *, output: bool) -> int:
    """A GPU's compute buffer with flash attention (see the module docstring)."""
    cells = math.ceil(n_ctx / CTX_STEP) * CTX_STEP
    size = N_UBATCH * model.n_embd * ACTIVATION_BYTES_PER_EMBD
    size += N_UBATCH * cells * 2  # the f16 attention mask
    if cache_type not in ("f16", "bf16", "f32"):
        size += cells * model.n_head_kv * (model.head_dim_k + model.head_dim_v) * 2
    if output:
        size += N_UBATCH * model.vocab_size * 4
    return size


def _host_compute_bytes(model: ModelInfo, n_ctx: int, placement: list[int], *,
                        flash_attn: bool) -> int:
    """The CPU's compute buffer: small when everything is offloaded, a full one when
    layers run on the CPU (without flash attention, with the n_ctx x n_head scores)."""
    if all(device >= 0 for device in placement):
        return N_UBATCH * model.n_embd * 4 * 2  # the input embeddings and their copy
    cells = math.ceil(n_ctx / CTX_STEP) * CTX_STEP
    size = N_UBATCH * model.n_embd * ACTIVATION_BYTES_PER_EMBD
    size += N_UBATCH * cells * (2 if flash_attn else model.n_head * 4)
    if placement[-1] < 0:
        size += N_UBATCH * model.vocab_size * 4
    return size


def _usable_bytes(gpu: Gpu) -> int:
    margin = max(MARGIN_MIN_MIB, math.ceil(gpu.total_mib * MARGIN_FRACTION))
    return (gpu.free_mib - CUDA_OVERHEAD_MIB - margin) * MIB


def _normalise(weights: list[float]) -> tuple[float, ...]:
    """Shares rounded to 4 places that sum to 1 (the remainder goes to the largest)."""
    total = sum(weights)
    shares = [round(w / total, 4) for w in weights]
    biggest = max(range(len(shares)), key=lambda i: shares[i])
    shares[biggest] = round(1.0 - sum(s for i, s in enumerate(shares) if i != biggest), 4)
    return tuple(shares)


# --- building plans ---------------------------------------------------------------------

def _gpu_plan(model: ModelInfo, gpus: list[Gpu], usable: tuple[int, ...], k: int,
              n_ctx: int, cache_type: str, layout: _Layout, warnings: list[str]) -> SplitPlan:
    full = model.n_layers + 1
    # main_gpu is unused by the layer split; if the runtime ever falls back to a single
    # GPU ("none"), the one with the most room is the one to use.
    main = max(range(len(gpus)), key=lambda i: usable[i])
    return SplitPlan(fits=k == full, n_gpu_layers=k, n_layers=model.n_layers,
                gpu_blocks=model.n_layers if k == full else k - 1,
                tensor_split=layout.split, main_gpu=main, n_ctx=n_ctx,
                n_batch=N_BATCH, n_ubatch=N_UBATCH, flash_attn=True, cache_type=cache_type,
                split_mode="layer", per_gpu_mib=tuple(_mib(b) for b in layout.need),
                usable_mib=tuple(max(u, 0) // MIB for u in usable),
                cpu_mib=_mib(layout.cpu), warnings=tuple(warnings))


def _cpu_plan(model: ModelInfo, gpus: list[Gpu], n_ctx: int, cache_type: str,
              warnings: list[str]) -> SplitPlan:
    if cache_type != "f16":
        # llama.cpp quantises the V cache only with flash attention, which this plan
        # leaves off; f16 is what a CPU plan can always load.
        warnings.append(f"The {cache_type} cache needs a GPU; using f16.")
        cache_type = "f16"
    placement = [-1] * (model.n_layers + 1)
    kv = _kv_layer_bytes(model, n_ctx, cache_type) * model.n_layers
    cpu = (model.embedding_bytes + sum(model.layer_bytes) + model.output_bytes + kv
           + _host_compute_bytes(model, n_ctx, placement, flash_attn=False))
    return SplitPlan(fits=False, n_gpu_layers=0, n_layers=model.n_layers, gpu_blocks=0,
                tensor_split=(), main_gpu=0, n_ctx=n_ctx, n_batch=N_BATCH,
                n_ubatch=N_UBATCH, flash_attn=False, cache_type=cache_type,
                split_mode="none", per_gpu_mib=tuple(0 for _ in gpus),
                usable_mib=tuple(max(_usable_bytes(g), 0) // MIB for g in gpus),
                cpu_mib=_mib(cpu), warnings=tuple(warnings))


def _ctx_ceiling(model: ModelInfo) -> int:
    top = model.n_ctx_train
    return top - top % CTX_STEP if top >= CTX_STEP else max(top, 1)


def _gpus_word(gpus: list[Gpu]) -> str:
    return "GPUs" if len(gpus) > 1 else "GPU"


def _mib(size: int) -> int:
    return math.ceil(size / MIB)


def split_report(result: SplitPlan, model: ModelInfo, devices: list[Gpu]) -> str:
    """The plan in detail, for IT and the curious: `gpu-plan` prints it, and Settings
    shows it under "Show details". Layer counts are the model's; llama.cpp's
    n_gpu_layers, which also counts the output layer, is named as such."""
    lines = [f"{model.name} ({model.quantisation}, {result.n_layers} layers)"]
    if devices:
        lines.append(f"{'GPU':<4}{'name':<36}{'free MiB':>10}{'usable':>9}{'needs':>9}"
                     f"{'share':>8}")
        shares = result.tensor_split or tuple(0.0 for _ in devices)
        for gpu, usable, need, share in zip(devices, result.usable_mib, result.per_gpu_mib,
                                            shares, strict=True):
            lines.append(f"{gpu.index:<4}{gpu.name[:35]:<36}{gpu.free_mib:>10}{usable:>9}"
                         f"{need:>9}{share:>8.1%}")
    if result.fits:
        on_gpus = f"all {result.n_layers} and the output layer"
    elif result.n_gpu_layers:
        on_gpus = f"{result.gpu_blocks} of {result.n_layers} and the output layer"
    else:
        on_gpus = "none"
    lines.append(f"layers on the GPUs: {on_gpus} (llama.cpp n_gpu_layers "
                 f"{result.n_gpu_layers})")
    lines.append(f"system memory: {result.cpu_mib} MiB")
    lines.append(f"context {result.n_ctx} tokens, KV cache {result.cache_type}, "
                 f"flash attention {'on' if result.flash_attn else 'off'}, "
                 f"split mode {result.split_mode}")
    for warning in result.warnings:
        lines += textwrap.wrap(f"note: {warning}", REPORT_WIDTH, subsequent_indent="      ")
    return "\n".join(lines) + "\n"


# --- the plan in words ------------------------------------------------------------------

_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight")
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")


def plan_summary(plan: SplitPlan, devices: Sequence[Gpu]) -> str:
    """The plan in one plain sentence, e.g. "All 64 layers on your two GPUs, about 19 GB
    of 24 on each; a conversation can be up to about 32,000 tokens (some 25,000 words)
    long." `devices` are the GPUs the plan was made for."""
    length = f"a conversation can be up to {_tokens(plan.n_ctx)} long"
    if plan.n_gpu_layers == 0:
        where = f"in about {_gb(plan.cpu_mib)} GB of system memory"
        if not devices:
            return (f"There is no NVIDIA GPU here, so the model runs on the processor "
                    f"{where} and answers are slow; {length}.")
        return (f"None of the model's {plan.n_layers} layers fit on your "
                f"{_gpus(len(devices))}, so it runs on the processor {where} and answers "
                f"are slow; {length}.")
    used = [i for i, need in enumerate(plan.per_gpu_mib) if need > 0]
    on = _which_gpus(len(used), len(devices))
    memory = _gpu_memory(plan, devices, used)
    if plan.fits:
        return f"{_all_layers(plan.n_layers)} on {on}, {memory}; {length}."
    rest = plan.n_layers - plan.gpu_blocks
    return (f"{plan.gpu_blocks} of {plan.n_layers} layers on {on} ({memory}) and the "
            f"other {rest} on the processor (about {_gb(plan.cpu_mib)} GB of system "
            f"memory), so answers are slower; {length}.")


def _all_layers(n_layers: int) -> str:
    if n_layers == 1:
        return "The model's one layer"
    return "Both layers" if n_layers == 2 else f"All {n_layers} layers"


def _which_gpus(used: int, total: int) -> str:
    if total == 1:
        return "your GPU"
    if used == total:
        return f"your {_number(total)} GPUs"
    return f"{_number(used)} of your {_number(total)} GPUs"


def _gpus(count: int) -> str:
    return "GPU" if count == 1 else f"{_number(count)} GPUs"


def _gpu_memory(plan: SplitPlan, devices: Sequence[Gpu], used: list[int]) -> str:
    """"about 19 GB of 24 on each", or per GPU where they differ."""
    amounts = [(_gb(plan.per_gpu_mib[i]), _gb(devices[i].total_mib)) for i in used]
    if len(amounts) == 1:
        need, total = amounts[0]
        return f"about {need} GB of its {total}"
    if len({total for _, total in amounts}) == 1:  # alike GPUs: the range they use
        least = _gb(min(plan.per_gpu_mib[i] for i in used))
        most = _gb(max(plan.per_gpu_mib[i] for i in used))
        need = least if least == most else f"{least}–{most}"
        return f"about {need} GB of {amounts[0][1]} on each"
    parts = [f"{need} GB of {total} on the {_ordinal(i)}"
             for i, (need, total) in zip(used, amounts, strict=True)]
    return "about " + ", ".join(parts[:-1]) + " and " + parts[-1]


def _number(n: int) -> str:
    return _NUMBERS[n] if n < len(_NUMBERS) else str(n)


def _ordinal(i: int) -> str:
    return _ORDINALS[i] if i < len(_ORDINALS) else f"GPU {i}"


def _gb(mib: int) -> str:
    """MiB as people read GB: "19", "7.5", at least "0.1"."""
    gb = max(mib / 1024, 0.1)
    return str(round(gb)) if gb >= 9.5 else f"{gb:.1f}".removesuffix(".0")


def _tokens(n_ctx: int) -> str:
    """"about 32,000 tokens (some 25,000 words)": a token is about three quarters of a
    word in English; the tokens are rounded down, so "about" never promises more."""
    if n_ctx < 1000:
        return f"{n_ctx:,} tokens"
    return f"about {_two_figures(n_ctx, down=True):,} tokens " \
           f"(some {_two_figures(n_ctx * 3 // 4, down=False):,} words)"


def _two_figures(n: int, *, down: bool) -> int:
    step = 10 ** max(len(str(n)) - 2, 0)
    return n // step * step if down else round(n / step) * step
