"""What the GPU split and the UI need to know about a GGUF model, read from its
header without loading it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ModelInfo:
    path: Path | None  # None for a shape described without a file (GPU split tests)
    file_size: int  # bytes
    architecture: str  # "qwen2"
    name: str  # general.name, or the file's stem
    parameter_count: int
    quantisation: str  # "Q4_K_M", "F16", …
    n_layers: int  # block_count
    n_ctx_train: int  # the context the model was trained for
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int  # key_length, or n_embd // n_head
    head_dim_v: int  # value_length, or n_embd // n_head
    vocab_size: int
    has_chat_template: bool
    layer_bytes: tuple[int, ...]  # bytes of each block's tensors (blk.N.*), in order
    output_bytes: int  # output.weight and output_norm (on the last GPU when offloaded)
    embedding_bytes: int  # token_embd (llama.cpp keeps it in system memory)
