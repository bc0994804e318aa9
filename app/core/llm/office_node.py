"""The office node: a shared OpenAI-compatible inference server on the office LAN
(vLLM, llama.cpp's llama-server, Ollama or a LiteLLM gateway)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from app.core import errors
from app.core.llm.backend import Health
from app.core.llm.openai_client import ChatMessages, OpenAIClient, StreamEvent, Timeouts
from app.core.settings import Settings


class OfficeNode:
    name = "Office node"

    def __init__(self, settings: Settings, token: str | None, *, url: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """A node at `url` (default: the settings' first office node)."""
        self.settings = settings
        self.url = settings.node_url if url is None else url
        self.client = OpenAIClient(
            self.url,
            token=token,
            timeouts=Timeouts(connect=settings.connect_timeout_s,
                              first_byte=settings.first_byte_timeout_s,
                              first_token=settings.first_token_timeout_s,
                              stall=settings.stall_timeout_s),
            ca_bundle=settings.ca_bundle,
            tier="office node",
            transport=transport,
        )
        self._model = settings.model

    @property
    def model(self) -> str:
        return self._model

    def choose_model(self, models: tuple[str, ...] | list[str]) -> None:
        """None chosen in Settings: the node's first, as a chat would use."""
        if not self._model and models:
            self._model = models[0]

    def describe(self) -> str:
        parts = (self.name, self.client.base_url, self._model)
        return " · ".join(part for part in parts if part)

    def _require_address(self) -> None:
        # Checked on use, not on construction, so that a prompt sent before the node is
        # set up is still saved in the chat, with this error beside it.
        if not self.url:
            raise errors.NotConfigured()

    async def list_models(self) -> list[str]:
        self._require_address()
        return await self.client.list_models()

    async def health(self) -> Health:
        if not self.url:
            return Health(ok=False, error=errors.NotConfigured())
        started = time.monotonic()
        try:
            models = await self.client.list_models()
        except errors.SwitchboardError as e:
            return Health(ok=False, error=e)
        latency = (time.monotonic() - started) * 1000
        self.choose_model(models)
        if self._model and self._model not in models:
            return Health(ok=False, latency_ms=latency, models=models,
                          error=errors.ModelNotFound(f"{self._model!r} is not among "
                                                     f"{', '.join(models) or 'none'}"))
        return Health(ok=True, latency_ms=latency, models=models)

    async def _resolve_model(self) -> str:
        """The configured model, or the node's first one when none is set."""
        if not self._model:
            models = await self.client.list_models()
            if not models:
                raise errors.ModelNotFound("the office node offers no model")
            self._model = models[0]
        return self._model

    async def stream_chat(self, messages: ChatMessages, *, max_tokens: int | None = None,
                          temperature: float | None = None,
                          response_format: Mapping[str, Any] | None = None
                          ) -> AsyncGenerator[StreamEvent, None]:
        self._require_address()
        model = await self._resolve_model()
        async for event in self.client.stream_chat(
            messages, model=model,
            max_tokens=max_tokens if max_tokens is not None else self.settings.max_tokens,
            temperature=temperature if temperature is not None else self.settings.temperature,
            extra_body={"response_format": response_format} if response_format else None,
        ):
            yield event

    async def aclose(self) -> None:
        await self.client.aclose()
