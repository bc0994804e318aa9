"""Chats, their messages and their documents in SQLite (WAL), so they survive restarts,
crashes and kills.

An answer is saved while it streams; one left `streaming` by a killed process is marked
`interrupted` the next time the history is opened. A damaged database file is moved aside
on opening and a new, empty one started; `History.problems` says so, for the user.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.core.db import keep_aside, open_checked, translated
from app.core.errors import HistoryDamaged
from app.core.text import well_formed

log = logging.getLogger(__name__)

Role = Literal["user", "assistant", "system"]
MessageStatus = Literal["complete", "streaming", "interrupted", "error", "cancelled"]
DocumentStatus = Literal["reading", "ready", "error", "cancelled"]


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    chat_id: int
    role: Role
    content: str
    status: MessageStatus = "complete"
    created_at: float = 0.0  # seconds since the epoch, UTC
    model: str = ""
    error: str = ""  # the user-facing message of the fault that ended it, if any
    # Where an answer ran and what it took, for its footer (from the record of calls):
    ran_on: str = ""  # "ai-node-1", "ai-node-1, ai-node-2", "Local GPUs"
    route: str = ""  # "local" or "cloud plan"
    tokens: int = 0
    cost_micro_usd: int = 0
    # What part of a turn it is: "" (a prompt or an answer), "plan", "step" (a step of a
    # plan, run locally), "summary" or "document answer" (read from a document: local only).
    kind: str = ""
    title: str = ""  # a step's instruction
    data: str = ""  # JSON: a plan message's plan, a step's {"step": id}
    pasted: str = ""  # JSON list: material pasted into a prompt (local only)
    # Regenerated or edited: the earlier version this one replaces (kept, not shown).
    replaces: int | None = None


_MESSAGE_COLUMNS = ("id, chat_id, role, content, status, created_at, model, error, ran_on, "
                    "route, tokens, cost_micro_usd, kind, title, data, pasted, replaces")
# Added after the first release: a history from then gets them on opening.
_ADDED_MESSAGE_COLUMNS = {"ran_on": "TEXT NOT NULL DEFAULT ''",
                          "route": "TEXT NOT NULL DEFAULT ''",
                          "tokens": "INTEGER NOT NULL DEFAULT 0",
                          "cost_micro_usd": "INTEGER NOT NULL DEFAULT 0",
                          "kind": "TEXT NOT NULL DEFAULT ''",
                          "title": "TEXT NOT NULL DEFAULT ''",
                          "data": "TEXT NOT NULL DEFAULT ''",
                          "pasted": "TEXT NOT NULL DEFAULT ''"}


ChatKind = Literal["", "quick"]  # "quick": the one chat quick ask continues


@dataclass(frozen=True, slots=True)
class Chat:
    id: int
    title: str
    created_at: float
    updated_at: float
    kind: ChatKind = ""
    # The saved instructions (preset) the chat's answers follow; "" for none.
    preset: str = ""
    system_prompt: str = ""


_CHAT_COLUMNS = "id, title, created_at, updated_at, kind, preset, system_prompt"


@dataclass(frozen=True, slots=True)
class Preset:
    """Saved instructions ("system prompt") a chat can follow, by name."""

    name: str
    prompt: str


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A message that matched a search: its chat and the words around the match."""

    chat_id: int
    chat_title: str
    message_id: int
    snippet: str  # plain text; the matched words between « and »


@dataclass(frozen=True, slots=True)
class Document:
    """A file dropped into a chat; its pages' text is kept in `document_pages`, so
    questions about it never read the file again."""

    id: int
    chat_id: int
    name: str
    path: str
    kind: str = ""  # "pdf", "docx", …; empty until it is read
    pages: int = 0
    sha256: str = ""
    status: DocumentStatus = "reading"
    # The assistant message that holds (or will hold) its summary; None once deleted.
    summary_message_id: int | None = None
    created_at: float = 0.0  # seconds since the epoch, UTC
    error: str = ""  # the user-facing message of the fault that ended reading, if any


_DOCUMENT_COLUMNS = ("id, chat_id, name, path, kind, pages, sha256, status, "
                     "summary_message_id, created_at, error")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chats (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    kind TEXT NOT NULL DEFAULT '',
    preset TEXT NOT NULL DEFAULT '',
    system_prompt TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS presets (
    name TEXT PRIMARY KEY,
    prompt TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'complete',
    created_at REAL NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    ran_on TEXT NOT NULL DEFAULT '',
    route TEXT NOT NULL DEFAULT '',
    tokens INTEGER NOT NULL DEFAULT 0,
    cost_micro_usd INTEGER NOT NULL DEFAULT 0,
    kind TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '',
    pasted TEXT NOT NULL DEFAULT '',
    replaces INTEGER,
    superseded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_chat ON messages(chat_id, id);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT '',
    pages INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'reading'
        CHECK (status IN ('reading', 'ready', 'error', 'cancelled')),
    summary_message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
    created_at REAL NOT NULL,
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS documents_by_chat ON documents(chat_id, id);
CREATE TABLE IF NOT EXISTS document_pages (
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (document_id, number)
);
"""


def _add_message_columns(db: sqlite3.Connection) -> None:
    """A history saved before migrations were counted gets the columns added since (it
    may have some already)."""
    have = {str(row[1]) for row in db.execute("PRAGMA table_info(messages)")}
    for column, declaration in _ADDED_MESSAGE_COLUMNS.items():
        if column not in have:
            db.execute(f"ALTER TABLE messages ADD COLUMN {column} {declaration}")


def _add_versions_presets_and_search(db: sqlite3.Connection) -> None:
    """Message versions (regenerate, edit), the quick questions chat, presets, and a
    full-text index of the messages kept in step by triggers."""
    for table, column, declaration in (
            ("messages", "replaces", "INTEGER"),
            ("messages", "superseded", "INTEGER NOT NULL DEFAULT 0"),
            ("chats", "kind", "TEXT NOT NULL DEFAULT ''"),
            ("chats", "preset", "TEXT NOT NULL DEFAULT ''"),
            ("chats", "system_prompt", "TEXT NOT NULL DEFAULT ''")):
        have = {str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    # External content: the index holds no second copy of the text. Superseded
    # versions are kept but not found.
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS messages_text USING fts5("
               "content, content='messages', content_rowid='id', "
               "tokenize='unicode61 remove_diacritics 2')")
    db.execute("CREATE TRIGGER IF NOT EXISTS messages_text_add AFTER INSERT ON messages "
               "BEGIN INSERT INTO messages_text(rowid, content) VALUES (new.id, new.content); "
               "END")
    db.execute("CREATE TRIGGER IF NOT EXISTS messages_text_remove AFTER DELETE ON messages "
               "BEGIN INSERT INTO messages_text(messages_text, rowid, content) "
               "VALUES ('delete', old.id, old.content); END")
    db.execute("CREATE TRIGGER IF NOT EXISTS messages_text_change AFTER UPDATE OF content "
               "ON messages BEGIN INSERT INTO messages_text(messages_text, rowid, content) "
               "VALUES ('delete', old.id, old.content); "
               "INSERT INTO messages_text(rowid, content) VALUES (new.id, new.content); END")
    db.execute("INSERT INTO messages_text(messages_text) VALUES ('rebuild')")


_MIGRATIONS = (_add_message_columns, _add_versions_presets_and_search)


def _connect(path: Path) -> sqlite3.Connection:
    """An open, checked history at `path`; raises HistoryDamaged or StorageFailed."""
    return open_checked(path, what="chat history", damaged=HistoryDamaged, schema=_SCHEMA,
                        migrations=_MIGRATIONS)


def _storable(value: object) -> object:
    """`value`, a text made well-formed (`text.well_formed`): the answer around half a
    character must still be saved."""
    return well_formed(value) if isinstance(value, str) else value


def _translated() -> AbstractContextManager[None]:
    return translated("chat history", HistoryDamaged)


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
                aside = keep_aside(path)
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
            return db.execute(sql, tuple(_storable(a) for a in args))

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        with _translated():
            return self._db.execute(sql, args).fetchall()

    def _recover_interrupted(self) -> int:
        """Answers left streaming by a process that died are kept and marked interrupted;
        documents it was reading, cancelled."""
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE messages SET status='interrupted', error=? WHERE status='streaming'",
                ("Switchboard closed before the answer was complete.",),
            )
            db.execute("UPDATE documents SET status='cancelled', error=? WHERE status='reading'",
                       ("Switchboard closed before the document was read.",))
        return cur.rowcount

    def create_chat(self, title: str = "New chat", *, kind: ChatKind = "") -> Chat:
        now = time.time()
        cur = self._write("INSERT INTO chats (title, created_at, updated_at, kind) "
                          "VALUES (?, ?, ?, ?)", (title, now, now, kind))
        return Chat(int(cur.lastrowid or 0), title, now, now, kind)

    def quick_chat(self) -> Chat:
        """The chat quick ask continues: the newest "quick" one, made when there is none."""
        rows = self._read(f"SELECT {_CHAT_COLUMNS} FROM chats WHERE kind='quick' "
                          "ORDER BY id DESC LIMIT 1")
        return Chat(*rows[0]) if rows else self.create_chat("Quick questions", kind="quick")

    def rename_chat(self, chat_id: int, title: str) -> None:
        self._write("UPDATE chats SET title=? WHERE id=?", (title.strip() or "Untitled", chat_id))

    def delete_chat(self, chat_id: int) -> None:
        self._write("DELETE FROM chats WHERE id=?", (chat_id,))

    def chats(self) -> list[Chat]:
        rows = self._read(f"SELECT {_CHAT_COLUMNS} FROM chats "
                          "ORDER BY updated_at DESC, id DESC")
        return [Chat(*row) for row in rows]

    def chat(self, chat_id: int) -> Chat | None:
        rows = self._read(f"SELECT {_CHAT_COLUMNS} FROM chats WHERE id=?", (chat_id,))
        return Chat(*rows[0]) if rows else None

    def set_chat_preset(self, chat_id: int, preset: Preset | None) -> None:
        """Have the chat's next answers follow `preset` (None: no instructions). The
        instructions are copied, so editing the preset later leaves this chat as it is."""
        self._write("UPDATE chats SET preset=?, system_prompt=? WHERE id=?",
                    (preset.name if preset else "", preset.prompt if preset else "", chat_id))

    def presets(self) -> list[Preset]:
        return [Preset(*row) for row in
                self._read("SELECT name, prompt FROM presets ORDER BY name COLLATE NOCASE")]

    def save_preset(self, name: str, prompt: str) -> Preset:
        """Add a preset, or change the one of that name."""
        preset = Preset(name.strip(), prompt.strip())
        if not preset.name:
            raise ValueError("a preset needs a name")
        self._write("INSERT INTO presets (name, prompt) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET prompt=excluded.prompt",
                    (preset.name, preset.prompt))
        return preset

    def delete_preset(self, name: str) -> None:
        self._write("DELETE FROM presets WHERE name=?", (name,))

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages matching every word of `query` (a word's start matches too: "budg"
        finds "budget"), best first; versions replaced by a regenerate or edit are not
        searched. Quotes and operators in `query` are taken as plain words."""
        words = [w for w in query.replace('"', " ").split() if w]
        if not words:
            return []
        match = " ".join(f'"{w}"*' for w in words)
        rows = self._read(
            "SELECT m.chat_id, c.title, m.id, "
            "snippet(messages_text, 0, '«', '»', '…', 12) "
            "FROM messages_text JOIN messages m ON m.id = messages_text.rowid "
            "JOIN chats c ON c.id = m.chat_id "
            "WHERE messages_text MATCH ? AND m.superseded = 0 "
            "ORDER BY rank LIMIT ?", (match, limit))
        return [SearchHit(int(chat_id), str(title), int(message_id), str(snippet))
                for chat_id, title, message_id, snippet in rows]

    def messages(self, chat_id: int) -> list[Message]:
        """The chat as it reads now: versions replaced by a regenerate or an edit are
        kept (`versions`) but not listed."""
        rows = self._read(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id=? "
                          "AND superseded=0 ORDER BY id", (chat_id,))
        return [Message(*row) for row in rows]

    def message(self, message_id: int) -> Message | None:
        rows = self._read(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id=?", (message_id,))
        return Message(*rows[0]) if rows else None

    def supersede_from(self, message_id: int) -> list[int]:
        """Set aside `message_id` and every message after it in its chat, as earlier
        versions: kept, but no longer part of the chat (a regenerate or an edit follows).
        Returns the ids set aside."""
        with self._transaction() as db:
            row = db.execute("SELECT chat_id FROM messages WHERE id=?", (message_id,)).fetchone()
            if row is None:
                raise LookupError(f"no message {message_id}")
            ids = [int(r[0]) for r in db.execute(
                "SELECT id FROM messages WHERE chat_id=? AND id>=? AND superseded=0",
                (row[0], message_id))]
            db.execute("UPDATE messages SET superseded=1 WHERE chat_id=? AND id>=?",
                       (row[0], message_id))
        return ids

    def versions(self, message_id: int) -> list[Message]:
        """Every version of a message, oldest first: the ones it replaced, then itself."""
        chain: list[Message] = []
        current = self.message(message_id)
        while current is not None:
            chain.append(current)
            current = self.message(current.replaces) if current.replaces else None
        return chain[::-1]

    def add_message(self, chat_id: int, role: Role, content: str, *,
                    status: MessageStatus = "complete", model: str = "", kind: str = "",
                    title: str = "", data: str = "", pasted: str = "",
                    replaces: int | None = None) -> Message:
        now = time.time()
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO messages (chat_id, role, content, status, created_at, model, "
                "kind, title, data, pasted, replaces) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                tuple(map(_storable, (chat_id, role, content, status, now, model, kind, title,
                                      data, pasted, replaces))))
            db.execute("UPDATE chats SET updated_at=? WHERE id=?", (now, chat_id))
        return Message(int(cur.lastrowid or 0), chat_id, role, str(_storable(content)), status,
                       now, model,
                       kind=kind, title=title, data=data, pasted=pasted, replaces=replaces)

    def update_message(self, message_id: int, *, content: str | None = None,
                       status: MessageStatus | None = None, error: str | None = None,
                       model: str | None = None, ran_on: str | None = None,
                       route: str | None = None, tokens: int | None = None,
                       cost_micro_usd: int | None = None, data: str | None = None,
                       replaces: int | None = None) -> None:
        sets: list[str] = []
        args: list[object] = []
        for column, value in (("content", content), ("status", status), ("error", error),
                              ("model", model), ("ran_on", ran_on), ("route", route),
                              ("tokens", tokens), ("cost_micro_usd", cost_micro_usd),
                              ("data", data), ("replaces", replaces)):
            if value is not None:
                sets.append(f"{column}=?")
                args.append(value)
        if sets:
            self._write(f"UPDATE messages SET {', '.join(sets)} WHERE id=?", (*args, message_id))

    def delete_message(self, message_id: int) -> None:
        self._write("DELETE FROM messages WHERE id=?", (message_id,))

    # Documents ---------------------------------------------------------------------------

    def add_document(self, chat_id: int, name: str, path: str, *,
                     summary_message_id: int | None = None) -> Document:
        """A document being read into `chat_id` (status `reading`)."""
        now = time.time()
        cur = self._write(
            "INSERT INTO documents (chat_id, name, path, summary_message_id, created_at) "
            "VALUES (?, ?, ?, ?, ?)", (chat_id, name, path, summary_message_id, now))
        return Document(int(cur.lastrowid or 0), chat_id, name, path,
                        summary_message_id=summary_message_id, created_at=now)

    def update_document(self, document_id: int, *, kind: str | None = None,
                        sha256: str | None = None, status: DocumentStatus | None = None,
                        summary_message_id: int | None = None, error: str | None = None,
                        pages: Iterable[tuple[int, str]] | None = None) -> Document:
        """Change a document and return it as saved. `pages`, (number, text) pairs,
        replace its stored pages and set its page count, in the same transaction."""
        sets, args = [], []
        for column, value in (("kind", kind), ("sha256", sha256), ("status", status),
                              ("summary_message_id", summary_message_id), ("error", error)):
            if value is not None:
                sets.append(f"{column}=?")
                args.append(value)
        with self._transaction() as db:
            if pages is not None:
                rows = [(document_id, int(number), _storable(str(text))) for number, text in pages]
                db.execute("DELETE FROM document_pages WHERE document_id=?", (document_id,))
                db.executemany("INSERT INTO document_pages (document_id, number, text) "
                               "VALUES (?, ?, ?)", rows)
                sets.append("pages=?")
                args.append(len(rows))
            if sets:
                db.execute(f"UPDATE documents SET {', '.join(sets)} WHERE id=?",
                           (*args, document_id))
            row = db.execute(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE id=?",
                             (document_id,)).fetchone()
        if row is None:
            raise LookupError(f"no document {document_id}")
        return Document(*row)

    def documents(self, chat_id: int) -> list[Document]:
        rows = self._read(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE chat_id=? "
                          "ORDER BY id", (chat_id,))
        return [Document(*row) for row in rows]

    def document(self, document_id: int) -> Document | None:
        rows = self._read(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE id=?",
                          (document_id,))
        return Document(*rows[0]) if rows else None

    def local_only_texts(self) -> Iterator[str]:
        """Every stored text that must never reach the cloud: documents' pages and names,
        what was read from documents (summaries, answers about them, plan steps) and
        material pasted into prompts. Read once, in a worker thread, before the first
        cloud call."""
        for (text,) in self._read("SELECT text FROM document_pages"):
            yield str(text)
        for (name,) in self._read("SELECT name FROM documents"):
            yield str(name)
        for (text,) in self._read("SELECT content FROM messages WHERE kind IN "
                                  "('summary', 'document answer', 'step')"):
            yield str(text)
        for (pasted,) in self._read("SELECT pasted FROM messages WHERE pasted != ''"):
            yield from json.loads(pasted)

    def document_pages(self, document_id: int) -> list[tuple[int, str]]:
        """The document's pages as (number, text), in page order."""
        rows = self._read("SELECT number, text FROM document_pages WHERE document_id=? "
                          "ORDER BY number", (document_id,))
        return [(int(number), str(text)) for number, text in rows]
