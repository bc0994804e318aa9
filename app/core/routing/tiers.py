"""The three tiers work can run on, named once: the office's nodes and the user's own
GPUs execute; the cloud only plans."""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    OFFICE_NODE = "office_node"
    LOCAL_GPUS = "local_gpus"
    CLOUD = "cloud"

    @property
    def label(self) -> str:
        """The tier in the user's words."""
        return _LABELS[self]


_LABELS = {Tier.OFFICE_NODE: "Office node", Tier.LOCAL_GPUS: "Local GPUs",
           Tier.CLOUD: "Cloud planner"}


class Workflow(StrEnum):
    """What a model call was part of, as the record of calls and the Usage page group it."""

    CHAT = "chat"
    SUMMARY = "summary"
    DOCUMENT_QUESTION = "document_question"
    PLANNED_TASK = "planned_task"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()
