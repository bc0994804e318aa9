"""GGUF inspection: every field of the tiny test model, split and tied-embedding models,
and the refusal of files that are not usable models."""

from __future__ import annotations

import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest

from app.core.errors import ModelRejected
from app.core.runtime.gguf_inspect import inspect_model
from tests.fixtures import tiny_gguf as tiny

F32, F16 = 4, 2  # bytes
E, FF = tiny.EMBEDDING_LENGTH, tiny.FEED_FORWARD_LENGTH
KV = tiny.KV_LENGTH
VOCAB = 256 + len(tiny.MERGES) + len(tiny.SPECIAL_TOKENS)
# One Qwen2 block: two norms, q/k/v with biases, the attention output, gate/up/down.
BLOCK_PARAMS = 2 * E + (E * E + E) + 2 * (KV * E + KV) + E * E + 3 * E * FF


def test_tiny_model_every_field(tiny_model_path: Path) -> None:
    info = inspect_model(tiny_model_path)

    assert info.path == tiny_model_path
    assert info.file_size == tiny_model_path.stat().st_size
    assert info.architecture == tiny.ARCHITECTURE
    assert info.name == tiny.MODEL_NAME
    assert info.quantisation == "F32"  # written as LlamaFileType.ALL_F32
    assert info.n_layers == tiny.BLOCK_COUNT
    assert info.n_ctx_train == tiny.CONTEXT_LENGTH
    assert info.n_embd == E
    assert info.n_head == tiny.HEAD_COUNT
    assert info.n_head_kv == tiny.HEAD_COUNT_KV
    assert info.head_dim_k == info.head_dim_v == tiny.HEAD_SIZE  # no key_length: n_embd/n_head
    assert info.vocab_size == VOCAB
    assert info.has_chat_template
    assert info.layer_bytes == (BLOCK_PARAMS * F32,) * tiny.BLOCK_COUNT
    # output.weight + output.bias + output_norm; the embedding is not tied.
    assert info.output_bytes == (VOCAB * E + VOCAB + E) * F32
    assert info.embedding_bytes == VOCAB * E * F32
    assert info.parameter_count == (VOCAB * E + tiny.BLOCK_COUNT * BLOCK_PARAMS
                                    + E + VOCAB * E + VOCAB)


def _write_small_model(path: Path, *, tied: bool = False, file_type: int | None = None,
                       split_max_tensors: int = 0) -> None:
    """A minimal model shape (not loadable by llama.cpp) for what the tiny model lacks."""
    writer = gguf.GGUFWriter(path, "qwen2", split_max_tensors=split_max_tensors)
    writer.add_block_count(2)
    writer.add_context_length(4096)
    writer.add_embedding_length(32)
    writer.add_head_count(4)
    writer.add_head_count_kv(4)
    writer.add_key_length(16)
    writer.add_value_length(8)
    if file_type is not None:
        writer.add_file_type(file_type)
    writer.add_tensor("token_embd.weight", np.zeros((100, 32), dtype=np.float16))
    for block in range(2):
        writer.add_tensor(f"blk.{block}.attn_q.weight", np.zeros((32, 32), dtype=np.float16))
    writer.add_tensor("output_norm.weight", np.zeros(32, dtype=np.float32))
    if not tied:
        writer.add_tensor("output.weight", np.zeros((100, 32), dtype=np.float16))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def test_optional_keys_and_the_most_common_tensor_type(tmp_path: Path) -> None:
    path = tmp_path / "small.gguf"
    _write_small_model(path)
    info = inspect_model(path)
    assert (info.head_dim_k, info.head_dim_v) == (16, 8)
    assert info.name == "small"  # no general.name: the file's stem
    assert info.vocab_size == 100  # no token list: from token_embd
    assert not info.has_chat_template
    assert info.quantisation == "F16"  # no general.file_type: F16 holds the most bytes


def test_quantisation_named_as_llama_cpp_names_it(tmp_path: Path) -> None:
    path = tmp_path / "q.gguf"
    _write_small_model(path, file_type=gguf.LlamaFileType.MOSTLY_Q4_K_M)
    assert inspect_model(path).quantisation == "Q4_K_M"


def test_tied_embeddings_count_as_the_output_layer(tmp_path: Path) -> None:
    path = tmp_path / "tied.gguf"
    _write_small_model(path, tied=True)
    info = inspect_model(path)
    assert info.embedding_bytes == 100 * 32 * F16
    assert info.output_bytes == 32 * F32 + info.embedding_bytes


def test_split_model_is_read_across_its_parts(tmp_path: Path) -> None:
    whole, split = tmp_path / "whole" / "m.gguf", tmp_path / "split" / "m.gguf"
    whole.parent.mkdir()
    split.parent.mkdir()
    _write_small_model(whole)
    _write_small_model(split, split_max_tensors=2)
    parts = sorted(split.parent.iterdir())
    assert [p.name for p in parts] == [f"m-0000{n}-of-00003.gguf" for n in (1, 2, 3)]

    one, many = inspect_model(whole), inspect_model(parts[0])
    assert many.parameter_count == one.parameter_count
    assert many.layer_bytes == one.layer_bytes
    assert (many.output_bytes, many.embedding_bytes) == (one.output_bytes, one.embedding_bytes)
    assert many.file_size == sum(p.stat().st_size for p in parts)

    with pytest.raises(ModelRejected, match="not the first part"):
        inspect_model(parts[1])
    parts[2].unlink()
    with pytest.raises(ModelRejected) as refused:
        inspect_model(parts[0])
    assert refused.value.detail == "part 3 of 3 is missing (m-00003-of-00003.gguf)"


def _refusal(path: Path) -> str:
    with pytest.raises(ModelRejected) as refused:
        inspect_model(path)
    return refused.value.detail


def test_text_file_renamed_gguf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("Minutes of the Tuesday meeting\n" * 100)
    assert _refusal(path) == "notes.gguf is not a GGUF file"


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.touch()
    assert _refusal(path) == "empty.gguf is empty"


def test_truncated_model_is_refused_with_both_sizes(tiny_model_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "half.gguf"
    data = tiny_model_path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    size, whole = len(data) // 2 / 1e6, len(data) / 1e6
    assert _refusal(path) == f"the file is cut short: {size:.2f} MB of {whole:.2f} MB"


def test_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "models.gguf"
    folder.mkdir()
    assert _refusal(folder) == "models.gguf is a folder, not a model file"


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert _refusal(tmp_path / "gone.gguf") == "gone.gguf does not exist"


def test_gguf_magic_then_garbage_is_refused(tiny_model_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "garbage.gguf"
    garbage = np.random.default_rng(0).bytes(64_000)
    path.write_bytes(b"GGUF" + garbage)
    assert _refusal(path).startswith("garbage.gguf is damaged")
    # A valid version but a garbled header past it.
    shutil.copy(tiny_model_path, path)
    with path.open("r+b") as file:
        file.seek(8)
        file.write(garbage[:4000])
    assert _refusal(path).startswith("garbage.gguf is damaged")
