"""Counters of the chat transcript's layout work, so tests and benchmarks can check that a change
cost only the work it should (a row laid out, not every row; an append, not a re-render)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class LayoutStats:
    """How much layout work the chat view has done since it was built; the counters only grow."""

    layouts_done: int = 0  # a message's document laid out at a text width
    full_renders: int = 0  # a message rendered into a new document (not appended to)
    layout_passes: int = 0  # the view placing all its rows (not moving some of them)
