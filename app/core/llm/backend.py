"""The one Protocol every execution backend implements: stream a chat, report health,
describe itself. Adding a backend is adding one module that satisfies it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.core.errors import SwitchboardError
from app.core.llm.openai_client import ChatMessages, StreamEvent


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """One place of the pool as last checked, for the status bar, the tray and `doctor`."""

    name: str  # "ai-node-1:8080", IT's name for it, or "Local GPUs"
    tier: str  # in words: "Office node", "Local GPUs"
    answering: bool
    busy: int  # requests running or waiting there
    slots: int  # requests it runs at once
    context_tokens: int | None  # the most one request may use; None: unknown
    engine: str = ""  # "llama.cpp", "vLLM", …
    error: str = ""  # why it isn't answering, in words


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    latency_ms: float | None = None
    models: list[str] = field(default_factory=list)
    error: SwitchboardError | None = None
    nodes: tuple[NodeHealth, ...] = ()  # each place of a pool

    def summary(self, name: str) -> str:
        """One status line for the tray menu and `doctor`."""
        if len(self.nodes) > 1:
            answering = sum(1 for n in self.nodes if n.answering)
            return f"{name}: {answering} of {len(self.nodes)} answering"
        if self.ok:
            latency = f" ({self.latency_ms:.0f} ms)" if self.latency_ms is not None else ""
            return f"{name}: connected{latency}"
        return f"{name}: {self.error.title if self.error else 'unavailable'}"


class Backend(Protocol):
    name: str  # the tier in the user's words: "Office node", "Local GPUs"

    def describe(self) -> str:
        """Where it runs and which model, for the status bar."""
        ...

    async def health(self) -> Health: ...

    def stream_chat(self, messages: ChatMessages, *, max_tokens: int | None = None,
                    temperature: float | None = None,
                    response_format: Mapping[str, Any] | None = None
                    ) -> AsyncGenerator[StreamEvent, None]:
        """Stream an answer; `response_format` (OpenAI's) constrains it, e.g. to a JSON
        schema, on servers that can."""
        ...

    async def aclose(self) -> None: ...
