"""The workspace picks the tier, keeps answers going while settings change, and copes
with a key store that can't be read."""

from __future__ import annotations

import asyncio

import keyring.errors
import pytest

from app.core import errors, secrets
from app.core.chat import AnswerFinished, ChatEvent, TextAppended
from app.core.llm.local_gpus import LocalGPUs
from app.core.llm.office_node import OfficeNode
from app.core.settings import Settings
from app.core.workspace import Workspace
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.memory_keyring import MemoryKeyring


def open_workspace(**settings: object) -> Workspace:
    Settings().changed(**settings).save()
    return Workspace.open()


def test_saving_settings_mid_answer_lets_the_answer_finish(fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=["word "] * 40, delay_s=0.02)
    workspace = open_workspace(node_urls=[fault_server.base_url])
    events: list[ChatEvent] = []

    async def main() -> None:
        chat = workspace.history.create_chat()
        task = asyncio.create_task(workspace.send(chat.id, "go", events.append))
        while sum(isinstance(e, TextAppended) for e in events) < 5:
            await asyncio.sleep(0.01)
        await workspace.apply_settings(workspace.settings.changed(temperature=0.2), None)
        await task
        await workspace.close()

    asyncio.run(main())
    finished = events[-1]
    assert isinstance(finished, AnswerFinished)
    assert finished.message.status == "complete" and finished.message.content == "word " * 40


def test_the_tier_follows_the_setting(tiny_model_path: object) -> None:
    async def kinds() -> list[type]:
        workspace = open_workspace(node_urls=["http://127.0.0.1:9/v1"])
        first = [type(p.backend) for p in (await workspace.backend()).places]
        await workspace.apply_settings(
            workspace.settings.changed(backend="local GPUs", model_path=str(tiny_model_path)),
            None)
        second = [type(p.backend) for p in (await workspace.backend()).places]
        label = workspace.backend_label()
        await workspace.close()
        assert label == "Local GPUs · " + str(tiny_model_path).rsplit("/", 1)[1]
        return [first, second]

    assert asyncio.run(kinds()) == [[OfficeNode], [LocalGPUs]]


def test_a_locked_key_store_is_reported_then_recovered(fault_server: FaultServer,
                                                       memory_keyring: MemoryKeyring,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    secrets.set_secret(secrets.NODE_TOKEN, "tok-1")
    workspace = open_workspace(node_urls=[fault_server.base_url])

    def locked(*_args: object) -> None:
        raise keyring.errors.KeyringLocked("locked")

    async def main() -> None:
        with monkeypatch.context() as m:
            m.setattr(memory_keyring, "get_password", locked)
            health = await workspace.health()
            assert isinstance(health.error, errors.KeyStoreUnavailable)
        health = await workspace.health()  # unlocked: tried again, with the token
        assert health.ok
        await workspace.close()

    asyncio.run(main())
    assert fault_server.requests[-1].headers["authorization"] == "Bearer tok-1"
