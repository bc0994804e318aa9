"""What an office node can take and how busy it is, asked of the engine it runs.

- llama.cpp's `llama-server`: `/props` gives the context one request may use (each slot
  has `n_ctx`) and how many requests it runs at once (`total_slots`); its load comes from
  `/metrics` (requests processing and deferred) or `/slots` (which are processing).
- vLLM: `max_model_len` in `/v1/models`; continuous batching, so no fixed slot count
  (`BATCHING_SLOTS` at once from Switchboard); load from `/metrics` (running, waiting).
- Ollama: `/api/show` and `/api/ps` give the context the model runs with; one request at
  a time unless IT raised `OLLAMA_NUM_PARALLEL`, which no endpoint reports.
- A LiteLLM gateway: `/model/info` gives `max_input_tokens` of each model it routes.
- Anything else OpenAI-compatible: only its models; the context is unknown and it is
  treated as running one request at a time.

Every question has a short timeout and a failure of any but `/v1/models` only leaves
that fact unknown: discovery never makes a working node unusable.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from app.core import errors
from app.core.llm.openai_client import OpenAIClient

log = logging.getLogger(__name__)

LLAMA_CPP = "llama.cpp"
LLAMA_CPP_PYTHON = "llama-cpp-python"
VLLM = "vLLM"
OLLAMA = "Ollama"
LITELLM = "LiteLLM"
OPENAI_COMPATIBLE = "OpenAI-compatible"

DISCOVERY_TIMEOUT_S = 5.0
LOAD_TIMEOUT_S = 2.0  # a node that can't say how busy it is this fast is not answering
BATCHING_SLOTS = 8  # requests sent at once to an engine that batches them as they come
GATEWAY_SLOTS = 4  # a gateway spreads requests over nodes it doesn't describe
OLLAMA_DEFAULT_CONTEXT = 4096  # what Ollama runs a model with unless told otherwise

_METRIC = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a node serves and how much it takes at once."""

    engine: str
    models: tuple[str, ...]
    context_tokens: int | None  # the most one request may use, prompt and answer; None: unknown
    slots: int  # requests it runs at once
    load_from: str = ""  # "metrics", "slots", "vllm-metrics" or "" (not reported)


@dataclass(frozen=True, slots=True)
class NodeLoad:
    running: int
    waiting: int


async def discover(client: OpenAIClient, model: str = "") -> NodeInfo:
    """Ask the node what it serves; raises the typed error when `/v1/models` fails (the
    node is down, refuses the token, or is no OpenAI-compatible server)."""
    entries = await client.model_list(timeout=DISCOVERY_TIMEOUT_S)
    models = tuple(str(m["id"]) for m in entries)
    entry = next((m for m in entries if m["id"] == model), entries[0] if entries else {})
    owner = str(entry.get("owned_by", "")).lower()
    if owner == "llamacpp" or isinstance(entry.get("meta"), dict):
        return await _llama_cpp(client, models, entry)
    if owner == "vllm" or _positive(entry.get("max_model_len")):
        return NodeInfo(VLLM, models, _positive(entry.get("max_model_len")), BATCHING_SLOTS,
                        "vllm-metrics")
    if owner == "me":  # llama-cpp-python's own server: one request at a time
        return NodeInfo(LLAMA_CPP_PYTHON, models, None, 1)
    ollama = await _ollama(client, models, str(entry.get("id", "")))
    if ollama is not None:
        return ollama
    litellm = await _litellm(client, models, str(entry.get("id", "")))
    if litellm is not None:
        return litellm
    return NodeInfo(OPENAI_COMPATIBLE, models, None, 1)


async def read_load(client: OpenAIClient, info: NodeInfo) -> NodeLoad | None:
    """How busy the node is now, where its engine says; None where it doesn't. Raises the
    typed error when the node doesn't answer within `LOAD_TIMEOUT_S`."""
    if info.load_from in ("metrics", "vllm-metrics"):
        text = await _text(client, "/metrics", LOAD_TIMEOUT_S)
        if text is None:
            return None
        values = _metrics(text)
        if info.load_from == "metrics":
            running, waiting = "llamacpp:requests_processing", "llamacpp:requests_deferred"
        else:
            running, waiting = "vllm:num_requests_running", "vllm:num_requests_waiting"
        if running not in values:
            return None
        return NodeLoad(int(values[running]), int(values.get(waiting, 0)))
    if info.load_from == "slots":
        slots = await _json(client, "GET", "/slots", LOAD_TIMEOUT_S)
        if not isinstance(slots, list):
            return None
        processing = sum(1 for s in slots if isinstance(s, dict) and s.get("is_processing"))
        return NodeLoad(processing, 0)
    return None


async def _llama_cpp(client: OpenAIClient, models: tuple[str, ...],
                     entry: dict[str, Any]) -> NodeInfo:
    props = await _json(client, "GET", "/props", DISCOVERY_TIMEOUT_S)
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    context = _positive((meta or {}).get("n_ctx"))
    slots, load_from = 1, ""
    if isinstance(props, dict):
        settings = props.get("default_generation_settings")
        if isinstance(settings, dict):
            context = _positive(settings.get("n_ctx")) or context
        slots = _positive(props.get("total_slots")) or 1
        load_from = ("metrics" if props.get("endpoint_metrics") else
                     "slots" if props.get("endpoint_slots") else "")
    return NodeInfo(LLAMA_CPP, models, context, slots, load_from)


async def _ollama(client: OpenAIClient, models: tuple[str, ...],
                  model: str) -> NodeInfo | None:
    version = await _json(client, "GET", "/api/version", DISCOVERY_TIMEOUT_S)
    if not isinstance(version, dict) or "version" not in version:
        return None
    context: int | None = None
    running = await _json(client, "GET", "/api/ps", DISCOVERY_TIMEOUT_S)
    for loaded in (running or {}).get("models", []) if isinstance(running, dict) else []:
        if isinstance(loaded, dict) and model in (loaded.get("name"), loaded.get("model")):
            context = _positive(loaded.get("context_length"))
    if context is None:
        shown = await _json(client, "POST", "/api/show", DISCOVERY_TIMEOUT_S,
                            json={"model": model})
        if isinstance(shown, dict):
            # The context it runs with (`num_ctx`), else Ollama's own default: not the
            # model's trained length, which Ollama does not use unless told to.
            found = re.search(r"^num_ctx\s+(\d+)", str(shown.get("parameters", "")), re.M)
            context = int(found.group(1)) if found else OLLAMA_DEFAULT_CONTEXT
    return NodeInfo(OLLAMA, models, context, 1)



async def _litellm(client: OpenAIClient, models: tuple[str, ...],
                   model: str) -> NodeInfo | None:
    described = await _json(client, "GET", "/model/info", DISCOVERY_TIMEOUT_S)
    if not isinstance(described, dict) or not isinstance(described.get("data"), list):
        return None
    context: int | None = None
    for entry in described["data"]:
        if isinstance(entry, dict) and entry.get("model_name") == model:
            info = entry.get("model_info") if isinstance(entry.get("model_info"), dict) else {}
            context = _positive((info or {}).get("max_input_tokens")) \
                or _positive((info or {}).get("max_tokens")) or context
    return NodeInfo(LITELLM, models, context, GATEWAY_SLOTS)


async def _json(client: OpenAIClient, method: str, path: str, timeout: float,
                **kw: Any) -> Any:
    """The JSON a root endpoint answers, or None where it has none (404, not JSON).
    A node that doesn't answer in time raises, as it would for a chat."""
    response = await client.request(method, path, at_root=True, timeout=timeout, **kw)
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


async def _text(client: OpenAIClient, path: str, timeout: float) -> str | None:
    response = await client.request("GET", path, at_root=True, timeout=timeout)
    return response.text if response.status_code == 200 else None


def _metrics(text: str) -> dict[str, float]:
    """Prometheus text: each metric's value, summed over its labels."""
    values: dict[str, float] = {}
    for name, _labels, value in _METRIC.findall(text):
        try:
            values[name] = values.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return values


def _positive(value: object) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        return int(value)
    return None


def is_down(error: BaseException) -> bool:
    """Whether a failure means the node itself can't take requests now."""
    return isinstance(error, errors.NodeUnreachable | errors.StreamInterrupted)
