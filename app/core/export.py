"""A chat as a Markdown file: its prompts and answers in order, the document summaries in
it, and where each answer ran, so it can be kept, mailed or pasted elsewhere."""

from __future__ import annotations

import time
from pathlib import Path

from app.core import paths
from app.core.chat import footer
from app.core.errors import StorageFailed
from app.core.history import Chat, Document, Message

SPEAKERS = {"user": "You", "assistant": "Switchboard", "system": "Note"}
STATUS_WORDS = {"interrupted": "interrupted", "error": "failed", "cancelled": "stopped"}


def chat_markdown(chat: Chat, messages: list[Message], documents: list[Document]) -> str:
    """The chat as Markdown. Plans' steps are left out (their answer says what they
    found); summaries and answers about documents are in, as the chat shows them."""
    when = time.strftime("%d %B %Y, %H:%M", time.localtime(chat.created_at))
    lines = [f"# {chat.title}", "", f"*Started {when}*"]
    if chat.preset:
        lines.append(f"*Instructions: {chat.preset}*")
    if documents:
        names = ", ".join(d.name for d in documents)
        lines.append(f"*Documents: {names}*")
    for message in messages:
        if message.kind == "step" or not (message.content or message.error):
            continue
        title = SPEAKERS[message.role]
        if message.kind == "plan":
            title = "Plan"
        ended = STATUS_WORDS.get(message.status)
        lines += ["", f"## {title}" + (f" ({ended})" if ended else ""), "",
                  message.content.strip() or f"*{message.error}*"]
        about = footer(message) if message.role == "assistant" else ""
        if about:
            lines += ["", f"*{about}*"]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, text: str) -> None:
    """Write an export whole or not at all; StorageFailed in the user's words."""
    try:
        paths.atomic_write_text(path, text)
    except OSError as e:
        raise StorageFailed(f"{path}: {e.strerror or e}") from e
