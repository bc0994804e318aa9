"""The one Protocol every execution backend implements: stream a chat, report health,
describe itself. Adding a backend is adding one module that satisfies it."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Protocol

from app.core.errors import SwitchboardError
from app.core.llm.openai_client import ChatMessages, StreamEvent


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    latency_ms: float | None = None
    models: list[str] = field(default_factory=list)
    error: SwitchboardError | None = None

    def summary(self, name: str) -> str:
        """One status line for the tray menu and `doctor`."""
        if self.ok:
            return f"{name}: connected ({self.latency_ms:.0f} ms)"
        return f"{name}: {self.error.title if self.error else 'unavailable'}"


class Backend(Protocol):
    name: str  # the tier in the user's words: "Office node", "Local GPUs"

    def describe(self) -> str:
        """Where it runs and which model, for the status bar."""
        ...

    async def health(self) -> Health: ...

    def stream_chat(self, messages: ChatMessages, *, max_tokens: int | None = None,
                    temperature: float | None = None) -> AsyncGenerator[StreamEvent, None]: ...

    async def aclose(self) -> None: ...
