"""Sending a prompt: save it, stream the answer from a backend, and save the answer as it
grows, so a fault, a Stop or a killed process never loses what was already received.

An answer's footer (where it ran, its tokens and cost) comes from the calls recorded for
the current work (`routing.record`), whatever the workflow."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.errors import NothingToAsk, StorageFailed, SwitchboardError
from app.core.history import Document, DocumentStatus, History, Message, MessageStatus
from app.core.llm.backend import Backend
from app.core.llm.openai_client import Delta, Finished
from app.core.privacy import LOCAL_ONLY
from app.core.routing.record import current_work

if TYPE_CHECKING:
    from app.core.documents.summarize import Progress
    from app.core.routing.pool import Capacity

log = logging.getLogger(__name__)

SAVE_EVERY_S = 0.5  # how often a streaming answer is written to disk
TITLE_LENGTH = 48


@dataclass(frozen=True, slots=True)
class MessageAdded:
    message: Message


@dataclass(frozen=True, slots=True)
class MessageChanged:
    """A message shown already changed as a whole (a plan's note once the plan is made)."""

    message: Message


@dataclass(frozen=True, slots=True)
class MessageRemoved:
    """A message is gone from the chat (a step of a plan, about to be run again)."""

    message_id: int


@dataclass(frozen=True, slots=True)
class TextAppended:
    message_id: int
    text: str


@dataclass(frozen=True, slots=True)
class AnswerFinished:
    message: Message
    error: SwitchboardError | None = None


@dataclass(frozen=True, slots=True)
class DocumentProgress:
    """How far reading a dropped file has got, for a progress bar."""

    message_id: int
    text: str  # "Summarising part 3 of 12 · about 40 s left" (documents.progress)
    fraction: float  # 0..1


@dataclass(frozen=True, slots=True)
class DocumentChanged:
    """A document of a chat was added, read, summarised or failed: its row as saved."""

    document: Document




ChatEvent = (MessageAdded | MessageChanged | MessageRemoved | TextAppended | AnswerFinished
             | DocumentProgress | DocumentChanged)

# Asked of the model when an answer cut off on one node is continued on another.
CONTINUE_PROMPT = ("Your previous answer was cut off. Continue it exactly where it stopped, "
                   "without repeating anything or saying that you are continuing.")


def footer(message: Message) -> str:
    """ "Planned in the cloud · ran on ai-node-1 · 1,234 tokens · $0.01": where an answer
    ran and what it took, in a quiet line under it; "" when nothing was recorded."""
    if not message.ran_on and not message.tokens:
        return ""
    from app.core.money import format_cost

    if message.kind == "step":
        seconds = json.loads(message.data or "{}").get("seconds")
        where = [f"Ran on {message.ran_on}"] if message.ran_on else []
        took = [f"{seconds:g} s"] if seconds is not None else []
        return " · ".join([*where, *took, f"{message.tokens:,} tokens"])
    parts = {"cloud plan": ["Planned in the cloud"],
             "local plan": ["Planned locally"]}.get(message.route, [])
    if message.ran_on:
        parts.append(f"ran on {message.ran_on}" if parts else f"Ran on {message.ran_on}")
    parts.append(f"{message.tokens:,} tokens")
    parts.append(format_cost(message.cost_micro_usd) if message.cost_micro_usd
                 else "no cloud cost")
    return " · ".join(parts)


def title_from_prompt(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


class ChatService:
    def __init__(self, history: History) -> None:
        self.history = history

    def context(self, chat_id: int) -> list[dict[str, str]]:
        """The conversation so far as the model sees it, after the chat's preset
        instructions if it has some; failed answers are left out."""
        return self._instructions(chat_id) + self._as_context(self.history.messages(chat_id))

    def _instructions(self, chat_id: int) -> list[dict[str, str]]:
        chat = self.history.chat(chat_id)
        return [{"role": "system", "content": chat.system_prompt}] \
            if chat is not None and chat.system_prompt else []

    @staticmethod
    def _as_context(messages: list[Message]) -> list[dict[str, str]]:
        """Prompts and answers: a plan and its steps belong to their turn, and notes and
        failed answers are for the user, not the model."""
        return [{"role": m.role, "content": m.content}
                for m in messages
                if m.content and m.kind not in ("plan", "step") and (
                    m.role == "user" or m.role == "assistant"
                    and m.status in ("complete", "interrupted", "cancelled"))]

    async def summarize_document(self, chat_id: int, path: Path, backend: Backend,
                                 emit: Callable[[ChatEvent], None],
                                 capacity: Callable[[], Awaitable[Capacity]] | None = None
                                 ) -> Message:
        """Summarise a dropped file into the chat, on `backend` (never the cloud).

        The request and the summary are saved like a question and its answer; a refused
        file, a fault or a Stop end the answer with the reason, as for any answer.
        """
        from app.core.documents.extract import ExtractedDocument
        from app.core.documents.progress import progress_fraction, progress_text
        from app.core.documents.reading import as_markdown, summarize_file

        history = self.history
        prompt = f"Summarise {path.name}"
        if not history.messages(chat_id):
            history.rename_chat(chat_id, title_from_prompt(prompt))
        emit(MessageAdded(history.add_message(chat_id, "user", prompt)))
        answer = history.add_message(chat_id, "assistant", "", status="streaming",
                                     kind="summary")
        emit(MessageAdded(answer))
        LOCAL_ONLY.mark_name(path.name)
        # Recorded with the message its summary goes into, so its progress can be shown.
        document = history.add_document(chat_id, path.name, str(path),
                                        summary_message_id=answer.id)
        emit(DocumentChanged(document))

        def extracted(read: ExtractedDocument) -> None:
            for page in read.pages:  # where document text enters the core
                LOCAL_ONLY.mark(page.text)
            # Its pages are kept, so questions about it never read the file again.
            emit(DocumentChanged(history.update_document(
                document.id, kind=read.kind, sha256=read.sha256,
                pages=[(p.number, p.text) for p in read.pages])))

        def document_ended(status: DocumentStatus, error: SwitchboardError | None) -> None:
            try:
                emit(DocumentChanged(history.update_document(
                    document.id, status=status, error=error.user_text() if error else "")))
            except StorageFailed as e:
                log.error("could not save the state of document %d: %s", document.id,
                          e.detail)

        def progress(p: Progress) -> None:
            emit(DocumentProgress(answer.id, progress_text(p), progress_fraction(p)))

        def end(text: str, status: MessageStatus, error: SwitchboardError | None = None) -> Message:
            return self.end_answer(answer, text, status, error, backend.describe(), emit)

        try:
            read, summary = await summarize_file(path, backend, progress=progress,
                                                 on_extracted=extracted, capacity=capacity)
        except asyncio.CancelledError:
            end("", "cancelled")
            document_ended("cancelled", None)
            raise
        except SwitchboardError as e:
            done = end("", "error", e)
            document_ended("error", e)
            return done
        LOCAL_ONLY.mark(summary.text)
        done = end(as_markdown(read, summary), "complete")
        document_ended("ready", None)
        return done

    async def send(self, chat_id: int, prompt: str, backend: Backend,
                   emit: Callable[[ChatEvent], None], *, pasted: tuple[str, ...] = (),
                   note: str = "") -> Message:
        """Ask `backend` and stream the answer; returns the saved answer. `pasted` is
        material pasted into the prompt (kept from the cloud); `note` a line the chat
        shows before the answer (why it was not planned in the cloud, when asked to).

        Faults don't raise: the answer is saved with status `error`/`interrupted` and the
        error goes out with `AnswerFinished`. Cancelling the task saves the partial answer
        as `cancelled` and re-raises CancelledError.
        """
        self.add_prompt(chat_id, prompt, emit, pasted=pasted)
        if note:
            emit(MessageAdded(self.history.add_message(chat_id, "system", note)))
        messages = self.context(chat_id)
        answer = self.history.add_message(chat_id, "assistant", "", status="streaming")
        emit(MessageAdded(answer))
        return await self.stream_answer(answer, messages, backend, emit)

    def add_prompt(self, chat_id: int, prompt: str, emit: Callable[[ChatEvent], None], *,
                   pasted: tuple[str, ...] = ()) -> Message:
        """Save the user's prompt (the chat takes its title from the first)."""
        history = self.history
        chat = history.chat(chat_id)
        # The quick questions chat keeps its name; any other takes its first prompt's.
        if not history.messages(chat_id) and not (chat and chat.kind == "quick"):
            history.rename_chat(chat_id, title_from_prompt(prompt))
        for passage in pasted:
            LOCAL_ONLY.mark(passage)  # where pasted material enters the core
        message = history.add_message(chat_id, "user", prompt,
                                      pasted=json.dumps(list(pasted)) if pasted else "")
        emit(MessageAdded(message))
        return message

    async def ask_about_document(self, chat_id: int, document_id: int, question: str,
                                 backend: Backend, emit: Callable[[ChatEvent], None]
                                 ) -> Message:
        """Answer a question about one of the chat's documents from its most relevant
        parts, with page references, on `backend` (the local tier; never the cloud
        planner). Streams, saves and ends like `send`."""
        from app.core.documents.retrieve import EndsWithPages, ask_messages, top_chunks

        history = self.history
        document = history.document(document_id)
        name = document.name if document else "the document"
        prompt = f"About {name}: {question.strip()}"
        if not history.messages(chat_id):
            history.rename_chat(chat_id, title_from_prompt(prompt))
        emit(MessageAdded(history.add_message(chat_id, "user", prompt)))
        pages = history.document_pages(document_id) if document else []
        for _, text in pages:
            LOCAL_ONLY.mark(text)
        LOCAL_ONLY.mark_name(name)
        # Scoring is plain CPU work on data already read: off the loop, for a long file.
        hits = await asyncio.to_thread(top_chunks, pages, question) if pages else []
        answer = history.add_message(chat_id, "assistant", "", status="streaming",
                                     kind="document answer")
        emit(MessageAdded(answer))
        if not hits:
            return self.end_answer(answer, "", "error", NothingToAsk(), "", emit)
        log.info("question about document %d in chat %d: parts on %s", document_id, chat_id,
                 ", ".join(str(h.pages) for h in hits))
        done = await self.stream_answer(answer, ask_messages(name, question, hits),
                                        EndsWithPages(backend, hits), emit)
        LOCAL_ONLY.mark(done.content)  # drawn from the document
        return done

    async def continue_answer(self, answer: Message, backend: Backend,
                              emit: Callable[[ChatEvent], None], **stream_options: Any
                              ) -> Message:
        """Continue an answer that was cut off: the model sees the conversation up to it
        and the part already written, and what it writes now is appended."""
        before = [m for m in self.history.messages(answer.chat_id) if m.id < answer.id]
        messages = [*self._instructions(answer.chat_id), *self._as_context(before),
                    {"role": "assistant", "content": answer.content},
                    {"role": "user", "content": CONTINUE_PROMPT}]
        self.history.update_message(answer.id, status="streaming", error="")
        resumed = replace(answer, status="streaming", error="")
        return await self.stream_answer(resumed, messages, backend, emit,
                                        already=answer.content, **stream_options)

    def end_answer(self, answer: Message, text: str, status: MessageStatus,
                    error: SwitchboardError | None, model: str,
                    emit: Callable[[ChatEvent], None]) -> Message:
        """Save how an answer ended and tell the UI; every way an answer ends comes here."""
        log.info("answer %d in chat %d: %s, %d characters, model %r%s", answer.id,
                 answer.chat_id, status, len(text), model,
                 f"; {type(error).__name__}: {error.detail}" if error else "")
        error_text = error.user_text() if error else ""
        work = current_work()
        tally = work.tally if work else None
        ran_on = ", ".join(tally.places) if tally else ""
        route = work.route.name if work else ""
        tokens = tally.tokens if tally else 0
        cost = tally.cost_micro_usd if tally else 0
        try:
            self.history.update_message(answer.id, content=text, status=status,
                                        error=error_text, model=model, ran_on=ran_on,
                                        route=route, tokens=tokens, cost_micro_usd=cost)
        except StorageFailed as e:
            # The disk is full: the user still sees the whole answer; what was saved
            # so far is kept and marked interrupted at the next start.
            log.error("could not save answer %d: %s", answer.id, e.detail)
            error = error or e
            error_text = error.user_text()
        done = replace(answer, content=text, status=status, model=model, error=error_text,
                       ran_on=ran_on, route=route, tokens=tokens, cost_micro_usd=cost)
        emit(AnswerFinished(done, error))
        return done

    async def stream_answer(self, answer: Message, messages: list[dict[str, str]],
                            backend: Backend, emit: Callable[[ChatEvent], None], *,
                            already: str = "", **stream_options: Any) -> Message:
        """Stream `backend`'s answer to `messages` into the saved message `answer`, after
        the text it `already` has."""
        history = self.history
        parts: list[str] = [already] if already else []
        saved_at = time.monotonic()
        model = ""

        def finish(status: MessageStatus, error: SwitchboardError | None = None) -> Message:
            return self.end_answer(answer, "".join(parts), status, error, model, emit)

        try:
            # aclosing: a stream left early closes its HTTP response at once.
            async with contextlib.aclosing(backend.stream_chat(messages,
                                                               **stream_options)) as stream:
                async for event in stream:
                    if isinstance(event, Delta):
                        parts.append(event.text)
                        emit(TextAppended(answer.id, event.text))
                        if time.monotonic() - saved_at >= SAVE_EVERY_S:
                            history.update_message(answer.id, content="".join(parts))
                            saved_at = time.monotonic()
                    elif isinstance(event, Finished):
                        model = event.model
        except asyncio.CancelledError:
            finish("cancelled")
            raise
        except Exception as e:  # noqa: BLE001 — no fault may leave an answer "streaming"
            if not isinstance(e, SwitchboardError):
                log.exception("unexpected failure while answering")
                e = SwitchboardError(f"{type(e).__name__}: {e}")
            # `parts` already holds every delta the backend yielded, i.e. `e.partial`.
            return finish("interrupted" if "".join(parts) else "error", e)
        return finish("complete")
