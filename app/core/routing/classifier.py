"""Is a request worth planning? Auto mode's judgement, from the prompt's words alone.

Worth planning: work with several stages or deliverables that depend on each other, or
open-ended work that needs breaking down before it can be done well ("Organise the annual
offsite", "Roll out MFA to all staff"). Single-step: one deliverable in one pass (a
question, a rewrite, a translation, a summary or extraction of given text, one draft,
one formula or function), however long the text it comes with.

It reads only the request, not material pasted with it: in "Make this more polite:
<an email>" the request is "Make this more polite". A few signs are counted (how the
request starts, how many pieces of work it names, lists, sequences, the breadth of what
it touches) and weighed by a logistic model. The weights were fitted on the training part
of `tests/data/routing_prompts.tsv` (`tests/data/fit_router.py` refits them); a test
measures them on the held-out part. A false plan costs money and a missed one only
quality, so the line is drawn high.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_POLITE = r"^\s*(?:(?:please|pls|can you|could you|would you|i need you to|i'd like you to|" \
          r"i need to|we need to|help me(?: to)?|hey|hi)[,\s]+)*"
# How single-step requests start: a question, or one piece of writing or reading.
_QUESTION = re.compile(
    _POLITE + r"(what|what's|whats|who|whom|whose|when|where|which|why|is|are|was|were|"
    r"does|do|did|can|could|should|would|will|has|have|how|any idea|quick question)\b",
    re.IGNORECASE)
_ONE_PIECE = re.compile(
    _POLITE + r"(write|draft|summari[sz]e|translate|proofread|rewrite|rephrase|reword|"
    r"shorten|tidy|polish|explain|define|give me|suggest|tell me|list|pull out|extract|"
    r"convert|format|calculate|work out how much|abbreviate|read|make (it|this|that)|try|"
    r"fix|correct|check (this|the|my|that)|add|turn this|simplify|expand|spell|"
    r"capitali[sz]e|paraphrase|reply|respond to this|answer|name|title|sort this|count|"
    r"classify|categori[sz]e|tag|score this|rate this|find the|identify the|highlight)\b",
    re.IGNORECASE)
# How open-ended work starts: something to organise, change or find out.
_PROJECT = re.compile(
    _POLITE + r"(organi[sz]e|set up|roll out|introduce|implement|upgrade|replace|migrate|"
    r"move|run|restructure|reorgani[sz]e|harmoni[sz]e|merge|prepare|get|put together|"
    r"launch|plan|build|establish|create|design|develop|overhaul|consolidate|"
    r"standardi[sz]e|transition|sort out|arrange|coordinate|deploy|review|assess|"
    r"investigate|find out|work out|figure out|lay out|handle|collate|split|set|deliver|"
    r"manage|compare|evaluate|audit|reduce|cut|take|improve|go through|look at|map|"
    r"select|choose|decide|negotiate|recruit|hire|onboard|train|reconcile|clean up|"
    r"automate|bring|switch|retire|decommission|centrali[sz]e|outsource|streamline)\b",
    re.IGNORECASE)
_TASK = re.compile(
    r"\b(draft|write|prepare|create|build|compile|analy[sz]e|compare|evaluate|review|"
    r"identify|flag|total|calculate|work out|figure out|propose|recommend|schedule|plan|"
    r"organi[sz]e|coordinate|design|develop|research|investigate|assess|estimate|outline|"
    r"map|set up|roll out|migrate|update|notify|collect|gather|reconcile|produce|rank|"
    r"score|document|define|decide|choose|select|shortlist|arrange|book|cost|forecast|"
    r"benchmark|audit|survey|train|test|implement|consolidate|launch|track|list|split|"
    r"summari[sz]e|extract|check|send|present|report|suggest|find|pull|assign|chase|"
    r"spot|set out|lay out|tell|agree|brief|run|get|put|move|replace|introduce)\b",
    re.IGNORECASE)
_SCOPE = re.compile(
    r"\b(proposal|strategy|programme|program|roll-?out|migration|onboarding|offboarding|"
    r"campaign|offsite|off-site|conference|event|launch|process|business case|roadmap|"
    r"action plan|playbook|framework|curriculum|transition|relocat\w*|reorgani[sz]ation|"
    r"restructur\w*|overhaul|tender|rfp|procurement|vendor selection|audit|implementation|"
    r"timeline|milestones?|phases?|phased|workstreams?|stakeholders?|who owns|owners?|"
    r"responsibilit\w+|checklist|pack|toolkit|dashboard|system|scheme|policy|calendar|"
    r"workshop|kickoff|kick-off|induction|handover|consultation|comms|communications|"
    r"logistics|rota|agenda|budget|options|recommendation|recommend|risks?|scorecard|"
    r"tests|documentation|training|templates|rules)\b", re.IGNORECASE)
_BREADTH = re.compile(r"\b(all|every|each|whole|across|everyone|everybody|entire|"
                      r"department|departments|teams|staff|suppliers|customers|offices?|"
                      r"sites?)\b", re.IGNORECASE)
_WHEN = re.compile(r"\b(this|next) (quarter|month|year|week)\b|\bby (jan|feb|mar|apr|may|"
                   r"jun|jul|aug|sep|oct|nov|dec)\w*\b|\bbefore (the|their|our)\b|"
                   r"\bfrom scratch\b|\bend[- ]to[- ]end\b", re.IGNORECASE)
_SEQUENCE = re.compile(r"\b(then|after that|afterwards|finally|once|followed by|and also|"
                       r"as well as)\b|;|\b\d[.)]\s", re.IGNORECASE)
_SMALL_TALK = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|thx|cheers|ok|okay|great|perfect|nice|lol|cool|"
    r"shorter|longer|more|less|again|same|good|and in \w+|in \w+ please|try again|now)\b",
    re.IGNORECASE)
_QUOTED = re.compile(r"[\"“][^\"”]{20,}[\"”]")
_PASTE_MARK = re.compile(r"[:\"“]\s")

# Fitted on the training part of tests/data/routing_prompts.tsv by tests/data/fit_router.py.
WEIGHTS: dict[str, float] = {
    "bias": -2.62, "question": -3.62, "one_piece": -2.73, "project": 3.76, "tasks": 1.93,
    "commas": 1.47, "colon_list": -1.60, "sequence": -0.13, "scope": 2.50, "breadth": 1.60,
    "when": 1.41, "words": 1.28, "pasted": -1.55, "small_talk": -1.21, "mark": -1.58,
}
PLAN_AT = 0.38  # the probability at and above which a request is planned
BORDERLINE = 0.15  # this close to the line, a local model's opinion may be asked


@dataclass(frozen=True, slots=True)
class Verdict:
    plan: bool
    score: float  # the probability that it is worth planning
    reason: str  # in words, for the user and the record of calls
    borderline: bool = False


def ask_of(prompt: str) -> str:
    """The request without material pasted with it: quoted passages dropped, and the
    words before a colon followed by much more text, or the short sentence after a long
    one."""
    text = " ".join(prompt.split())
    mark = _PASTE_MARK.search(text)
    if mark and mark.start() < 160 and len(text) - mark.end() > 2 * max(mark.start(), 60):
        return text[:mark.start()]
    text = _QUOTED.sub('"…"', text)
    if len(text) > 400:
        last = re.split(r"(?<=[.!?])\s+", text)[-1]
        if len(last) < 160:
            return last
    return text


def features(prompt: str) -> dict[str, float]:
    """The signs the model weighs, each a number."""
    whole = " ".join(prompt.split())
    ask = ask_of(prompt)
    words = len(ask.split())
    colon = ask.find(":")
    after = ask[colon + 1:] if colon >= 0 else ""
    return {
        "bias": 1.0,
        "question": float(bool(_QUESTION.match(ask)) or ask.rstrip().endswith("?")),
        "one_piece": float(bool(_ONE_PIECE.match(ask))),
        "project": float(bool(_PROJECT.match(ask))),
        "tasks": min(len({m.group(0).lower() for m in _TASK.finditer(ask)}), 5) / 2,
        "commas": min(ask.count(","), 6) / 2,
        "colon_list": float(colon > 0 and after.count(",") >= 1 and len(after) < 200),
        "sequence": min(len(_SEQUENCE.findall(ask)), 3),
        "scope": min(len({m.group(0).lower() for m in _SCOPE.finditer(ask)}), 4) / 2,
        "breadth": min(len(_BREADTH.findall(ask)), 3) / 2,
        "when": float(bool(_WHEN.search(ask))),
        "words": math.log1p(words) / math.log(40),
        "pasted": float(len(ask) + 20 < len(whole)),
        "small_talk": float(bool(_SMALL_TALK.match(ask)) and words < 10),
        "mark": float(bool(_QUOTED.search(whole))),
    }


def classify(prompt: str) -> Verdict:
    """Whether Auto plans this request in the cloud, how sure it is, and why."""
    found = features(prompt)
    z = sum(WEIGHTS[name] * value for name, value in found.items())
    probability = 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))
    plan = probability >= PLAN_AT
    if plan:
        reason = ("it asks for several pieces of work that build on each other"
                  if found["tasks"] >= 1 else "it is open-ended work worth breaking down first")
    else:
        reason = "a single-step request runs locally"
    return Verdict(plan, round(probability, 3), reason,
                   abs(probability - PLAN_AT) < BORDERLINE)
