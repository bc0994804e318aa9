"""Checks of the test fixtures themselves: the tiny GGUF model and the real server.

These also pin down how llama_cpp.server behaves on the wire (authentication,
SSE framing, usage in streams, interrupted streams), which the app's client
code has to cope with.
"""

from __future__ import annotations

import json
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import gguf
import httpx
import pytest

from tests.fixtures.llama_server import LlamaServer
from tests.fixtures.tiny_gguf import CHAT_TEMPLATE, IM_END, MODEL_NAME

SSE_DATA_PREFIX = "data: "
SSE_DONE = "[DONE]"


def _chat_body(server: LlamaServer, *, max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": server.model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        **extra,
    }


def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    """Yield the payload of each ``data:`` line (ping comments and blanks skipped)."""
    for line in lines:
        if line.startswith(SSE_DATA_PREFIX):
            yield line.removeprefix(SSE_DATA_PREFIX)


def _stream_chat(server: LlamaServer, body: dict[str, Any]) -> list[str]:
    """POST a streaming chat completion and return all ``data:`` payloads."""
    with (
        httpx.Client(timeout=30.0) as client,
        client.stream(
            "POST",
            f"{server.base_url}/chat/completions",
            headers=server.auth_headers,
            json={**body, "stream": True},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(_sse_data(response.iter_lines()))


def _chunks(payloads: list[str]) -> list[dict[str, Any]]:
    return [json.loads(payload) for payload in payloads if payload != SSE_DONE]


def _content_deltas(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        chunk["choices"][0]["delta"]["content"]
        for chunk in chunks
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content")
    ]


def test_tiny_model_is_a_small_qwen2_gguf_with_chatml_template(
    tiny_model_path: pathlib.Path,
) -> None:
    assert tiny_model_path.stat().st_size < 1_000_000

    reader = gguf.GGUFReader(tiny_model_path)

    def field(key: str) -> Any:
        found = reader.get_field(key)
        assert found is not None, key
        return found.contents()

    assert field("general.architecture") == "qwen2"
    assert field("general.name") == MODEL_NAME
    assert field("tokenizer.ggml.model") == "gpt2"
    assert field("tokenizer.chat_template") == CHAT_TEMPLATE
    tokens = field("tokenizer.ggml.tokens")
    assert tokens[field("tokenizer.ggml.eos_token_id")] == IM_END
    tensor_names = {tensor.name for tensor in reader.tensors}
    assert {"token_embd.weight", "blk.1.attn_q.bias", "output.weight"} <= tensor_names


def test_models_endpoint_lists_the_alias(office_node: LlamaServer) -> None:
    response = httpx.get(f"{office_node.base_url}/models", headers=office_node.auth_headers)

    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == [MODEL_NAME]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-key"}],
    ids=["no-token", "wrong-token"],
)
def test_requests_without_the_api_key_are_rejected(
    office_node: LlamaServer, headers: dict[str, str]
) -> None:
    models = httpx.get(f"{office_node.base_url}/models", headers=headers)
    chat = httpx.post(
        f"{office_node.base_url}/chat/completions",
        headers=headers,
        json=_chat_body(office_node, max_tokens=4),
    )

    assert models.status_code == 401
    assert chat.status_code == 401
    assert chat.json() == {"detail": "Invalid API key"}


def test_streaming_chat_runs_to_max_tokens_and_ends_with_done(office_node: LlamaServer) -> None:
    max_tokens = 64

    payloads = _stream_chat(office_node, _chat_body(office_node, max_tokens=max_tokens))

    assert payloads[-1] == SSE_DONE
    assert payloads.count(SSE_DONE) == 1
    chunks = _chunks(payloads)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert {chunk["model"] for chunk in chunks} == {MODEL_NAME}
    # The tiny model can emit neither EOS nor partial UTF-8, so every token
    # is one visible delta and generation always stops on the length limit.
    assert len(_content_deltas(chunks)) == max_tokens
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_usage_is_not_streamed_even_when_requested(office_node: LlamaServer) -> None:
    # llama_cpp.server ignores OpenAI's stream_options (unknown request fields
    # are dropped), so a streaming client never learns token counts from it;
    # only the non-streaming response carries usage.
    streamed = _stream_chat(
        office_node,
        _chat_body(office_node, max_tokens=8, stream_options={"include_usage": True}),
    )
    not_streamed = httpx.post(
        f"{office_node.base_url}/chat/completions",
        headers=office_node.auth_headers,
        json=_chat_body(office_node, max_tokens=8),
        timeout=30.0,
    )

    assert streamed[-1] == SSE_DONE
    assert all("usage" not in chunk for chunk in _chunks(streamed))
    assert not_streamed.status_code == 200
    usage = not_streamed.json()["usage"]
    assert usage["completion_tokens"] == 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + 8


def test_a_second_request_waits_instead_of_cutting_a_running_stream(
    office_node: LlamaServer,
) -> None:
    # llama_cpp.server's default (interrupt_requests on) ends a running stream
    # when any other request needs the model lock, even GET /v1/models. An office
    # node (llama-server, vLLM) queues instead, so the fixture turns that off.
    max_tokens = 300
    payloads: list[str] = []
    other: list[httpx.Response] = []
    with (
        httpx.Client(timeout=30.0) as streaming_client,
        streaming_client.stream(
            "POST",
            f"{office_node.base_url}/chat/completions",
            headers=office_node.auth_headers,
            json=_chat_body(office_node, max_tokens=max_tokens, stream=True),
        ) as response,
    ):
        data = _sse_data(response.iter_lines())
        payloads += [next(data) for _ in range(3)]  # generation is under way
        waiting = threading.Thread(target=lambda: other.append(httpx.get(
            f"{office_node.base_url}/models", headers=office_node.auth_headers, timeout=30)))
        waiting.start()
        payloads += data
    waiting.join(30)

    assert other and other[0].status_code == 200
    assert payloads[-1] == SSE_DONE
    chunks = _chunks(payloads)
    assert len(_content_deltas(chunks)) == max_tokens
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
