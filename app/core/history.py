"""Chats and their messages in SQLite (WAL), so they survive restarts, crashes and kills.

An answer is saved while it streams; one left `streaming` by a killed process is marked
`interrupted` the next time the history is opened. A damaged database file is moved aside
on opening and a new, empty one started; `History.problems` says so, for the user.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.core.errors import HistoryDamaged, StorageFailed

log = logging.getLogger(__name__)

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


# SQLite's result codes for a damaged file: "database disk image is malformed" and
# "file is not a database". Anything else ("database or disk is full", "disk I/O error",
# a lock held too long) is a problem with the disk, not with the file.
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _fault(e: sqlite3.DatabaseError) -> StorageFailed:
    """The user-facing error for a failure of the database, damaged file or disk."""
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _DAMAGED:  # extended codes keep the primary in 8 bits
        return HistoryDamaged(f"chat history: {e}")
    return StorageFailed(f"chat history: {e}")


@contextmanager
def _translated() -> Iterator[None]:
    """Raise sqlite3's storage failures as HistoryDamaged/StorageFailed.

    A constraint or misuse (IntegrityError, ProgrammingError) is a bug, not a disk
    problem, and goes through as it is.
    """
    try:
        yield
    except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
        raise
    except sqlite3.DatabaseError as e:
        raise _fault(e) from e


def _connect(path: Path) -> sqlite3.Connection:
    """An open, checked history at `path`; raises HistoryDamaged or StorageFailed."""
    with _translated():  # "unable to open database file": a missing or read-only folder
        # isolation_level=None: we open transactions ourselves, explicitly.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    try:
        with _translated():
            # Checked before anything writes (journal_mode may), so that a damaged file is
            # kept aside exactly as it was found.
            result = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
            if result != ["ok"]:
                raise HistoryDamaged(f"chat history: {'; '.join(map(str, result[:3]))}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable on commit
            db.executescript(_SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


def _keep_aside(path: Path) -> Path:
    """Move a damaged database and its -wal/-shm to `<name>.damaged-<UTC time>`.

    The -wal goes first: a fresh database opened beside a stale -wal would replay it. The
    moved files keep SQLite's naming, so the aside copy still opens with its WAL.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    for suffix in ("-wal", "-shm", ""):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.replace(aside.with_name(aside.name + suffix))
    return aside


class History:
    """The chat store. Not thread-safe: the core uses it from its one asyncio thread.

    A damaged file raises HistoryDamaged and a full or failing disk StorageFailed, never a
    raw sqlite3 error; only a misuse (a constraint broken, a closed history) does, as the
    bug it is. `problems` lists, in the user's words, what opening found and fixed (a
    damaged file moved aside).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        try:
            self._db = _connect(path)
        except HistoryDamaged as damaged:
            log.error("chat history %s is damaged: %s", path, damaged.detail)
            try:
                aside = _keep_aside(path)
            except OSError as e:
                raise HistoryDamaged(f"{path} could not be moved aside: {e.strerror or e}"
                                     ) from damaged
            kept = HistoryDamaged(damaged.detail, kept_as=str(aside))
            self.problems.append(f"{kept.title} {kept.hint}")
            self._db = _connect(path)
        self.recovered = self._recover_interrupted()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN … COMMIT, or ROLLBACK if the block raises.

        On "database or disk is full" or "disk I/O error" the transaction is rolled back,
        so what was saved before is intact.
        """
        with _translated(), self._db:
            self._db.execute("BEGIN")
            yield self._db

    def _write(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        with self._transaction() as db:
            return db.execute(sql, args)

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        with _translated():
            return self._db.execute(sql, args).fetchall()

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
        rows = self._read(
            "SELECT id, title, created_at, updated_at FROM chats ORDER BY updated_at DESC, id DESC")
        return [Chat(*row) for row in rows]

    def chat(self, chat_id: int) -> Chat | None:
        rows = self._read("SELECT id, title, created_at, updated_at FROM chats WHERE id=?",
                          (chat_id,))
        return Chat(*rows[0]) if rows else None

    def messages(self, chat_id: int) -> list[Message]:
        rows = self._read(
            "SELECT id, chat_id, role, content, status, created_at, model, error "
            "FROM messages WHERE chat_id=? ORDER BY id", (chat_id,))
        return [Message(*row) for row in rows]

    def add_message(self, chat_id: int, role: Role, content: str, *,
                    status: Status = "complete", model: str = "") -> Message:
        now = time.time()
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO messages (chat_id, role, content, status, created_at, model) "
                "VALUES (?, ?, ?, ?, ?, ?)", (chat_id, role, content, status, now, model))
            db.execute("UPDATE chats SET updated_at=? WHERE id=?", (now, chat_id))
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
