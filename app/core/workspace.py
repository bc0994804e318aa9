"""A user's Switchboard: settings, token, chat history and the active backend, opened
from the app's home. The tray app and the CLI both work through one of these.

The settings it holds are always the ones in force: bounded by the machine policy when
they load and whenever they are saved (`app.core.policy.bound`), so neither the Settings
dialog nor a hand-edited settings.json gets around IT's limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from app.core import paths, secrets
from app.core.budget import Ledger
from app.core.chat import ChatEvent, ChatService, PlanOutcome
from app.core.cloud import CloudPlanner
from app.core.errors import SwitchboardError
from app.core.history import History, Message
from app.core.llm.backend import Backend, Health
from app.core.llm.local_gpus import LocalGPUs
from app.core.llm.office_node import OfficeNode
from app.core.llm.openai_client import ChatMessages, Delta, StreamEvent
from app.core.policy import Limit, Policy, PolicyFile, bound, read_policy
from app.core.router import decide
from app.core.runtime.supervisor import Status
from app.core.settings import Settings

log = logging.getLogger(__name__)


def planning_brief(prompt: str) -> list[dict[str, str]]:
    """What the cloud planner is sent: the request, and how to answer. Documents are
    never in it (they are referred to by id); the steps run on the local model."""
    return [
        {"role": "system", "content": (
            "You plan work for a smaller local model that will carry it out. Reply with a "
            "short numbered list of concrete steps, no more than eight, and nothing else. "
            "Do not do the work yourself.")},
        {"role": "user", "content": prompt},
    ]


@dataclass
class Workspace:
    settings: Settings
    history: History
    problems: list[str] = field(default_factory=list)  # found while loading, for the user
    policy: Policy = field(default_factory=Policy)
    # Where the policy came from and what was wrong with it (None: not read from a file).
    policy_source: PolicyFile | None = None
    # Told of the local runtime's loading, readiness and crashes (on the core's loop).
    on_runtime_status: Callable[[Status], None] = lambda status: None
    _backend: Backend | None = field(default=None, init=False)
    _streams: dict[int, int] = field(default_factory=dict, init=False)  # id(backend) → count
    _retired: list[Backend] = field(default_factory=list, init=False)
    _ledger: Ledger | None = field(default=None, init=False)

    @classmethod
    def open(cls) -> Workspace:
        """Open the home named by `paths` (and `SWITCHBOARD_HOME`). Blocks on disk."""
        settings, problems = Settings.load()
        source = read_policy()
        for note in source.notes:  # for IT, not the user: a typo must not alarm a department
            log.warning("policy file %s: %s", source.path, note)
        problems += source.problems
        history = History(paths.history_db())
        problems += history.problems  # a damaged file kept aside, a fresh one started
        if history.recovered:
            problems.append(f"{history.recovered} answer(s) cut off when Switchboard last "
                            "closed were kept and marked as interrupted.")
        for problem in problems:
            log.warning("%s", problem)
        return cls(settings, history, problems, source.policy, source)

    def __post_init__(self) -> None:
        self.settings = self._bounded(self.settings)

    def _bounded(self, settings: Settings) -> Settings:
        bounded = bound(settings, self.policy)
        for change in bounded.changes:
            log.info("policy: %s", change)
        return bounded.settings

    def limits(self) -> dict[str, Limit]:
        """How IT's policy bounds each setting (name → limit), for the Settings dialog."""
        return dict(bound(self.settings, self.policy).limits)

    def policy_problems(self) -> tuple[str, ...]:
        """Why the machine policy file is not in force, in words; empty when it is."""
        return self.policy_source.problems if self.policy_source else ()

    @property
    def chats(self) -> ChatService:
        return ChatService(self.history)

    async def backend(self) -> Backend:
        """The tier chats run on, as configured; built on first use.

        Nothing is kept when the key store can't be read (locked at login, say): the next
        call tries again rather than going on without the token.
        """
        if self._backend is None:
            if self.settings.backend == "local GPUs":
                self._backend = LocalGPUs(self.settings, on_status=self.on_runtime_status)
            else:
                token = await asyncio.to_thread(secrets.get_secret, secrets.NODE_TOKEN)
                self._backend = OfficeNode(self.settings, token)
        return self._backend

    def backend_label(self) -> str:
        """ "Office node · host:port · model", from what is in memory (no I/O)."""
        backend = self._backend  # read once: the core thread may replace it meanwhile
        if self.settings.backend == "local GPUs":
            name = Path(self.settings.model_path).name or "no model chosen"
            return f"Local GPUs · {name}"
        if not self.settings.node_url:
            return "Office node (not set up)"
        host = urlsplit(self.settings.node_url).netloc
        model = self.settings.model or (backend.model if isinstance(backend, OfficeNode) else "")
        return " · ".join(part for part in ("Office node", host, model) if part)

    async def health(self) -> Health:
        try:
            backend = await self.backend()
        except SwitchboardError as e:
            return Health(ok=False, error=e)
        return await backend.health()

    async def send(self, chat_id: int, prompt: str,
                   emit: Callable[[ChatEvent], None]) -> Message:
        try:
            backend: Backend = await self.backend()
        except SwitchboardError as e:
            backend = Unavailable(e)  # the question is still saved, with the error beside it
        key = id(backend)
        self._streams[key] = self._streams.get(key, 0) + 1
        try:
            return await self.chats.send(chat_id, prompt, backend, emit, self.plan)
        finally:
            self._streams[key] -= 1
            if not self._streams[key]:
                del self._streams[key]
                if backend in self._retired:  # settings changed while it answered
                    self._retired.remove(backend)
                    await backend.aclose()

    async def summarize_document(self, chat_id: int, path: Path,
                                 emit: Callable[[ChatEvent], None]) -> Message:
        """Summarise a file into the chat on the local tier; the cloud is never asked."""
        try:
            backend: Backend = await self.backend()
        except SwitchboardError as e:
            backend = Unavailable(e)
        return await self.chats.summarize_document(chat_id, path, backend, emit)

    async def ask_about_document(self, chat_id: int, document_id: int, question: str,
                                 emit: Callable[[ChatEvent], None]) -> Message:
        """Answer from a document's most relevant parts on the local tier; the cloud
        planner is never asked (document text never leaves the office)."""
        try:
            backend: Backend = await self.backend()
        except SwitchboardError as e:
            backend = Unavailable(e)
        return await self.chats.ask_about_document(chat_id, document_id, question, backend,
                                                   emit)

    async def set_mode(self, mode: str) -> None:
        """Change how requests are planned; the backend (and a loaded model) stays."""
        settings = self._bounded(self.settings.changed(mode=mode))
        await asyncio.to_thread(settings.save)
        self.settings = settings

    def ledger(self) -> Ledger:
        """The budget ledger, opened on first use (blocks on disk: core thread only)."""
        if self._ledger is None:
            self._ledger = Ledger()
        return self._ledger

    async def plan(self, prompt: str) -> PlanOutcome:
        """A plan from the cloud when the router says so and the budget allows; otherwise
        none, with the reason when the user asked for the cloud or it failed."""
        settings, policy = self.settings, self.policy
        if not policy.cloud_allowed:
            # The mode is bound to Local only, but "you chose Local only" would be wrong.
            log.info("route: local only, because IT has turned cloud planning off")
            return PlanOutcome()
        ready = settings.monthly_budget_usd > 0
        route = decide(prompt, mode=settings.mode, cloud_ready=ready,
                       cloud_reason="no monthly budget is set")
        if not route.plan_in_cloud:
            asked = settings.mode == "plan with cloud"
            return PlanOutcome(note=f"Planned locally: {route.reason}." if asked else None)
        planner = CloudPlanner(settings, policy, await asyncio.to_thread(self.ledger))
        parts: list[str] = []
        try:
            async for event in planner.plan(planning_brief(prompt)):
                if isinstance(event, Delta):
                    parts.append(event.text)
        except SwitchboardError as e:
            log.warning("planning falls back to local: %s", e.user_text())
            return PlanOutcome(note=f"Planned locally: {e.title} {e.hint}")
        return PlanOutcome(plan="".join(parts).strip() or None)

    async def stop_runtime(self) -> None:
        """Unload the local model now (frees the GPUs); it loads again when asked."""
        if isinstance(self._backend, LocalGPUs) and self._backend.supervisor is not None:
            await self._backend.supervisor.stop()

    async def apply_settings(self, settings: Settings, token: str | None) -> None:
        """Save settings (atomically) and the token (keyring); `None` leaves the token.

        What is saved is bounded by the machine policy first, whatever the caller sent.
        An answer streaming meanwhile finishes on the backend it started on.
        """
        settings = self._bounded(settings)
        try:
            if token is not None:
                if token:
                    await asyncio.to_thread(secrets.set_secret, secrets.NODE_TOKEN, token)
                else:
                    await asyncio.to_thread(secrets.delete_secret, secrets.NODE_TOKEN)
            await asyncio.to_thread(settings.save)
            self.settings = settings
        finally:
            await self._drop_backend()

    async def _drop_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is None:
            return
        if id(backend) in self._streams:
            self._retired.append(backend)  # closed when its last answer ends
        else:
            await backend.aclose()

    async def close(self) -> None:
        for backend in [self._backend, *self._retired]:
            if backend is not None:
                await backend.aclose()
        self._backend, self._retired = None, []
        self.history.close()
        if self._ledger is not None:
            self._ledger.close()


class Unavailable:
    """Stands in for a backend that could not be built; answers with why."""

    name = "Unavailable"

    def __init__(self, error: SwitchboardError) -> None:
        self.error = error

    def describe(self) -> str:
        return self.error.title

    async def health(self) -> Health:
        return Health(ok=False, error=self.error)

    async def stream_chat(self, messages: ChatMessages, *, max_tokens: int | None = None,
                          temperature: float | None = None) -> AsyncGenerator[StreamEvent, None]:
        raise self.error
        yield  # an async generator, like every backend's stream_chat

    async def aclose(self) -> None:
        pass


async def test_connection(settings: Settings, token: str | None) -> Health:
    """Health of an office node as the Settings dialog has it, before anything is saved."""
    node = OfficeNode(settings, token)
    try:
        return await node.health()
    finally:
        await node.aclose()
