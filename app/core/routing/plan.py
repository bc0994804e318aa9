"""A plan: multi-step work broken into steps that local models carry out.

The planner (the cloud, or the local model when the cloud can't or shouldn't be asked)
answers with JSON in this schema (`SCHEMA`, sent as OpenRouter's structured output where
the planner model supports it)::

    {
      "goal": "what the user wants, in one sentence",
      "steps": [                                  # 1 to 8 steps, in an order that works
        {
          "id": "s1",                             # letters, digits, - or _; unique
          "instruction": "what to do in this step",
          "inputs": ["doc:2", "s1"],              # documents (doc:<id>, as the brief
                                                  # lists them) and earlier steps it needs
          "expected_output": "what the step hands on"
        }
      ],
      "assemble": "how to put the steps' results together into the answer"
    }

`parse_plan` checks a reply against it and says what is wrong in words; `repair` makes
one attempt at a reply that is almost right (wrapped in prose or a code fence, a trailing
comma, cut off after its last complete step).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

MAX_STEPS = 8
MAX_TEXT = 2000  # characters of one instruction, expected output or assembly note
_ID = re.compile(r"[A-Za-z0-9_-]{1,20}")
_DOC = re.compile(r"doc:(\d+)")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "goal": {"type": "string"},
        "steps": {
            "type": "array", "minItems": 1, "maxItems": MAX_STEPS,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "instruction": {"type": "string"},
                    "inputs": {"type": "array", "items": {"type": "string"}},
                    "expected_output": {"type": "string"},
                },
                "required": ["id", "instruction", "inputs", "expected_output"],
                "additionalProperties": False,
            },
        },
        "assemble": {"type": "string"},
    },
    "required": ["goal", "steps", "assemble"],
    "additionalProperties": False,
}


def _bounded(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with lengths and id shapes that a local model's grammar enforces (a
    small model then can't run on until its answer is cut off mid-string)."""
    local = json.loads(json.dumps(schema))
    props = local["properties"]
    props["goal"]["maxLength"] = 200
    props["goal"]["minLength"] = 1
    props["assemble"]["maxLength"] = 300
    props["steps"]["maxItems"] = 6
    step = props["steps"]["items"]["properties"]
    step["id"]["pattern"] = "^s[1-8]$"
    step["instruction"]["maxLength"] = 300
    step["instruction"]["minLength"] = 1
    step["expected_output"]["maxLength"] = 200
    step["inputs"]["items"]["pattern"] = "^(s[1-8]|doc:[0-9]{1,9})$"
    step["inputs"]["maxItems"] = 6
    return local


# What the local model is held to through its grammar (llama.cpp enforces patterns and
# lengths; not every cloud provider's strict mode accepts them).
LOCAL_SCHEMA = _bounded(SCHEMA)


class PlanInvalid(ValueError):
    """A reply that is not a plan; the words say why."""


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    instruction: str
    inputs: tuple[str, ...] = ()  # "doc:<id>" and earlier steps' ids
    expected_output: str = ""

    @property
    def documents(self) -> tuple[int, ...]:
        return tuple(int(m.group(1)) for i in self.inputs if (m := _DOC.fullmatch(i)))

    @property
    def after(self) -> tuple[str, ...]:
        """The steps this one needs."""
        return tuple(i for i in self.inputs if not _DOC.fullmatch(i))


@dataclass(frozen=True, slots=True)
class Plan:
    goal: str
    steps: tuple[Step, ...]
    assemble: str
    # Where it was made and why, in words ("in the cloud by anthropic/claude-sonnet-4.5")
    made: str = field(default="", compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"goal": self.goal, "assemble": self.assemble,
                "steps": [{"id": s.id, "instruction": s.instruction, "inputs": list(s.inputs),
                           "expected_output": s.expected_output} for s in self.steps]}

    def as_markdown(self) -> str:
        """The plan as the chat shows it."""
        lines = [f"**Plan:** {self.goal}", ""]
        lines += [f"{n}. {s.instruction}" for n, s in enumerate(self.steps, 1)]
        return "\n".join(lines)

    def without(self, step_id: str) -> Plan:
        """The plan with a step deleted, and its id taken out of later steps' inputs."""
        steps = tuple(replace(s, inputs=tuple(i for i in s.inputs if i != step_id))
                      for s in self.steps if s.id != step_id)
        return replace(self, steps=steps)


def parse_plan(reply: str | dict[str, Any], documents: frozenset[int] | set[int] = frozenset()
               ) -> Plan:
    """The plan in `reply`, checked: PlanInvalid says what is wrong. `documents` are the
    ids the brief offered; a step may name only those and earlier steps."""
    doc = json.loads(reply) if isinstance(reply, str) else reply
    if not isinstance(doc, dict):
        raise PlanInvalid("the reply is not a JSON object")
    unknown = set(doc) - {"goal", "steps", "assemble"}
    if unknown:
        raise PlanInvalid(f"unknown keys {sorted(unknown)}")
    goal, assemble = _text(doc, "goal"), _text(doc, "assemble", empty_ok=True)
    steps_doc = doc.get("steps")
    if not isinstance(steps_doc, list) or not 1 <= len(steps_doc) <= MAX_STEPS:
        raise PlanInvalid(f"steps must be a list of 1 to {MAX_STEPS} steps")
    steps: list[Step] = []
    seen: set[str] = set()
    for n, item in enumerate(steps_doc, 1):
        if not isinstance(item, dict) or set(item) - {"id", "instruction", "inputs",
                                                      "expected_output"}:
            raise PlanInvalid(f"step {n} is not an object with the schema's keys")
        step_id = item.get("id")
        if not isinstance(step_id, str) or not _ID.fullmatch(step_id) or step_id in seen:
            raise PlanInvalid(f"step {n} has no id of its own (letters, digits, - or _)")
        inputs = item.get("inputs", [])
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise PlanInvalid(f"step {step_id}: inputs must be a list of ids")
        for name in inputs:
            match = _DOC.fullmatch(name)
            if match and int(match.group(1)) not in documents:
                raise PlanInvalid(f"step {step_id} reads {name}, which the brief did not offer")
            if not match and name not in seen:
                raise PlanInvalid(f"step {step_id} needs {name!r}, which is not an earlier "
                                  "step")
        steps.append(Step(step_id, _text(item, "instruction"), tuple(dict.fromkeys(inputs)),
                          _text(item, "expected_output", empty_ok=True)))
        seen.add(step_id)
    return Plan(goal, tuple(steps), assemble or "Combine the steps' results into one answer.")


def _text(doc: dict[str, Any], key: str, *, empty_ok: bool = False) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str) or len(value) > MAX_TEXT or not (value.strip() or empty_ok):
        raise PlanInvalid(f"{key} must be text of at most {MAX_TEXT} characters")
    return value.strip()


def repair(reply: str, documents: frozenset[int] | set[int] = frozenset()) -> str:
    """One attempt at a reply that is almost a plan: the outermost JSON object out of
    prose or a code fence, trailing commas dropped, a reply cut off mid-step closed after
    its last complete step, and inputs that name no earlier step or offered document
    dropped. Returns the text to parse again."""
    text = _json_of(reply)
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    if isinstance(doc, dict) and isinstance(doc.get("steps"), list):
        seen: set[str] = set()
        for n, step in enumerate(doc["steps"], 1):
            if isinstance(step, dict) and step.get("id") in seen:  # a second "s2"
                step["id"] = next(f"s{k}" for k in range(n, n + 100) if f"s{k}" not in seen)
            if isinstance(step, dict) and isinstance(step.get("inputs"), list):
                step["inputs"] = [i for i in step["inputs"] if i in seen or (
                    isinstance(i, str) and (m := _DOC.fullmatch(i))
                    and int(m.group(1)) in documents)]
            if isinstance(step, dict) and isinstance(step.get("id"), str):
                seen.add(step["id"])
        return json.dumps(doc)
    return text


def _json_of(reply: str) -> str:
    """The JSON object in a reply: out of prose, trailing commas dropped, closed after
    its last complete step when it was cut off."""
    start = reply.find("{")
    if start < 0:
        return reply
    text = reply[start:]
    end = text.rfind("}")
    try:
        json.loads(text[:end + 1])
        return text[:end + 1]
    except ValueError:
        pass
    text = re.sub(r",\s*([}\]])", r"\1", text[:end + 1] if end >= 0 else text)
    try:
        json.loads(text)
        return text
    except ValueError:
        pass
    # Cut off: keep the steps that closed, then close the list and the object.
    last = text.rfind("}")
    while last > 0:
        candidate = text[:last + 1] + "]"
        if '"assemble"' not in candidate:
            candidate += ', "assemble": ""'
        candidate += "}"
        try:
            json.loads(candidate)
            return candidate
        except ValueError:
            last = text.rfind("}", 0, last)
    return text


def single_step(request: str) -> Plan:
    """The plan of last resort: the request as one step."""
    return Plan(request[:200], (Step("s1", "Answer the request.", (), "The answer"),),
                "Give the step's result as the answer.", made="as one step")
