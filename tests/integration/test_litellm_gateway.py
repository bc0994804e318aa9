"""The app through a real LiteLLM proxy in front of a real llama.cpp `llama-server`, as
IT teams deploy it: discovery reads the context IT gave the model, a chat and a summary
run through the gateway, a wrong token is told as one, and a gateway restarted
mid-answer keeps the partial answer, which continues once it is back. Skipped, with the
reason, where `litellm[proxy]` could not be installed (packaging/dev-setup.sh)."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator

import httpx
import pytest

from app.core import secrets
from app.core.chat import ChatEvent, TextAppended
from app.core.history import Message
from app.core.llm.node_info import LITELLM, NodeInfo, discover
from app.core.llm.openai_client import OpenAIClient
from app.core.settings import Settings
from app.core.workspace import Workspace
from tests.fixtures import litellm_proxy
from tests.fixtures.documents import pdf_with_pages
from tests.fixtures.litellm_proxy import LiteLLMProxy
from tests.fixtures.llama_cpp_server import LlamaCppServer
from tests.fixtures.records import recorded_calls

pytestmark = pytest.mark.skipif(bool(litellm_proxy.available()),
                                reason=litellm_proxy.available() or "installed")
SLOT_TOKENS = 1024  # 4,096 over four slots, as IT told the gateway in `model_info`


@pytest.fixture(scope="module")
def node(tiny_model_path: pathlib.Path) -> Iterator[LlamaCppServer]:
    with LlamaCppServer(tiny_model_path, parallel=4, ctx=4 * SLOT_TOKENS) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(node: LlamaCppServer) -> Iterator[LiteLLMProxy]:
    with LiteLLMProxy(node.base_url, upstream_model=node.model, upstream_key=node.api_key,
                      max_input_tokens=SLOT_TOKENS) as proxy:
        yield proxy


def workspace_for(gateway: LiteLLMProxy, token: str, **settings: object) -> Workspace:
    secrets.set_secret(secrets.NODE_TOKEN, token)
    Settings().changed(node_urls=[gateway.base_url], **settings).save()
    return Workspace.open()


def test_discovery_sees_the_gateway_and_the_context_it_was_given(
        gateway: LiteLLMProxy) -> None:
    async def main() -> NodeInfo:
        client = OpenAIClient(gateway.base_url, token=gateway.master_key)
        try:
            return await discover(client)
        finally:
            await client.aclose()

    info = asyncio.run(main())
    assert info.engine == LITELLM
    assert info.models == (gateway.model,)
    assert info.context_tokens == SLOT_TOKENS


def test_a_chat_runs_through_the_gateway(gateway: LiteLLMProxy) -> None:
    workspace = workspace_for(gateway, gateway.master_key, max_tokens=24)
    events: list[ChatEvent] = []

    async def main() -> Message:
        chat = workspace.history.create_chat()
        try:
            return await workspace.send(chat.id, "Say hello", events.append)
        finally:
            await workspace.close()

    answer = asyncio.run(main())
    assert answer.status == "complete", answer.error
    assert answer.content and any(isinstance(e, TextAppended) for e in events)
    assert answer.ran_on == f"127.0.0.1:{gateway.port}" and answer.model == gateway.model
    [call] = recorded_calls()
    assert (call.node, call.outcome, call.workflow) == (f"127.0.0.1:{gateway.port}", "ok",
                                                        "chat")


def test_a_summary_runs_through_the_gateway(gateway: LiteLLMProxy,
                                            tmp_path: pathlib.Path) -> None:
    workspace = workspace_for(gateway, gateway.master_key, max_tokens=48)
    pdf = pdf_with_pages(tmp_path, pages=6, filler_lines=3)

    async def main() -> Message:
        chat = workspace.history.create_chat()
        try:
            return await workspace.summarize_document(chat.id, pdf, lambda e: None)
        finally:
            await workspace.close()

    answer = asyncio.run(main())
    assert answer.status == "complete", answer.error
    assert answer.kind == "summary" and answer.content
    recorded = recorded_calls()
    assert {c.purpose for c in recorded} == {"summary part", "combining pass"}
    for call in recorded:  # every part sized to the context the gateway reported
        assert call.outcome == "ok" and call.tokens <= SLOT_TOKENS


def test_a_wrong_token_is_told_as_a_refused_token_and_the_prompt_is_kept(
        gateway: LiteLLMProxy) -> None:
    workspace = workspace_for(gateway, "sk-not-the-gateways-key")

    async def main() -> tuple[Message, list[Message]]:
        chat = workspace.history.create_chat()
        try:
            answer = await workspace.send(chat.id, "Draft a memo", lambda e: None)
            return answer, workspace.history.messages(chat.id)
        finally:
            await workspace.close()

    answer, kept = asyncio.run(main())
    assert answer.status == "error"
    assert "refused your access token" in answer.error
    assert [m.content for m in kept if m.role == "user"] == ["Draft a memo"]


def test_a_gateway_restarted_mid_answer_keeps_the_partial_and_continues(
        slow_model_path: pathlib.Path) -> None:
    with LlamaCppServer(slow_model_path, parallel=1, ctx=2048) as slow, \
            LiteLLMProxy(slow.base_url, upstream_model=slow.model,
                         upstream_key=slow.api_key) as proxy:
        workspace = workspace_for(proxy, proxy.master_key, max_tokens=800)
        first: list[ChatEvent] = []

        async def main() -> tuple[Message, Message, list[Message]]:
            chat = workspace.history.create_chat()
            task = asyncio.create_task(workspace.send(chat.id, "Write a long answer",
                                                      first.append))
            while sum(isinstance(e, TextAppended) for e in first) < 3:
                assert not task.done(), "the answer ended before the gateway was killed"
                await asyncio.sleep(0.01)
            await asyncio.to_thread(proxy.kill)
            cut = await task
            await asyncio.to_thread(proxy.start)  # the same port, as a restarted service
            continued = await workspace.continue_answer(cut.id, lambda e: None)
            kept = workspace.history.messages(chat.id)
            await workspace.close()
            return cut, continued, kept

        cut, continued, kept = asyncio.run(main())
    assert cut.status == "interrupted" and cut.content  # what arrived is kept
    assert "broke while it was answering" in cut.error
    assert continued.status == "complete", continued.error
    assert continued.content.startswith(cut.content)
    assert len(continued.content) > len(cut.content)
    assert [m.content for m in kept if m.role == "assistant"] == [continued.content]


def test_the_gateway_fixture_answers_the_master_key_only(gateway: LiteLLMProxy) -> None:
    # What the wrong-token test relies on: LiteLLM's own answer to a token it doesn't know.
    wrong = httpx.get(f"{gateway.base_url}/models",
                      headers={"Authorization": "Bearer sk-not-the-gateways-key"})
    right = httpx.get(f"{gateway.base_url}/models", headers=gateway.auth_headers)
    assert right.status_code == 200 and wrong.status_code in (400, 401)
