"""A user's Switchboard: settings, token, chat history and the active backend, opened
from the app's home. The tray app and the CLI both work through one of these."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from app.core import paths, secrets
from app.core.chat import ChatEvent, ChatService
from app.core.history import History, Message
from app.core.llm.backend import Backend, Health
from app.core.llm.office_node import OfficeNode
from app.core.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Workspace:
    settings: Settings
    history: History
    problems: list[str] = field(default_factory=list)  # found while loading, for the user
    _backend: Backend | None = field(default=None, init=False)

    @classmethod
    def open(cls) -> Workspace:
        """Open the home named by `paths` (and `SWITCHBOARD_HOME`). Blocks on disk."""
        settings, problems = Settings.load()
        history = History(paths.history_db())
        if history.recovered:
            problems.append(f"{history.recovered} answer(s) cut off when Switchboard last "
                            "closed were kept and marked as interrupted.")
        for problem in problems:
            log.warning("%s", problem)
        return cls(settings, history, problems)

    @property
    def chats(self) -> ChatService:
        return ChatService(self.history)

    def backend(self) -> Backend:
        """The office node as configured (it says NotConfigured when used, if it isn't)."""
        if self._backend is None:
            self._backend = OfficeNode(self.settings, secrets.get_secret(secrets.NODE_TOKEN))
        return self._backend

    def backend_label(self) -> str:
        """ "Office node · host:port · model", from settings alone (no keyring, no I/O)."""
        if not self.settings.node_url:
            return "Office node (not set up)"
        host = urlsplit(self.settings.node_url).netloc
        model = self.settings.model or (self._backend.model if isinstance(
            self._backend, OfficeNode) else "")
        return " · ".join(part for part in ("Office node", host, model) if part)

    async def health(self) -> Health:
        return await self.backend().health()

    async def send(self, chat_id: int, prompt: str,
                   emit: Callable[[ChatEvent], None]) -> Message:
        return await self.chats.send(chat_id, prompt, self.backend(), emit)

    async def apply_settings(self, settings: Settings, token: str | None) -> None:
        """Save settings (atomically) and the token (keyring); `None` leaves the token."""
        if token is not None:
            if token:
                await asyncio.to_thread(secrets.set_secret, secrets.NODE_TOKEN, token)
            else:
                await asyncio.to_thread(secrets.delete_secret, secrets.NODE_TOKEN)
        await asyncio.to_thread(settings.save)
        self.settings = settings
        await self._drop_backend()

    async def _drop_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.aclose()

    async def close(self) -> None:
        await self._drop_backend()
        self.history.close()


async def test_connection(settings: Settings, token: str | None) -> Health:
    """Health of an office node as the Settings dialog has it, before anything is saved."""
    node = OfficeNode(settings, token)
    try:
        return await node.health()
    finally:
        await node.aclose()
