"""What the tier that answers chats can do now, in one value: the tray, the status bar,
the banner and the Send button all show this, so they never disagree.

It is made from the latest health check, the Local GPUs runtime's state and the outcome of
the latest request: a request that failed because the tier could not answer marks it down
at once, and one that got an answer marks it up, without waiting for the next check.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.core.errors import (
    AuthFailed,
    CloudKeyRejected,
    ModelNotFound,
    NodeUnreachable,
    NotConfigured,
    RuntimeCrashed,
    SwitchboardError,
)
from app.core.llm.backend import Health
from app.core.runtime.supervisor import RuntimeStatus, State


class Availability(StrEnum):
    CHECKING = "checking"
    READY = "ready"
    LOADING = "loading"  # Local GPUs: the model is loading; a question waits for it
    DOWN = "down"
    NOT_SET_UP = "not set up"


# Failures that say the tier itself can't answer now (not that one request was refused):
# each comes after the pool has tried every node. An answer broken part-way (a
# StreamInterrupted) says only that one node failed once; the tier is checked again at once.
TIER_FAULTS = (NodeUnreachable, AuthFailed, ModelNotFound, NotConfigured, RuntimeCrashed)


def is_tier_fault(error: SwitchboardError) -> bool:
    """Whether `error` means the chat tier can't answer (the cloud planner's are not)."""
    return isinstance(error, TIER_FAULTS) and not isinstance(error, CloudKeyRejected) \
        and error.tier != "cloud planner"


@dataclass(frozen=True, slots=True)
class TierState:
    """The chat tier as the user sees it.

    `line` is the status bar's and the tray menu's text; `problem` the banner's (empty when
    there is nothing to say); `can_send` whether Send is offered, and `why_not` its
    tooltip when it is not.
    """

    availability: Availability
    line: str
    problem: str = ""
    hint: str = ""
    can_send: bool = True
    why_not: str = ""

    @property
    def down(self) -> bool:
        return self.availability is Availability.DOWN


RUNTIME_WORDS = {
    State.STOPPED: "not loaded yet; it loads with the next question",
    State.LOADING: "loading the model…",
    State.READY: "ready",
    State.CRASHED: "stopped unexpectedly; restarting…",
    State.GAVE_UP: "stopped after repeated crashes",
}


def tier_state(name: str, health: Health | None, runtime: RuntimeStatus | None = None,
               local: bool = False) -> TierState:
    """The state of the tier called `name` ("Office node · ai-node-1 · qwen", "Local GPUs ·
    model.gguf") from its latest `health` (None: not checked yet) and, for the Local GPUs
    (`local`), the runtime's status (None: never started)."""
    error = health.error if health is not None and not health.ok else None
    if isinstance(error, NotConfigured):
        where = name.removesuffix(" (not set up)")  # said once: "Office node: not set up yet"
        return TierState(Availability.NOT_SET_UP, f"{where}: not set up yet", error.title,
                         error.hint, can_send=False,
                         why_not="Nothing is set up to answer yet: open Settings.")
    if local:
        return _local_state(name, error, runtime)
    if health is None:
        return TierState(Availability.CHECKING, f"{name}: checking…")
    if error is not None:
        return _down(name, error)
    if len(health.nodes) > 1:
        answering = sum(1 for n in health.nodes if n.answering)
        return TierState(Availability.READY,
                         f"{name}: {answering} of {len(health.nodes)} answering")
    latency = f" ({health.latency_ms:.0f} ms)" if health.latency_ms else ""
    return TierState(Availability.READY, f"{name}: connected{latency}")


def _down(name: str, error: SwitchboardError) -> TierState:
    return TierState(Availability.DOWN, f"{name}: {error.title}", error.title, error.hint,
                     can_send=False,
                     why_not=f"{error.title} Switchboard keeps checking; Send comes back "
                             "when it answers.")


def _local_state(name: str, error: SwitchboardError | None,
                 runtime: RuntimeStatus | None) -> TierState:
    # The runtime's state says more than a health check: a model not loaded yet is not
    # "connected (0 ms)", and one that is loading will take the question when ready.
    state = runtime.state if runtime is not None else State.STOPPED
    words = RUNTIME_WORDS[state]
    if state is State.LOADING and runtime is not None and runtime.progress:
        words += f" {runtime.progress:.0%}"
    line = f"Local GPUs: {words}"
    if state is State.GAVE_UP:
        gave_up = runtime.error if runtime is not None and runtime.error else None
        hint = gave_up.hint if gave_up else "Open Settings to choose another model."
        return TierState(Availability.DOWN, line, f"The Local GPUs {words}.", hint,
                         can_send=False, why_not=f"The Local GPUs {words}.")
    if error is not None and state is not State.READY:
        return _down(name, error)
    if state is State.LOADING:
        return TierState(Availability.LOADING, line)
    return TierState(Availability.READY, line)
