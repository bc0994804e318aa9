"""Is a request worth planning? Auto mode's judgement, from the prompt's words alone.

Worth planning: work with several stages or deliverables that depend on each other, or
open-ended work that needs breaking down before it can be done well. Single-step: one
deliverable in one pass (a question, a rewrite, a translation, a summary or extraction
of given text, one draft, one formula or function), however long the text it comes with.

The judgement reads only the request itself, not material pasted with it: in "Make this
more polite: <an email>" the ask is "Make this more polite". It then weighs what a
planner is for (several tasks asked for one after another, open-ended work such as
organising an event or a migration, a decision to be made across options) against what
marks one step (a question, a rewrite, a greeting). A false plan costs money and a missed
one only quality, so it takes clear signs to plan. The weights were set on the training
part of `tests/data/routing_prompts.tsv`; a test measures them on the held-out part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PLAN_AT = 2.0  # a score at or above this plans
BORDERLINE = 1.0  # this close to the line, a local model's opinion may be asked

# Verbs that name a piece of work to deliver.
_TASK = re.compile(
    r"\b(draft|write|prepare|create|build|compile|analy[sz]e|compare|evaluate|review|"
    r"identify|flag|total|calculate|work out|figure out|propose|recommend|schedule|plan|"
    r"organi[sz]e|coordinate|design|develop|research|investigate|assess|estimate|outline|"
    r"map|set up|roll out|migrate|update|notify|collect|gather|reconcile|produce|rank|"
    r"score|document|define|decide|choose|select|shortlist|arrange|book|budget|cost|"
    r"forecast|benchmark|audit|survey|interview|train|test|implement|consolidate|"
    r"standardi[sz]e|restructure|redesign|launch|run|track|list|sort|group|split|merge|"
    r"summari[sz]e|extract|clean|check|send|email|present|report|suggest|find|pull)\b",
    re.IGNORECASE)
# Open-ended work: what a plan is for, whatever the verb.
_SCOPE = re.compile(
    r"\b(proposal|strategy|programme|program|roll-?out|migration|onboarding|offboarding|"
    r"campaign|offsite|off-site|conference|event|launch|process|business case|roadmap|"
    r"project plan|action plan|plan for|playbook|framework|curriculum|training plan|"
    r"transition|relocat\w*|move\b|reorgani[sz]ation|restructur\w*|overhaul|end[- ]to[- ]end|"
    r"tender|rfp|procurement|vendor selection|audit|due diligence|implementation|"
    r"timeline|milestones?|phases?|workstreams?|stakeholders?|owners?|who owns|"
    r"responsibilit\w+|step-by-step plan|checklist|pack\b|toolkit|dashboard)\b",
    re.IGNORECASE)
# Signs of one step.
_QUESTION = re.compile(
    r"^\s*(what|who|whom|whose|when|where|which|why|is|are|was|were|does|do|did|can|"
    r"could|should|would|will|has|have|how (much|many|long|often|do|does|can|should)|"
    r"quick question|any idea)\b", re.IGNORECASE)
_ONE_STEP = re.compile(
    r"^\s*(please\s+|pls\s+|can you\s+|could you\s+)?(translate|proofread|rephrase|reword|"
    r"rewrite|shorten|tidy|polish|fix|correct|convert|format|define|explain|spell|"
    r"capitali[sz]e|paraphrase|simplify|expand|turn this|make this|make it|summari[sz]e "
    r"(this|the following|that|it)|tl;?dr|check (the )?(grammar|spelling)|is this|give me "
    r"(a|an|one) (word|synonym|title|name|subject line|one-liner))\b", re.IGNORECASE)
_SMALL_TALK = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|cheers|ok|okay|great|perfect|nice|shorter|longer|"
    r"more formal|less formal|and in \w+|in \w+ please|again|same|good morning)\b",
    re.IGNORECASE)
# Several things asked, one after another.
_SEQUENCE = re.compile(r"\b(then|after that|afterwards|next|finally|once that|followed by|"
                       r"as well as|plus)\b|;|\b\d[.)]\s|\(\d\)|\b(first|second|third)ly?\b",
                       re.IGNORECASE)
# Where pasted material starts: a colon or a quote after a short ask.
_PASTE_MARK = re.compile(r"[:\"“]\s")


@dataclass(frozen=True, slots=True)
class Verdict:
    plan: bool
    score: float
    reason: str  # in words, for the user and the record of calls
    borderline: bool = False


def ask_of(prompt: str) -> str:
    """The request without material pasted with it: the words before a colon that is
    followed by much more text, or the short sentence after a long one."""
    text = " ".join(prompt.split())
    mark = _PASTE_MARK.search(text)
    if mark and mark.start() < 160 and len(text) - mark.end() > 2 * max(mark.start(), 60):
        return text[:mark.start()]
    if len(text) > 400:
        sentences = re.split(r"(?<=[.!?])\s+", text)
        last = sentences[-1]
        if len(last) < 160:
            return last
    return text


def classify(prompt: str) -> Verdict:
    """Whether Auto plans this request in the cloud, with its score and reason."""
    ask = ask_of(prompt)
    words = ask.split()
    tasks = {m.group(0).lower() for m in _TASK.finditer(ask)}
    scope = {m.group(0).lower() for m in _SCOPE.finditer(ask)}
    steps = len(_SEQUENCE.findall(ask)) + ask.count(",") // 2
    score = 0.9 * max(0, len(tasks) - 1) + 0.8 * min(len(scope), 2) + 0.5 * min(steps, 3)
    score += min(len(words), 60) / 60
    if _QUESTION.match(ask):
        score -= 1.5
    if _ONE_STEP.match(ask):
        score -= 2.0
    if _SMALL_TALK.match(ask) and len(words) < 8:
        score -= 3.0
    if len(ask) < len(" ".join(prompt.split())):
        score -= 0.5  # pasted material: usually one thing asked of it
    plan = score >= PLAN_AT
    borderline = abs(score - PLAN_AT) < BORDERLINE
    if plan:
        reason = "it asks for several pieces of work that build on each other" if len(
            tasks) > 1 else "it is open-ended work worth breaking down first"
    else:
        reason = "a single-step request runs locally"
    return Verdict(plan, round(score, 2), reason, borderline)
