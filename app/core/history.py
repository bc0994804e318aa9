"""Chats and their messages in SQLite (WAL), so they survive restarts, crashes and kills.

An answer is saved while it streams; one left `streaming` by a killed process is marked
`interrupted` the next time the history is opened.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.core.errors import StorageFailed

Role = Literal["user", "assistant", "system"]
Status = Literal["complete", "streaming", "interrupted", "error", "cancelled"]


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    chat_id: int
    role: Role
    content: str
    status: Status = "complete"
    created_at: float = 0.0  # seconds since the epoch, UTC
    model: str = ""
    error: str = ""  # the user-facing message of the fault that ended it, if any


@dataclass(frozen=True, slots=True)
class Chat:
    id: int
    title: str
    created_at: float
    updated_at: float


_SCHEMA = """
CREATE TABLE IF NOT EXISTS chats (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'complete',
    created_at REAL NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS messages_by_chat ON messages(chat_id, id);
"""


class History:
    """The chat store. Not thread-safe: the core uses it from its one asyncio thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # isolation_level=None: we open transactions ourselves, explicitly.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                       timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable on commit
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise StorageFailed(f"chat history: {e}") from e
        self.recovered = self._recover_interrupted()

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            with self._db:  # BEGIN … COMMIT, or ROLLBACK on error
                self._db.execute("BEGIN")
                return self._db.execute(sql, args)
        except sqlite3.OperationalError as e:
            # "database or disk is full", "disk I/O error": the transaction was rolled back,
            # so what was saved before is intact.
            raise StorageFailed(f"chat history: {e}") from e

    def _recover_interrupted(self) -> int:
        """Answers left streaming by a process that died are kept and marked interrupted."""
        cur = self._write(
            "UPDATE messages SET status='interrupted', error=? WHERE status='streaming'",
            ("Switchboard closed before the answer was complete.",),
        )
        return cur.rowcount

    def create_chat(self, title: str = "New chat") -> Chat:
        now = time.time()
        cur = self._write("INSERT INTO chats (title, created_at, updated_at) VALUES (?, ?, ?)",
                          (title, now, now))
        return Chat(int(cur.lastrowid or 0), title, now, now)

    def rename_chat(self, chat_id: int, title: str) -> None:
        self._write("UPDATE chats SET title=? WHERE id=?", (title.strip() or "Untitled", chat_id))

    def delete_chat(self, chat_id: int) -> None:
        self._write("DELETE FROM chats WHERE id=?", (chat_id,))

    def chats(self) -> list[Chat]:
        rows = self._db.execute(
            "SELECT id, title, created_at, updated_at FROM chats ORDER BY updated_at DESC, id DESC"
        ).fetchall()
        return [Chat(*row) for row in rows]

    def chat(self, chat_id: int) -> Chat | None:
        row = self._db.execute("SELECT id, title, created_at, updated_at FROM chats WHERE id=?",
                               (chat_id,)).fetchone()
        return Chat(*row) if row else None

    def messages(self, chat_id: int) -> list[Message]:
        rows = self._db.execute(
            "SELECT id, chat_id, role, content, status, created_at, model, error "
            "FROM messages WHERE chat_id=? ORDER BY id", (chat_id,)).fetchall()
        return [Message(*row) for row in rows]

    def add_message(self, chat_id: int, role: Role, content: str, *,
                    status: Status = "complete", model: str = "") -> Message:
        now = time.time()
        try:
            with self._db:
                self._db.execute("BEGIN")
                cur = self._db.execute(
                    "INSERT INTO messages (chat_id, role, content, status, created_at, model) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (chat_id, role, content, status, now, model))
                self._db.execute("UPDATE chats SET updated_at=? WHERE id=?", (now, chat_id))
        except sqlite3.OperationalError as e:
            raise StorageFailed(f"chat history: {e}") from e
        return Message(int(cur.lastrowid or 0), chat_id, role, content, status, now, model)

    def update_message(self, message_id: int, *, content: str | None = None,
                       status: Status | None = None, error: str | None = None,
                       model: str | None = None) -> None:
        sets, args = [], []
        for column, value in (("content", content), ("status", status), ("error", error),
                              ("model", model)):
            if value is not None:
                sets.append(f"{column}=?")
                args.append(value)
        if sets:
            self._write(f"UPDATE messages SET {', '.join(sets)} WHERE id=?", (*args, message_id))
