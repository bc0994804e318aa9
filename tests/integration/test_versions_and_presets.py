"""Regenerate and edit-and-resend keep the earlier versions; a chat's preset instructions
reach the model before the conversation. Against a real llama.cpp server."""

from __future__ import annotations

import asyncio

from app.core import secrets
from app.core.chat import AnswerFinished, ChatEvent, MessageRemoved
from app.core.settings import Settings
from app.core.workspace import Workspace
from tests.fixtures.llama_server import LlamaServer


def open_workspace(node: LlamaServer) -> Workspace:
    secrets.set_secret(secrets.NODE_TOKEN, node.api_key)
    Settings().changed(node_urls=[node.base_url], max_tokens=16).save()
    return Workspace.open()


def test_regenerate_and_edit_keep_every_version(office_node: LlamaServer) -> None:
    workspace = open_workspace(office_node)
    events: list[ChatEvent] = []

    async def main() -> None:
        chat = workspace.create_chat()
        first = await workspace.send(chat.id, "Draft a note", events.append)
        assert first.status == "complete"
        [prompt, _] = workspace.messages(chat.id)

        again = await workspace.resend(first.id, events.append)  # Regenerate the answer
        shown = workspace.messages(chat.id)
        assert [m.role for m in shown] == ["user", "assistant"]
        assert shown[0].content == "Draft a note" and shown[1].id == again.id
        assert [m.id for m in workspace.versions(again.id)] == [first.id, again.id]
        removed = [e.message_id for e in events if isinstance(e, MessageRemoved)]
        assert removed == [prompt.id, first.id]

        edited = await workspace.resend(shown[0].id, events.append,
                                        prompt="Draft a short note")  # Edit and resend
        shown = workspace.messages(chat.id)
        assert [m.content for m in shown if m.role == "user"] == ["Draft a short note"]
        assert [m.content for m in workspace.versions(shown[0].id)] == [
            "Draft a note", "Draft a note", "Draft a short note"]
        assert [m.id for m in workspace.versions(edited.id)] == [first.id, again.id,
                                                                 edited.id]
        # Earlier versions are not searched; the chat as it reads now is.
        assert [h.message_id for h in workspace.search("short")] == [shown[0].id]
        await workspace.close()

    asyncio.run(main())
    assert all(e.error is None for e in events if isinstance(e, AnswerFinished))


def test_a_preset_is_the_first_thing_the_model_reads(office_node: LlamaServer) -> None:
    workspace = open_workspace(office_node)

    async def main() -> None:
        chat = workspace.create_chat()
        preset = workspace.save_preset("Formal", "Answer formally, in British English.")
        assert workspace.set_chat_preset(chat.id, preset) is not None
        await workspace.send(chat.id, "hi", lambda _: None)
        context = workspace.chat_service.context(chat.id)
        assert context[0] == {"role": "system",
                              "content": "Answer formally, in British English."}
        assert context[1] == {"role": "user", "content": "hi"}
        # Changing the preset later leaves this chat's copy as it was chosen.
        workspace.save_preset("Formal", "Be terse.")
        assert workspace.chat(chat.id).system_prompt == "Answer formally, in British English."
        workspace.set_chat_preset(chat.id, None)
        assert workspace.chat_service.context(chat.id)[0]["role"] == "user"
        await workspace.close()

    asyncio.run(main())
