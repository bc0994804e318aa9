"""One state for the chat tier, from its health, its runtime and the latest request."""

from __future__ import annotations

from app.core.errors import (
    CloudKeyRejected,
    NodeUnreachable,
    NotConfigured,
    RateLimited,
    RuntimeGaveUp,
    StreamInterrupted,
)
from app.core.llm.backend import Health
from app.core.runtime.supervisor import RuntimeStatus, State
from app.core.tier_status import Availability, is_tier_fault, tier_state

NODE = "Office node · ai-node-1"


def test_not_checked_yet_is_checking_and_send_is_offered() -> None:
    state = tier_state(NODE, None)
    assert state.availability is Availability.CHECKING and state.can_send
    assert state.line == f"{NODE}: checking…"


def test_a_node_that_answers_is_ready() -> None:
    state = tier_state(NODE, Health(ok=True, latency_ms=12.4))
    assert (state.availability, state.line, state.problem) == (
        Availability.READY, f"{NODE}: connected (12 ms)", "")


def test_a_node_that_does_not_answer_is_down_and_send_says_why() -> None:
    state = tier_state(NODE, Health(ok=False, error=NodeUnreachable("refused")))
    assert state.down and not state.can_send
    assert state.problem == NodeUnreachable().title
    assert "keeps checking" in state.why_not and NodeUnreachable().title in state.why_not


def test_nothing_set_up_is_not_down_but_send_waits_for_settings() -> None:
    state = tier_state("Office node (not set up)", Health(ok=False, error=NotConfigured()))
    assert state.availability is Availability.NOT_SET_UP and not state.down
    assert not state.can_send and "Settings" in state.why_not
    # Said once, not "Office node (not set up): No office node is set up yet." twice over.
    assert state.line == "Office node: not set up yet"
    assert state.problem == NotConfigured().title


def test_a_local_model_not_loaded_is_not_connected_in_zero_ms() -> None:
    state = tier_state("Local GPUs · m.gguf", Health(ok=True, latency_ms=0.0),
                       RuntimeStatus(State.STOPPED), local=True)
    assert state.line == "Local GPUs: not loaded yet; it loads with the next question"
    assert state.can_send
    loading = tier_state("Local GPUs · m.gguf", Health(ok=True),
                         RuntimeStatus(State.LOADING, 0.45), local=True)
    assert loading.availability is Availability.LOADING and loading.line.endswith("45%")


def test_local_gpus_that_gave_up_are_down() -> None:
    state = tier_state("Local GPUs · m.gguf", Health(ok=True),
                       RuntimeStatus(State.GAVE_UP, error=RuntimeGaveUp()), local=True)
    assert state.down and not state.can_send


def test_which_failures_mark_the_tier_down() -> None:
    assert is_tier_fault(NodeUnreachable())
    assert is_tier_fault(RuntimeGaveUp())
    assert not is_tier_fault(StreamInterrupted())  # one node, once: checked again instead
    assert not is_tier_fault(RateLimited())  # busy, not down
    assert not is_tier_fault(CloudKeyRejected())  # the cloud planner's, not the chat tier's
    assert not is_tier_fault(NodeUnreachable(tier="cloud planner"))
