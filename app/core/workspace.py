"""A user's Switchboard: the one front door the window and the command line use.

It opens the settings (bounded by IT's policy when they load and whenever they are
saved, `app.core.policy.bound`), the chat history and the record of calls, and runs each
request one way (`_work`): route it, take a lease on the execution pool for as long as
the work runs (so saving Settings meanwhile never closes a pool under it), make it the
current work so every model call it makes is recorded, then hand it to the chat service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core import paths, secrets
from app.core.budget import Ledger, MonthSummary
from app.core.chat import ChatEvent, ChatService, MessageAdded, MessageRemoved
from app.core.cloud import CloudPlanner, user_cap
from app.core.cloud_account import BudgetOverview, budget_overview
from app.core.errors import SwitchboardError
from app.core.history import Chat, ChatKind, Document, History, Message, Preset, SearchHit
from app.core.llm.backend import Health
from app.core.llm.local_gpus import LocalGPUs
from app.core.llm.office_node import OfficeNode
from app.core.llm.openai_client import ChatMessages, Delta, StreamEvent
from app.core.planned_task import MakePlan, PlannedTask, ReviewPlan, document_refs
from app.core.policy import Limit, Policy, PolicyFile, bound, read_policy
from app.core.privacy import LOCAL_ONLY
from app.core.routing.cloud_access import cloud_access
from app.core.routing.planner import MOSTLY_PASTED, Planned, Request, make_plan
from app.core.routing.pool import Capacity, Pool
from app.core.routing.record import CallRecord, Tally, Work, current_work, working_on
from app.core.routing.report import MonthReport, month_report, this_month
from app.core.routing.router import Mode, Override, Route, decide
from app.core.routing.tiers import Workflow
from app.core.runtime.supervisor import RuntimeStatus
from app.core.settings import RunOn, Settings

log = logging.getLogger(__name__)

# Why work that is never planned in the cloud runs locally, for the record of calls.
DOCUMENT_WORK = "document text is only read on the office's hardware"
COMMAND_LINE = "the command line answers locally"
CONTINUED = "continued on another node"


@dataclass(frozen=True, slots=True)
class Usage:
    """A month of model calls as the Usage page shows them."""

    month: str
    months: list[str]  # months with calls (and this one), newest first
    total: MonthReport
    by_workflow: dict[Workflow, MonthReport]


def _announce(route: Route) -> str:
    """What the chat says while a request is planned."""
    if route.plan_in_cloud:
        return f"Planning in the cloud: {route.reason}."
    return f"Planning on the office's hardware: {route.reason}."


@dataclass
class Workspace:
    settings: Settings
    history: History
    problems: list[str] = field(default_factory=list)  # found while loading, for the user
    policy: Policy = field(default_factory=Policy)
    # Where the policy came from and what was wrong with it (None: not read from a file).
    policy_source: PolicyFile | None = None
    # Told of the local runtime's loading, readiness and crashes (on the core's loop).
    on_runtime_status: Callable[[RuntimeStatus], None] = lambda status: None
    _pool: Pool | None = field(default=None, init=False)
    _building: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _leases: dict[int, int] = field(default_factory=dict, init=False)  # id(pool) → works
    _retired: list[Pool] = field(default_factory=list, init=False)
    _ledger: Ledger | None = field(default=None, init=False)
    _opening_ledger: threading.Lock = field(default_factory=threading.Lock, init=False)
    _record: CallRecord | None = field(default=None, init=False)
    _history_marked: bool = field(default=False, init=False)

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
    def chat_service(self) -> ChatService:
        return ChatService(self.history)

    # The execution pool --------------------------------------------------------------

    async def backend(self) -> Pool:
        """The pool chats run on, as configured; built on first use.

        Nothing is kept when the key store can't be read (locked at login, say): the next
        call tries again rather than going on without the token.
        """
        async with self._building:  # requests arriving together share one pool
            if self._pool is None:
                settings = self.settings
                token = None
                if settings.backend != RunOn.LOCAL_GPUS and settings.node_urls:
                    token = await asyncio.to_thread(secrets.get_secret, secrets.NODE_TOKEN)
                local = None
                if settings.backend == RunOn.LOCAL_GPUS or settings.local_fallback:
                    local = LocalGPUs(settings, on_status=self.on_runtime_status)
                self._pool = Pool.build(settings, self.policy, token, local=local)
            return self._pool

    def backend_label(self) -> str:
        """ "Office node · host:port · model", from what is in memory (no I/O)."""
        pool = self._pool  # read once: the core thread may replace it meanwhile
        if self.settings.backend == RunOn.LOCAL_GPUS:
            name = Path(self.settings.model_path).name or "no model chosen"
            return f"Local GPUs · {name}"
        if not self.settings.node_urls:
            return "Office node (not set up)"
        if pool is not None and len(pool.nodes) > 1:
            return "Office nodes"
        node = pool.nodes[0].backend if pool is not None and pool.nodes else None
        host = pool.nodes[0].name if pool is not None and pool.nodes else \
            self.settings.node_url.split("://", 1)[-1].split("/", 1)[0]
        model = self.settings.model or (node.model if isinstance(node, OfficeNode) else "")
        return " · ".join(part for part in ("Office node", host, model) if part)

    def answering_model(self) -> str:
        """The office node model that answers: the one chosen, else the node's first
        ("" before the node is asked). From memory, no I/O."""
        pool = self._pool
        node = pool.nodes[0].backend if pool is not None and pool.nodes else None
        return self.settings.model or (node.model if isinstance(node, OfficeNode) else "")

    async def health(self) -> Health:
        try:
            pool = await self.backend()
        except SwitchboardError as e:
            return Health(ok=False, error=e)
        return await pool.health()

    async def capacity(self) -> Capacity:
        return await (await self.backend()).capacity()

    # The one way work runs -----------------------------------------------------------

    def route(self, prompt: str, override: Override | None = None,
              pasted: tuple[str, ...] = (), mode: Mode | None = None) -> Route:
        """Where this request is planned, and why (no I/O). A request that is mostly
        pasted material is planned locally: what it asks is about text the cloud can't
        see."""
        route = decide(prompt, mode=mode or Mode(self.settings.mode), override=override,
                       cloud=cloud_access(self.settings, self.policy))
        if route.plan_in_cloud and Request(prompt, pasted).pasted_share > MOSTLY_PASTED:
            return Route(False, "it is mostly pasted material, which stays on this computer",
                         override, planned=True)
        return route

    @contextlib.asynccontextmanager
    async def _work(self, workflow: Workflow, route: Route
                    ) -> AsyncIterator[Pool | Unavailable]:
        """Lease the pool for one piece of work and make it the current work, so its model
        calls are recorded; the pool a Settings change replaced meanwhile closes when the
        last work on it ends."""
        try:
            pool: Pool | Unavailable = await self.backend()
        except SwitchboardError as e:
            pool = Unavailable(e)  # the question is still saved, with the error beside it
        key = id(pool)
        self._leases[key] = self._leases.get(key, 0) + 1
        try:
            record = await self._call_record()
            baseline = await asyncio.to_thread(record.baseline_prices,
                                               self.settings.planner_model)
            with working_on(Work(workflow, route, record, baseline)):
                yield pool
        finally:
            self._leases[key] -= 1
            if not self._leases[key]:
                del self._leases[key]
                if pool in self._retired:  # settings changed while it worked
                    self._retired.remove(pool)
                    await pool.aclose()

    async def send(self, chat_id: int, prompt: str, emit: Callable[[ChatEvent], None], *,
                   override: Override | None = None, pasted: tuple[str, ...] = (),
                   review: ReviewPlan | None = None) -> Message:
        """Answer a prompt in a chat: as it is, or, when the router finds it worth
        planning, by a plan (from the cloud where it may be asked) carried out step by
        step on the local tiers. `pasted` is material the user pasted into the prompt;
        `review` shows the plan before it runs (None: it runs at once)."""
        route = self.route(prompt, override, pasted)
        wanted_cloud = self.settings.mode == Mode.PLAN_WITH_CLOUD or override is Override.PLAN
        workflow = Workflow.PLANNED_TASK if route.planned else Workflow.CHAT
        async with self._work(workflow, route) as pool:
            if not route.planned:
                note = f"Answered without a plan: {route.reason}." if wanted_cloud else ""
                return await self.chat_service.send(chat_id, prompt, pool, emit, pasted=pasted,
                                             note=note)
            self.chat_service.add_prompt(chat_id, prompt, emit, pasted=pasted)
            request = Request(prompt, pasted, document_refs(self.history, chat_id))
            task = PlannedTask(self.chat_service, pool, emit, self._parallel(pool))
            return await task.run(chat_id, request, self._plan_maker(route, pool),
                                  _announce(route), review)

    async def resend(self, message_id: int, emit: Callable[[ChatEvent], None], *,
                     prompt: str | None = None, review: ReviewPlan | None = None) -> Message:
        """Answer again from a message on: regenerate an answer (`message_id` an answer,
        or its prompt, with `prompt` None) or edit a prompt and send it again (`prompt` the
        new text). The prompt and everything after it are kept as earlier versions, not
        deleted: the new prompt and answer each say which one they replace."""
        asked = self._prompt_of(message_id)
        if asked is None:
            raise LookupError(f"no prompt for message {message_id}")
        chat = self.history.messages(asked.chat_id)
        answered = next((m for m in chat if m.id > asked.id and m.role == "assistant"
                         and m.kind in ("", "document answer")), None)
        for removed in self.history.supersede_from(asked.id):
            emit(MessageRemoved(removed))
        replaced = {"user": asked.id, "assistant": answered.id if answered else None}

        def linked(event: ChatEvent) -> None:
            # The first prompt and the first answer after the old ones replace them.
            if isinstance(event, MessageAdded) and event.message.kind in ("", "document answer"):
                old = replaced.get(event.message.role)
                if old is not None:
                    replaced[event.message.role] = None
                    self.history.update_message(event.message.id, replaces=old)
            emit(event)

        pasted = tuple(json.loads(asked.pasted)) if asked.pasted else ()
        return await self.send(asked.chat_id, asked.content if prompt is None else prompt,
                               linked, pasted=pasted, review=review)

    def _prompt_of(self, message_id: int) -> Message | None:
        """The user's prompt that `message_id` is (a prompt) or answers (an answer)."""
        message = self.history.message(message_id)
        if message is None or message.role == "user":
            return message
        earlier = [m for m in self.history.messages(message.chat_id)
                   if m.id < message.id and m.role == "user"]
        return earlier[-1] if earlier else None

    async def retry_plan(self, plan_message_id: int,
                         emit: Callable[[ChatEvent], None]) -> Message:
        """Run again what did not finish of a plan (a step cut off part-way, the steps
        after it) and its answer; the steps that finished are kept."""
        note = self.history.message(plan_message_id)
        if note is None or note.kind != "plan" or not note.data:
            raise LookupError(f"no plan {plan_message_id}")
        route = Route(note.route == "cloud plan", "the rest of a plan, run again",
                      planned=True)
        async with self._work(Workflow.PLANNED_TASK, route) as pool:
            task = PlannedTask(self.chat_service, pool, emit, self._parallel(pool))
            return await task.resume(note)

    async def _cloud_planner(self) -> Callable[[], CloudPlanner]:
        """What makes the cloud planner. Without a ledger (damaged, or a full disk) no
        cloud call can be charged: making it raises why, and the plan is made locally."""
        try:
            ledger = await asyncio.to_thread(self.ledger)
        except SwitchboardError as e:
            failure = e

            def refused() -> CloudPlanner:
                raise failure

            return refused
        return lambda: CloudPlanner(self.settings, self.policy, ledger)

    def _plan_maker(self, route: Route, pool: Pool | Unavailable) -> MakePlan:
        async def make(request: Request, on_cloud: Callable[[int], None]) -> Planned:
            cloud = None
            if route.plan_in_cloud:
                await self._keep_history_from_cloud()
                cloud = await self._cloud_planner()
            planned = await make_plan(request, route, local=pool, cloud=cloud,
                                      on_cloud=on_cloud)
            work = current_work()
            if work is not None and planned.where != "cloud":
                # Recorded as what it became: planned here, and why.
                work.route = Route(False, planned.why, route.override, planned=True)
            return planned

        return make

    def _parallel(self, pool: Pool | Unavailable) -> Callable[[], Awaitable[int]]:
        async def parallel() -> int:
            if isinstance(pool, Pool):
                with contextlib.suppress(SwitchboardError):
                    return (await pool.capacity()).parallel
            return 1

        return parallel

    async def _keep_history_from_cloud(self) -> None:
        """Before the first cloud call: mark what earlier sessions read from documents or
        had pasted as local-only too (this session marks its own as it goes)."""
        if not self._history_marked:
            def mark_all() -> None:
                for text in self.history.local_only_texts():
                    LOCAL_ONLY.mark(text)

            await asyncio.to_thread(mark_all)
            self._history_marked = True

    async def summarize_document(self, chat_id: int, path: Path,
                                 emit: Callable[[ChatEvent], None]) -> Message:
        """Summarise a file into the chat on the local tiers; the cloud is never asked."""
        async with self._work(Workflow.SUMMARY, Route(False, DOCUMENT_WORK)) as pool:
            return await self.chat_service.summarize_document(
                chat_id, path, pool, emit,
                capacity=pool.capacity if isinstance(pool, Pool) else None)

    async def ask_about_document(self, chat_id: int, document_id: int, question: str,
                                 emit: Callable[[ChatEvent], None]) -> Message:
        """Answer from a document's most relevant parts on the local tiers; the cloud
        planner is never asked (document text never leaves the office)."""
        async with self._work(Workflow.DOCUMENT_QUESTION, Route(False, DOCUMENT_WORK)) as pool:
            return await self.chat_service.ask_about_document(chat_id, document_id, question, pool,
                                                       emit)

    async def continue_answer(self, message_id: int,
                              emit: Callable[[ChatEvent], None]) -> Message:
        """Continue an answer cut off part-way, on another place than the one it ran on."""
        answer = self.history.message(message_id)
        if answer is None or answer.role != "assistant":
            raise LookupError(f"no answer {message_id}")
        avoid = tuple(name.strip() for name in answer.ran_on.split(",") if name.strip())
        async with self._work(Workflow.CHAT, Route(False, CONTINUED)) as pool:
            options: dict[str, Any] = {"avoid": avoid} if isinstance(pool, Pool) else {}
            return await self.chat_service.continue_answer(answer, pool, emit, **options)

    async def ask(self, prompt: str, on_text: Callable[[str], None]) -> Tally:
        """Answer one prompt without keeping it in a chat (the command line); what its
        calls added up to comes back for the footer."""
        async with self._work(Workflow.CHAT, Route(False, COMMAND_LINE)) as pool:
            work = current_work()
            assert work is not None
            messages = [{"role": "user", "content": prompt}]
            async with contextlib.aclosing(pool.stream_chat(messages)) as stream:
                async for event in stream:
                    if isinstance(event, Delta):
                        on_text(event.text)
            return work.tally

    async def ask_planned(self, prompt: str, plan: str,
                          emit: Callable[[ChatEvent], None]) -> list[Message]:
        """Plan and carry out one request without keeping it in a chat (the command
        line): `plan` is "auto" (as the router decides), "cloud" (plan it there) or
        "local" (on the office's hardware). Returns the turn's messages: the prompt, the
        plan, the steps, the answer."""
        if plan == "local":
            route = Route(False, "you asked to plan it locally", planned=True)
        else:
            route = self.route(prompt, Override.PLAN if plan == "cloud" else None,
                               mode=Mode.AUTO)
        scratch = ChatService(await asyncio.to_thread(History, Path(":memory:")))
        try:
            chat = scratch.history.create_chat()
            workflow = Workflow.PLANNED_TASK if route.planned else Workflow.CHAT
            async with self._work(workflow, route) as pool:
                if route.planned:
                    scratch.add_prompt(chat.id, prompt, emit)
                    task = PlannedTask(scratch, pool, emit, self._parallel(pool))
                    await task.run(chat.id, Request(prompt), self._plan_maker(route, pool),
                                   _announce(route))
                else:
                    await scratch.send(chat.id, prompt, pool, emit,
                                       note=f"Not planned: {route.reason}.")
            return scratch.history.messages(chat.id)
        finally:
            scratch.history.close()

    async def summarize_file(self, path: Path, progress: Callable[[Any], None]) -> str:
        """A file's summary as Markdown, without keeping it in a chat (the command line)."""
        from app.core.documents.reading import as_markdown, summarize_file

        async with self._work(Workflow.SUMMARY, Route(False, DOCUMENT_WORK)) as pool:
            if isinstance(pool, Unavailable):
                raise pool.error
            document, summary = await summarize_file(path, pool, progress=progress,
                                                     capacity=pool.capacity)
        return as_markdown(document, summary)

    # Planning ------------------------------------------------------------------------

    # The chats, as the window lists and changes them (on disk: core thread only) ---------

    def chats(self) -> list[Chat]:
        return self.history.chats()

    def chat(self, chat_id: int) -> Chat | None:
        return self.history.chat(chat_id)

    def create_chat(self, title: str = "New chat", kind: ChatKind = "") -> Chat:
        return self.history.create_chat(title, kind=kind)

    def rename_chat(self, chat_id: int, title: str) -> None:
        self.history.rename_chat(chat_id, title)

    def delete_chat(self, chat_id: int) -> None:
        self.history.delete_chat(chat_id)

    def messages(self, chat_id: int) -> list[Message]:
        return self.history.messages(chat_id)

    def documents(self, chat_id: int) -> list[Document]:
        return self.history.documents(chat_id)

    def export_chat(self, chat_id: int, path: Path) -> Path:
        """Write the chat, its document summaries with it, to `path` as Markdown."""
        from app.core.export import chat_markdown, write_markdown

        chat = self.history.chat(chat_id)
        if chat is None:
            raise LookupError(f"no chat {chat_id}")
        write_markdown(path, chat_markdown(chat, self.history.messages(chat_id),
                                           self.history.documents(chat_id)))
        return path

    def quick_chat(self) -> Chat:
        """The chat quick ask continues (made the first time)."""
        return self.history.quick_chat()

    def search(self, query: str) -> list[SearchHit]:
        return self.history.search(query)

    def versions(self, message_id: int) -> list[Message]:
        return self.history.versions(message_id)

    def presets(self) -> list[Preset]:
        return self.history.presets()

    def save_preset(self, name: str, prompt: str) -> Preset:
        return self.history.save_preset(name, prompt)

    def delete_preset(self, name: str) -> None:
        self.history.delete_preset(name)

    def set_chat_preset(self, chat_id: int, preset: Preset | None) -> Chat | None:
        self.history.set_chat_preset(chat_id, preset)
        return self.history.chat(chat_id)

    # The budget (on disk: core thread only) -------------------------------------------------

    def month_budget(self) -> tuple[MonthSummary, int]:
        """This month's spend and the cap in force now."""
        cap = user_cap(self.settings, self.policy)
        return self.ledger().month_summary(cap_micro_usd=cap), cap

    def budget_overview(self) -> BudgetOverview:
        return budget_overview(self.ledger())

    # Settings and the rest -----------------------------------------------------------

    async def set_mode(self, mode: str) -> None:
        """Change how requests are planned; the pool (and a loaded model) stays."""
        settings = self._bounded(self.settings.changed(mode=mode))
        await asyncio.to_thread(settings.save)
        self.settings = settings

    async def set_model(self, model: str) -> None:
        """Answer with `model` from now on (one the office nodes list); work running
        meanwhile finishes on the model it started with."""
        await self.apply_settings(self.settings.changed(model=model), None)

    def ledger(self) -> Ledger:
        """The process's one budget ledger, opened on first use (blocks on disk: from the
        core thread, or a worker thread of its loop)."""
        with self._opening_ledger:
            if self._ledger is None:
                self._ledger = Ledger()
            return self._ledger

    async def _call_record(self) -> CallRecord:
        if self._record is None:
            self._record = await asyncio.to_thread(CallRecord)
            for problem in self._record.problems:
                log.warning("%s", problem)
        return self._record

    async def usage(self, month: str | None = None) -> Usage:
        """What a month's model calls came to (default: this month, UTC), in all and for
        each workflow, and which months have calls: the Usage page's figures."""
        record = await self._call_record()
        month = month or this_month()
        calls = await asyncio.to_thread(record.calls, month)
        months = await asyncio.to_thread(record.months)
        by_workflow = {w: month_report([c for c in calls if c.workflow == w], month)
                       for w in Workflow}
        return Usage(month, sorted({month, *months}, reverse=True),
                     month_report(calls, month), by_workflow)

    async def stop_runtime(self) -> None:
        """Unload the local model now (frees the GPUs); it loads again when asked."""
        local = self._pool.local if self._pool is not None else None
        if local is not None and local.supervisor is not None:
            await local.supervisor.stop()

    async def apply_settings(self, settings: Settings, token: str | None) -> None:
        """Save settings (atomically) and the token (keyring); `None` leaves the token.

        What is saved is bounded by the machine policy first, whatever the caller sent.
        Work running meanwhile finishes on the pool it started on.
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
            await self._drop_pool()

    async def _drop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if id(pool) in self._leases:
            self._retired.append(pool)  # closed when its last work ends
        else:
            await pool.aclose()

    async def close(self) -> None:
        for pool in [self._pool, *self._retired]:
            if pool is not None:
                await pool.aclose()
        self._pool, self._retired = None, []
        self.history.close()
        if self._ledger is not None:
            self._ledger.close()
        if self._record is not None:
            self._record.close()


class Unavailable:
    """Stands in for a pool that could not be built; answers with why."""

    name = "Unavailable"

    def __init__(self, error: SwitchboardError) -> None:
        self.error = error

    def describe(self) -> str:
        return self.error.title

    async def health(self) -> Health:
        return Health(ok=False, error=self.error)

    async def stream_chat(self, messages: ChatMessages, *, max_tokens: int | None = None,
                          temperature: float | None = None,
                          response_format: Mapping[str, Any] | None = None
                          ) -> AsyncGenerator[StreamEvent, None]:
        raise self.error
        yield  # an async generator, like every backend's stream_chat

    async def aclose(self) -> None:
        pass


async def test_connection(settings: Settings, token: str | None = None,
                          policy: Policy | None = None) -> Health:
    """Health of the office nodes as the Settings dialog has them, before anything is
    saved: each node asked what it serves and how busy it is. `token` is the one to try
    (None: the one saved)."""
    if token is None:
        token = await asyncio.to_thread(secrets.get_secret, secrets.NODE_TOKEN)
    pool = Pool.build(settings.changed(backend=RunOn.OFFICE_NODE, local_fallback=False),
                      policy or Policy(), token)
    try:
        return await pool.health()
    finally:
        await pool.aclose()
