"""What a node takes, read from the engines that can't run here (vLLM needs its GPUs,
Ollama is no Python package, a LiteLLM gateway's model table is its own): their
documented replies, served by httpx's MockTransport. llama.cpp's `llama-server` is
tested for real in tests/integration/test_node_pool.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.core import errors
from app.core.llm.node_info import (
    BATCHING_SLOTS,
    GATEWAY_SLOTS,
    LITELLM,
    LLAMA_CPP_PYTHON,
    OLLAMA,
    OPENAI_COMPATIBLE,
    VLLM,
    NodeInfo,
    NodeLoad,
    discover,
    read_load,
)
from app.core.llm.openai_client import OpenAIClient

Routes = dict[tuple[str, str], Any]


def node(routes: Routes) -> tuple[OpenAIClient, list[str]]:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.method} {request.url.path}")
        reply = routes.get((request.method, request.url.path))
        if reply is None:
            return httpx.Response(404, json={"error": {"message": "not found"}})
        if isinstance(reply, str):
            return httpx.Response(200, text=reply)
        return httpx.Response(200, json=reply)

    client = OpenAIClient("http://node:8000/v1", token="t",
                          transport=httpx.MockTransport(answer))
    return client, asked


def run[T](work: Callable[[OpenAIClient], Any], routes: Routes) -> tuple[T, list[str]]:
    client, asked = node(routes)

    async def main() -> T:
        try:
            result: T = await work(client)
            return result
        finally:
            await client.aclose()

    return asyncio.run(main()), asked


def models(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"object": "list", "data": list(entries)}


VLLM_METRICS = """# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="Qwen/Qwen2.5-32B-Instruct"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="Qwen/Qwen2.5-32B-Instruct"} 2.0
"""


def test_vllm_gives_its_context_in_the_model_list_and_its_load_in_metrics() -> None:
    routes: Routes = {
        ("GET", "/v1/models"): models({"id": "Qwen/Qwen2.5-32B-Instruct", "object": "model",
                                       "owned_by": "vllm", "max_model_len": 32768}),
        ("GET", "/metrics"): VLLM_METRICS}
    info, _ = run(lambda c: discover(c), routes)
    assert info == NodeInfo(VLLM, ("Qwen/Qwen2.5-32B-Instruct",), 32768, BATCHING_SLOTS,
                            "vllm-metrics")
    load, asked = run(lambda c: read_load(c, info), routes)
    assert load == NodeLoad(running=3, waiting=2) and asked == ["GET /metrics"]


def test_ollama_runs_a_model_with_the_context_it_was_given() -> None:
    show = {"parameters": "num_ctx                        8192\nstop \"<|im_end|>\"",
            "model_info": {"qwen2.context_length": 32768}}
    routes: Routes = {
        ("GET", "/v1/models"): models({"id": "qwen2.5:32b", "object": "model",
                                       "owned_by": "library"}),
        ("GET", "/api/version"): {"version": "0.12.3"},
        ("GET", "/api/ps"): {"models": []},
        ("POST", "/api/show"): show}
    info, asked = run(lambda c: discover(c), routes)
    assert info == NodeInfo(OLLAMA, ("qwen2.5:32b",), 8192, 1)
    assert "POST /api/show" in asked
    # Loaded, it says the context it runs with: that wins.
    routes[("GET", "/api/ps")] = {"models": [{"name": "qwen2.5:32b", "model": "qwen2.5:32b",
                                              "context_length": 16384}]}
    loaded, asked = run(lambda c: discover(c), routes)
    assert loaded.context_tokens == 16384 and "POST /api/show" not in asked
    # Nothing set: Ollama's own default, not the model's trained length.
    routes[("GET", "/api/ps")] = {"models": []}
    routes[("POST", "/api/show")] = {"parameters": "", "model_info": {}}
    plain, _ = run(lambda c: discover(c), routes)
    assert plain.context_tokens == 4096


def test_a_litellm_gateway_gives_the_input_limit_of_the_model_it_routes() -> None:
    routes: Routes = {
        ("GET", "/v1/models"): models({"id": "office-qwen", "object": "model",
                                       "owned_by": "openai"}),
        ("GET", "/model/info"): {"data": [
            {"model_name": "other", "model_info": {"max_input_tokens": 1000}},
            {"model_name": "office-qwen", "model_info": {"max_input_tokens": 16384,
                                                         "max_tokens": 4096}}]}}
    info, _ = run(lambda c: discover(c, "office-qwen"), routes)
    assert info == NodeInfo(LITELLM, ("office-qwen",), 16384, GATEWAY_SLOTS)


def test_llama_cpp_pythons_server_runs_one_request_at_a_time() -> None:
    routes: Routes = {("GET", "/v1/models"): models({"id": "local", "object": "model",
                                                     "owned_by": "me", "permissions": []})}
    info, asked = run(lambda c: discover(c), routes)
    assert info == NodeInfo(LLAMA_CPP_PYTHON, ("local",), None, 1)
    assert asked == ["GET /v1/models"]


def test_anything_else_is_asked_only_for_its_models() -> None:
    routes: Routes = {("GET", "/v1/models"): models({"id": "m", "object": "model"})}
    info, _ = run(lambda c: discover(c), routes)
    assert info == NodeInfo(OPENAI_COMPATIBLE, ("m",), None, 1)
    assert run(lambda c: read_load(c, info), routes)[0] is None


def test_a_llama_server_without_metrics_is_read_from_its_slots() -> None:
    routes: Routes = {
        ("GET", "/v1/models"): models({"id": "qwen", "owned_by": "llamacpp",
                                       "meta": {"n_ctx": 8192}}),
        ("GET", "/props"): {"default_generation_settings": {"n_ctx": 8192},
                            "total_slots": 3, "endpoint_slots": True,
                            "endpoint_metrics": False},
        ("GET", "/slots"): [{"id": 0, "is_processing": True},
                            {"id": 1, "is_processing": False},
                            {"id": 2, "is_processing": True}]}
    info, _ = run(lambda c: discover(c), routes)
    assert (info.context_tokens, info.slots, info.load_from) == (8192, 3, "slots")
    assert run(lambda c: read_load(c, info), routes)[0] == NodeLoad(2, 0)


def test_a_node_that_refuses_the_token_is_not_usable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, content=json.dumps({"error": {"message": "bad key"}}))

    client = OpenAIClient("http://node:8000/v1", token="t",
                          transport=httpx.MockTransport(refuse))

    async def main() -> None:
        try:
            await discover(client)
        finally:
            await client.aclose()

    with pytest.raises(errors.AuthFailed):
        asyncio.run(main())
