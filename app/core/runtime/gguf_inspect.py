"""Read a GGUF model's header into a `ModelInfo`, or refuse the file with a plain reason,
before anything is loaded.

Only the header and tensor table are parsed: `gguf.GGUFReader` memory-maps the file and
this module never touches tensor data, so a 20 GB model is inspected in about a second.
A model split into parts (`…-00001-of-00005.gguf`, as the official Qwen GGUFs are) is
read as llama.cpp reads it: metadata from part 1, tensors from every part.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from app.core.errors import ModelRejected
from app.core.runtime.model_info import ModelInfo

if TYPE_CHECKING:
    import gguf

GGUF_MAGIC = b"GGUF"
_SPLIT_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_BLOCK = re.compile(r"^blk\.(\d+)\.")


def inspect_model(path: Path) -> ModelInfo:
    """Describe the model at `path`; raise `ModelRejected` if it can't be used."""
    path = Path(path)
    first = _read_part(path)
    split_count = _int_field(first, "split.count", default=1)
    parts = [first]
    if split_count > 1:
        if _int_field(first, "split.no", default=0) != 0:
            raise ModelRejected("this is not the first part of a split model: choose the "
                                "file whose name ends in -00001-of-"
                                f"{split_count:05d}.gguf")
        parts += [_read_part(part) for part in _other_parts(path, split_count)]
    return _model_info(path, first, parts)


class _Tensor(NamedTuple):
    name: str
    type: gguf.GGMLQuantizationType
    elements: int
    n_bytes: int


@dataclass(frozen=True, slots=True)
class _Part:
    path: Path
    size: int
    fields: dict[str, Any]  # the metadata, as plain Python values
    tensors: tuple[_Tensor, ...]


class _Truncated(Exception):
    def __init__(self, needed: int) -> None:
        super().__init__(needed)
        self.needed = needed


@cache
def _checked_reader() -> type[gguf.GGUFReader]:
    """The reader class, made on first use: gguf brings numpy, which a start that never
    looks at a model file does without."""
    import gguf

    class CheckedReader(gguf.GGUFReader):
        """A GGUFReader that checks the tensor table against the file's length first.

        Without this the reader fails on a cut-short file with numpy's "cannot reshape
        array" (or, for a zero-sized tensor, not at all). `_build_tensors` and the layout
        of `field.parts` are internal to gguf-py, stable since GGUF v3.
        """

        def _build_tensors(self, start_offs: int, fields: list[gguf.ReaderField]) -> None:
            needed = 0
            for field in fields:
                _, _, _, dims, raw_type, offset = field.parts
                quant = gguf.GGMLQuantizationType(raw_type[0])
                block_size, type_size = gguf.GGML_QUANT_SIZES[quant]
                elements = 1
                for dim in dims.tolist():
                    elements *= int(dim)
                end = start_offs + int(offset[0]) + elements * type_size // block_size
                needed = max(needed, end)
            if needed > len(self.data):
                raise _Truncated(needed)
            super()._build_tensors(start_offs, fields)

    return CheckedReader


def _read_part(path: Path) -> _Part:
    """Check one file's magic, read its header and check it is complete."""
    name = path.name
    try:
        if path.is_dir():
            raise ModelRejected(f"{name} is a folder, not a model file")
        with path.open("rb") as file:
            magic = file.read(4)
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelRejected(f"{name} does not exist") from None
    except OSError as error:
        raise ModelRejected(f"{name} can't be read: {error.strerror or error}") from None
    if size == 0:
        raise ModelRejected(f"{name} is empty")
    # Checked before the reader maps the file, so a large file of the wrong kind is
    # refused at once and with the right words.
    if magic != GGUF_MAGIC:
        raise ModelRejected(f"{name} is not a GGUF file")
    try:
        reader = _checked_reader()(path)
    except _Truncated as cut:
        raise ModelRejected(f"the file is cut short: {_mb(size)} of {_mb(cut.needed)}") from None
    except OSError as error:
        raise ModelRejected(f"{name} can't be read: {error.strerror or error}") from None
    except Exception:
        # The reader has no error type of its own: damaged headers surface as
        # ValueError, IndexError, KeyError, UnicodeDecodeError, OverflowError, ….
        raise ModelRejected(f"{name} is damaged: its header can't be read "
                            "(it may be cut short or corrupt)") from None
    try:
        fields = {key: field.contents() for key, field in reader.fields.items()
                  if not key.startswith("GGUF.")}
    except Exception:
        raise ModelRejected(f"{name} is damaged: its metadata can't be read") from None
    tensors = tuple(_Tensor(t.name, t.tensor_type, int(t.n_elements), int(t.n_bytes))
                    for t in reader.tensors)
    return _Part(path, size, fields, tensors)


def _other_parts(first: Path, count: int) -> list[Path]:
    """The paths of parts 2…count beside part 1, named as llama.cpp's gguf-split names them."""
    match = _SPLIT_NAME.match(first.name)
    if match is None or int(match["count"]) != count:
        raise ModelRejected(f"{first.name} is part 1 of {count}, but its name doesn't say so, "
                            "so the other parts can't be found")
    parts = [first.with_name(f"{match['prefix']}-{no:05d}-of-{count:05d}.gguf")
             for no in range(2, count + 1)]
    for no, part in enumerate(parts, start=2):
        if not part.is_file():
            raise ModelRejected(f"part {no} of {count} is missing ({part.name})")
    return parts


def _model_info(path: Path, first: _Part, parts: list[_Part]) -> ModelInfo:
    fields = first.fields
    architecture = fields.get("general.architecture")
    if not isinstance(architecture, str):
        raise ModelRejected(f"{path.name} doesn't say which model architecture it is")

    def arch_int(key: str, default: int | None = None) -> int:
        value = _int_field(first, f"{architecture}.{key}", default=default)
        if value is None:
            raise ModelRejected(f"{path.name} lacks {architecture}.{key}")
        return value

    tensors = [tensor for part in parts for tensor in part.tensors]
    n_layers = arch_int("block_count")
    n_embd = arch_int("embedding_length")
    n_head = arch_int("attention.head_count")
    layer_bytes = [0] * n_layers
    output_bytes = embedding_bytes = 0
    has_output = False
    for name, _, _, n_bytes in tensors:
        if block := _BLOCK.match(name):
            index = int(block[1])
            if index < n_layers:
                layer_bytes[index] += n_bytes
        elif name.startswith("token_embd."):
            embedding_bytes += n_bytes
        elif name.startswith(("output.", "output_norm.")):
            output_bytes += n_bytes
            has_output = has_output or name == "output.weight"
    if not has_output:
        # Tied embeddings: llama.cpp uses token_embd as the output layer too, so it
        # occupies memory on the output's device as well.
        output_bytes += embedding_bytes

    tokens = fields.get("tokenizer.ggml.tokens")
    if isinstance(tokens, list):
        vocab_size = len(tokens)
    else:
        # Fall back to the embedding matrix: ggml shape {n_embd, n_vocab}.
        embd = next((t for t in tensors if t.name == "token_embd.weight"), None)
        vocab_size = embd.elements // n_embd if embd else 0

    general_name = fields.get("general.name")
    return ModelInfo(
        path=path,
        file_size=sum(part.size for part in parts),
        architecture=architecture,
        name=general_name if isinstance(general_name, str) and general_name else path.stem,
        parameter_count=sum(t.elements for t in tensors),
        quantisation=_quantisation(first, tensors),
        n_layers=n_layers,
        n_ctx_train=arch_int("context_length"),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=arch_int("attention.head_count_kv", default=n_head),
        head_dim_k=arch_int("attention.key_length", default=n_embd // n_head),
        head_dim_v=arch_int("attention.value_length", default=n_embd // n_head),
        vocab_size=vocab_size,
        has_chat_template=isinstance(fields.get("tokenizer.chat_template"), str),
        layer_bytes=tuple(layer_bytes),
        output_bytes=output_bytes,
        embedding_bytes=embedding_bytes,
    )


def _quantisation(first: _Part, tensors: list[_Tensor]) -> str:
    """llama.cpp's name for the file type ("Q4_K_M"), else the type holding the most bytes."""
    import gguf  # loaded already: the file was read

    file_type = _int_field(first, "general.file_type", default=None)
    if file_type is not None and file_type in gguf.LlamaFileType._value2member_map_:
        member = gguf.LlamaFileType(file_type)
        if member is not gguf.LlamaFileType.GUESSED:
            return member.name.removeprefix("MOSTLY_").removeprefix("ALL_")
    by_bytes: Counter[str] = Counter()
    for tensor in tensors:
        by_bytes[tensor.type.name] += tensor.n_bytes
    return by_bytes.most_common(1)[0][0] if by_bytes else "unknown"


def _int_field(part: _Part, key: str, *, default: int | None) -> Any:
    value = part.fields.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelRejected(f"{part.path.name} is damaged: {key} is not a whole number")
    return value


def _mb(size: int) -> str:
    return f"{size / 1_000_000:,.0f} MB" if size >= 10_000_000 else f"{size / 1_000_000:.2f} MB"
