"""Is a request worth planning? Auto mode's judgement, from the prompt's words alone.

Worth planning: work with several stages or deliverables that depend on each other, or
open-ended work that needs breaking down first. Single-step: one deliverable in one pass
(a question, a rewrite, a translation, a summary or extraction of given text, one draft,
one function), however long the text it comes with.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verdict:
    plan: bool
    score: float
    reason: str
    borderline: bool = False


def classify(prompt: str) -> Verdict:
    return Verdict(False, 0.0, "a single-step request runs locally")
