"""Local GPUs: a GGUF model served by the embedded llama.cpp runtime, a supervised child
process on 127.0.0.1, split across this computer's GPUs (`runtime.gpu_split`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Mapping
from pathlib import Path
from typing import Any

from app.core import errors, paths
from app.core.llm.backend import Health
from app.core.llm.openai_client import ChatMessages, OpenAIClient, StreamEvent, Timeouts
from app.core.runtime.gguf_inspect import inspect_model
from app.core.runtime.gpu_split import SplitPlan, plan_split
from app.core.runtime.gpus import inventory
from app.core.runtime.supervisor import RuntimeStatus, Supervisor, serve_command
from app.core.settings import Settings

ALIAS = "local"
TIER = "local GPUs"
CRASH_CHECK_S = 1.0  # how long a broken stream waits to see whether the child died


def runtime_arguments(p: SplitPlan) -> list[str]:
    """The child's command-line flags for a plan."""
    args = ["--alias", ALIAS, "--n-ctx", str(p.n_ctx), "--n-gpu-layers", str(p.n_gpu_layers),
            "--main-gpu", str(p.main_gpu)]
    if p.tensor_split:
        args += ["--tensor-split", ",".join(f"{x:.4f}" for x in p.tensor_split)]
    if p.flash_attn:
        args.append("--flash-attn")
    return args


class LocalGPUs:
    name = "Local GPUs"

    def __init__(self, settings: Settings,
                 on_status: Callable[[RuntimeStatus], None] = lambda status: None) -> None:
        self.settings = settings
        self.on_status = on_status
        self.split: SplitPlan | None = None
        self.supervisor: Supervisor | None = None
        self._client: OpenAIClient | None = None
        self._preparing = threading.Lock()

    def describe(self) -> str:
        model = Path(self.settings.model_path).name if self.settings.model_path else "no model"
        return f"{self.name} · {model}"

    def _require_model(self) -> Path:
        if not self.settings.model_path:
            raise errors.ModelRejected("no model file is chosen yet", tier=TIER)
        return Path(self.settings.model_path)

    def prepare(self) -> Supervisor:
        """Inspect the model and plan the split once; blocks on disk (run in a thread).

        Locked: a health check and a first question can ask at the same moment, and two
        supervisors for one model would start two runtimes.
        """
        with self._preparing:
            return self._prepare_once()

    def _prepare_once(self) -> Supervisor:
        if self.supervisor is None:
            path = self._require_model()
            info = inspect_model(path)  # a bad file is refused here, before anything loads
            self.split = plan_split(info, inventory(), n_ctx=self.settings.local_ctx or None)
            self.supervisor = Supervisor(
                serve_command(path, runtime_arguments(self.split)),
                paths.log_dir() / "runtime.log",
                idle_unload_s=self.settings.idle_unload_min * 60,
                on_status=self.on_status,
            )
        return self.supervisor

    async def health(self) -> Health:
        try:
            supervisor = await asyncio.to_thread(self.prepare)
        except errors.SwitchboardError as e:
            return Health(ok=False, error=e)
        if supervisor.status.error is not None:
            return Health(ok=False, models=[ALIAS], error=supervisor.status.error)
        return Health(ok=True, latency_ms=0.0, models=[ALIAS])

    def _client_for(self, base_url: str, token: str) -> OpenAIClient:
        if self._client is None or self._client.base_url != base_url \
                or self._client.token != token:
            old, self._client = self._client, OpenAIClient(
                base_url, token=token, tier=TIER,
                # Prompt processing on a CPU or a partly offloaded model can take minutes.
                timeouts=Timeouts(connect=5, first_token=self.settings.first_token_timeout_s,
                                  stall=self.settings.stall_timeout_s))
            if old is not None:
                asyncio.get_running_loop().create_task(old.aclose())
        return self._client

    async def stream_chat(self, messages: ChatMessages, *, max_tokens: int | None = None,
                          temperature: float | None = None,
                          response_format: Mapping[str, Any] | None = None
                          ) -> AsyncGenerator[StreamEvent, None]:
        supervisor = await asyncio.to_thread(self.prepare)
        async with supervisor.in_use():
            base_url, token = await supervisor.ensure_ready()
            client = self._client_for(base_url, token)
            try:
                async for event in client.stream_chat(
                    messages, model=ALIAS,
                    max_tokens=max_tokens if max_tokens is not None else self.settings.max_tokens,
                    temperature=temperature if temperature is not None
                    else self.settings.temperature,
                    extra_body={"response_format": response_format} if response_format
                    else None,
                ):
                    yield event
            except errors.SwitchboardError as e:
                if await supervisor.exited(CRASH_CHECK_S):
                    raise errors.RuntimeCrashed(supervisor.last_log_lines(), partial=e.partial,
                                                tier=TIER) from None
                raise

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self.supervisor is not None:
            await self.supervisor.stop()
