"""Sending prompts and watching the office node for the windows and the tray.

One answer streams at a time; both the main window and quick ask go through here, so
the tray knows when Switchboard is answering and when the node is down. It also reads
the cloud planning budget for the status bar and the tray.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.core.chat import AnswerFinished, ChatEvent, MessageAdded
from app.core.errors import StreamInterrupted, SwitchboardError
from app.core.history import Chat
from app.core.llm.backend import Health
from app.core.routing.plan import Plan
from app.core.routing.router import Override
from app.core.runtime.supervisor import RuntimeStatus
from app.core.settings import RunOn
from app.core.tier_status import TierState, is_tier_fault, tier_state
from app.core.workspace import Workspace
from app.ui.bridge import Bridge
from app.ui.budget_meter import BudgetReading

log = logging.getLogger(__name__)

HEALTH_EVERY_MS = 30_000
HEALTH_WHILE_DOWN_MS = 5_000  # Send comes back soon after the node does
BUDGET_EVERY_MS = 60_000  # another Switchboard, or the CLI, may spend from the same ledger


class ChatController(QObject):
    """Signals:
    chatEvent(object): a ChatEvent of the streaming answer (on the GUI thread).
    busyChanged(bool): an answer started or ended.
    failed(object): a SwitchboardError to show the user.
    healthChanged(object): the office node's latest Health.
    tierChanged(object): the chat tier's TierState, whenever it changes: from a health
        check, the Local GPUs runtime, or a request that failed (down) or was answered
        (up). The tray, status bar, banner and Send button all follow this one.
    chatsChanged(): chats were created, renamed or deleted.
    runtimeChanged(object): the local runtime's RuntimeStatus (loading, ready, crashed…).
    planReview(object, object): a Plan to show before it runs, and the function to call
        with the plan as the user left it (or None: don't run it).
    budgetChanged(object): a BudgetReading, (MonthSummary, cap_micro_usd), of this month's
        cloud planning budget; read at start, after each answer, after settings are saved
        (`refresh_budget`) and every minute.
    """

    chatEvent = Signal(object)
    busyChanged = Signal(bool)
    failed = Signal(object)
    healthChanged = Signal(object)
    tierChanged = Signal(object)
    chatsChanged = Signal()
    runtimeChanged = Signal(object)
    budgetChanged = Signal(object)
    planReview = Signal(object, object)

    def __init__(self, bridge: Bridge, workspace: Workspace,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.workspace = workspace
        self.health: Health | None = None
        self.runtime: RuntimeStatus | None = None
        self.tier: TierState = self._tier_now()
        workspace.on_runtime_status = lambda status: bridge.post(self._on_runtime, status)
        self._stream: concurrent.futures.Future[Any] | None = None
        self._recheck = False  # check the tier's health once the answer has ended
        self.working_on = "answer"  # or "summary": what the current (or last) work is
        self._health_timer = QTimer(self, interval=HEALTH_EVERY_MS)
        self._health_timer.timeout.connect(self.check_health)
        self.budget: BudgetReading | None = None
        self._budget_asked = 0  # readings may come back out of order; show the newest
        self._budget_shown = 0
        self._budget_timer = QTimer(self, interval=BUDGET_EVERY_MS)
        self._budget_timer.timeout.connect(self.refresh_budget)

    def start(self) -> None:
        self._health_timer.start()
        self._budget_timer.start()
        self.check_health()
        self.refresh_budget()

    def shutdown(self) -> None:
        self._health_timer.stop()
        self._budget_timer.stop()
        self.stop()

    # Budget ----------------------------------------------------------------------------

    def refresh_budget(self) -> None:
        """Read this month's budget from the ledger; `budgetChanged` brings it."""
        self._budget_asked += 1
        asked = self._budget_asked
        self.bridge.run(self._read_budget(), on_done=lambda r: self._on_budget(asked, r),
                        on_error=self._on_budget_error)

    async def _read_budget(self) -> BudgetReading:
        return BudgetReading(*await asyncio.to_thread(self.workspace.month_budget))

    def _on_budget(self, asked: int, reading: BudgetReading) -> None:
        if asked < self._budget_shown:
            return  # an older reading arriving after a newer one
        self._budget_shown = asked
        self.budget = reading
        self.budgetChanged.emit(reading)

    def _on_budget_error(self, error: BaseException) -> None:
        # Not a chat failure: the banner stays for answers; the log says why.
        log.warning("the cloud planning budget could not be read: %s", error)

    @property
    def busy(self) -> bool:
        return self._stream is not None

    def check_health(self) -> None:
        if self.busy:
            return  # the answer streaming in says enough; don't queue behind it on the node
        self.bridge.run(self.workspace.health(), on_done=self._on_health)

    def _on_health(self, health: Health) -> None:
        if self.health is None or self.health.ok != health.ok:
            log.info("%s", health.summary(self.workspace.backend_label()))
        self.health = health
        self.healthChanged.emit(health)
        self._publish_tier()

    def _on_runtime(self, status: RuntimeStatus) -> None:
        self.runtime = status
        self.runtimeChanged.emit(status)
        self._publish_tier()

    def _tier_now(self) -> TierState:
        return tier_state(self.workspace.backend_label(), self.health, self.runtime,
                          local=self.workspace.settings.backend == RunOn.LOCAL_GPUS)

    def _publish_tier(self) -> None:
        tier = self._tier_now()
        if tier == self.tier:
            return
        self.tier = tier
        # Down, look again soon: the user is waiting for Send to come back.
        self._health_timer.setInterval(HEALTH_WHILE_DOWN_MS if tier.down else HEALTH_EVERY_MS)
        self.tierChanged.emit(tier)

    def settings_changed(self) -> None:
        """The settings were saved: what the tier is may have changed; check it now."""
        self.health = None
        self._publish_tier()
        self.check_health()

    def _answer_ended(self, event: AnswerFinished) -> None:
        """A request's outcome says at once whether its tier answers."""
        error = event.error
        if isinstance(error, StreamInterrupted):
            self._recheck = True  # the node broke off: does it still answer?
        if error is not None and is_tier_fault(error):
            self._on_health(Health(ok=False, error=error))
        elif error is None and event.message.status == "complete" \
                and self.health is not None and not self.health.ok:
            self._on_health(Health(ok=True))

    def set_mode(self, mode: str) -> None:
        """Auto / Local only / Plan with cloud, kept for the next start."""
        self.bridge.run(self.workspace.set_mode(mode), on_error=self._on_error)

    def set_model(self, model: str) -> None:
        """The office node model to answer with, kept for the next start."""
        self.bridge.run(self.workspace.set_model(model), on_done=lambda _: self.settings_changed(),
                        on_error=self._on_error)

    def unload_model(self) -> None:
        self.bridge.run(self.workspace.stop_runtime())

    def call(self, fn: Callable[..., Any], *args: Any,
             on_done: Callable[[Any], None] | None = None) -> None:
        """Run a history operation on the core thread; errors go to `failed`."""
        self.bridge.call(fn, *args, on_done=on_done, on_error=self._on_error)

    def new_chat(self, on_done: Callable[[Chat], None]) -> None:
        def done(chat: Chat) -> None:
            self.chatsChanged.emit()
            on_done(chat)

        self.call(self.workspace.create_chat, on_done=done)

    def send(self, chat_id: int, prompt: str, override: Override | None = None, *,
             pasted: tuple[str, ...] = ()) -> bool:
        """Start streaming an answer; False if one is already streaming. `override` is the
        user's choice for this message: "Plan this" or "Just answer"; `pasted` the
        material pasted into the prompt (it stays on the office's hardware)."""
        if not prompt.strip():
            return False
        review = self.review_plan if self.workspace.settings.review_plans else None
        return self._start(lambda emit: self.workspace.send(
            chat_id, prompt, emit, override=override, pasted=pasted, review=review))

    def resend(self, message_id: int, prompt: str | None = None) -> bool:
        """Regenerate the answer to a prompt (`message_id` the prompt or its answer), or
        send an edited prompt in its place (`prompt`); the earlier versions are kept.
        False if busy."""
        review = self.review_plan if self.workspace.settings.review_plans else None
        return self._start(lambda emit: self.workspace.resend(
            message_id, emit, prompt=prompt, review=review))

    def retry_plan(self, plan_message_id: int) -> bool:
        """Run again what did not finish of a plan; False if busy."""
        return self._start(lambda emit: self.workspace.retry_plan(plan_message_id, emit))

    async def review_plan(self, plan: Plan) -> Plan | None:
        """On the core loop: show the plan on the GUI thread (`planReview`) and wait for
        the user's edited plan, or None when they don't run it."""
        loop = asyncio.get_running_loop()
        decided: asyncio.Future[Plan | None] = loop.create_future()

        def answer(result: Plan | None) -> None:
            loop.call_soon_threadsafe(
                lambda: None if decided.done() else decided.set_result(result))

        self.bridge.post(lambda _: self.planReview.emit(plan, answer), None)
        return await decided

    def continue_answer(self, message_id: int) -> bool:
        """Continue an answer that was cut off, on another node; False if busy."""
        return self._start(lambda emit: self.workspace.continue_answer(message_id, emit))

    def summarize(self, chat_id: int, path: Path) -> bool:
        """Summarise a file into the chat on the local tier; False if busy."""
        return self._start(lambda emit: self.workspace.summarize_document(chat_id, path, emit),
                           what="summary")

    def ask_about_document(self, chat_id: int, document_id: int, question: str) -> bool:
        """Answer a question from one of the chat's documents; False if busy or empty."""
        if not question.strip():
            return False
        return self._start(lambda emit: self.workspace.ask_about_document(
            chat_id, document_id, question, emit))

    def _start(self, work: Callable[[Callable[[ChatEvent], None]], Awaitable[Any]],
               what: str = "answer") -> bool:
        if self._stream is not None:
            return False
        self.working_on = what
        emit = self.bridge.coalesced(self._on_event)

        async def answer() -> None:
            try:
                await work(emit)
            finally:
                # From the task itself, after the answer is saved: a cancelled future is
                # "done" at once, before the task has finished saving what it had.
                self.bridge.post(self._on_stream_done)

        self._stream = self.bridge.run(answer(), on_error=self._on_error)
        self.busyChanged.emit(True)
        return True

    def stop(self) -> None:
        if self._stream is not None:
            self.bridge.cancel(self._stream)

    def _on_event(self, event: ChatEvent) -> None:
        self.chatEvent.emit(event)
        if isinstance(event, MessageAdded) and event.message.role == "user":
            self.chatsChanged.emit()  # the chat moved to the top, maybe with a new title
        if isinstance(event, AnswerFinished):
            self._answer_ended(event)
            if event.error is not None:
                self._on_error(event.error)

    def _on_stream_done(self, _: object = None) -> None:
        self._stream = None
        self.busyChanged.emit(False)
        if self._recheck:
            self._recheck = False
            self.check_health()
        self.chatsChanged.emit()  # titles and order change with a new message
        self.refresh_budget()  # the answer may have been planned in the cloud

    def _on_error(self, error: BaseException) -> None:
        if not isinstance(error, SwitchboardError):
            error = SwitchboardError(f"{type(error).__name__}: {error}")
        elif is_tier_fault(error) and not (self.health and self.health.error is error):
            self._on_health(Health(ok=False, error=error))
        self.failed.emit(error)
