"""Chats and messages survive restarts; an answer cut off by a kill is kept, marked."""

import contextlib
import os
import sqlite3
from pathlib import Path

import pytest

from app.core.db import keep_aside
from app.core.errors import HistoryDamaged, StorageFailed
from app.core.history import History


def test_chats_and_messages_survive_reopening(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    history = History(db)
    chat = history.create_chat("Budget questions")
    history.add_message(chat.id, "user", "What is 2+2?")
    answer = history.add_message(chat.id, "assistant", "", status="streaming")
    history.update_message(answer.id, content="4", status="complete", model="m")
    history.close()

    again = History(db)
    assert again.recovered == 0
    assert [c.title for c in again.chats()] == ["Budget questions"]
    messages = again.messages(chat.id)
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", "What is 2+2?", "complete"), ("assistant", "4", "complete")]
    assert messages[1].model == "m"
    assert again.path.with_name("h.sqlite3-wal").exists()  # WAL mode


def test_an_answer_left_streaming_by_a_dead_process_is_marked_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    history = History(db)
    chat = history.create_chat()
    answer = history.add_message(chat.id, "assistant", "", status="streaming")
    history.update_message(answer.id, content="half an ans")
    # No close(): the process "dies" here.
    again = History(db)
    assert again.recovered == 1
    [kept] = again.messages(chat.id)
    assert (kept.content, kept.status) == ("half an ans", "interrupted")
    assert "closed before" in kept.error


def test_rename_and_delete(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3")
    first, second = history.create_chat("one"), history.create_chat("two")
    history.add_message(first.id, "user", "hello")
    history.rename_chat(first.id, "  renamed  ")
    assert history.chat(first.id).title == "renamed"  # type: ignore[union-attr]
    history.delete_chat(first.id)
    assert [c.id for c in history.chats()] == [second.id]
    assert history.messages(first.id) == []  # messages went with their chat


def test_a_full_disk_raises_a_clear_error_and_keeps_what_was_saved(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3")
    chat = history.create_chat()
    history.add_message(chat.id, "user", "kept")
    # SQLite's own way to make the disk "full" for this database.
    page_count = history._db.execute("PRAGMA page_count").fetchone()[0]
    history._db.execute(f"PRAGMA max_page_count={page_count}")
    with pytest.raises(StorageFailed) as caught:
        history.add_message(chat.id, "user", "x" * 200_000)
    assert "disk" in caught.value.user_text()
    assert type(caught.value) is StorageFailed  # a full disk is not a damaged file
    assert history.problems == []
    assert [m.content for m in history.messages(chat.id)] == ["kept"]


def _history_with_a_damaged_page(db: Path) -> int:
    """A closed history of a few dozen pages, one of them in the middle overwritten."""
    history = History(db)
    chat = history.create_chat("long")
    for i in range(200):
        history.add_message(chat.id, "user", f"message {i} " + "x" * 500)
    history.close()
    page = 4096  # SQLite's default page size
    middle = (db.stat().st_size // page // 2) * page
    with open(db, "r+b") as f:
        f.seek(middle)
        f.write(b"garbage!" * (page // 8))  # 'g' is no b-tree page type
    return chat.id


def _kept_aside(db: Path) -> list[Path]:
    return sorted(db.parent.glob(f"{db.name}.damaged-*"))


def test_a_file_that_is_not_a_database_is_kept_aside_and_a_new_history_starts(
        tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    junk = os.urandom(64 * 1024)
    db.write_bytes(junk)

    history = History(db)

    [aside] = _kept_aside(db)
    assert aside.name.startswith("history.sqlite3.damaged-") and aside.name.endswith("Z")
    assert aside.read_bytes() == junk
    assert history.chats() == [] and history.recovered == 0
    [problem] = history.problems
    assert "damaged" in problem and str(aside) in problem and "disk space" not in problem
    chat = history.create_chat("after")
    history.close()
    again = History(db)
    assert [c.title for c in again.chats()] == [chat.title]
    assert again.problems == [] and len(_kept_aside(db)) == 1  # the new file is fine
    again.close()


def test_a_database_with_a_damaged_page_is_kept_aside_on_opening(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    _history_with_a_damaged_page(db)
    damaged = db.read_bytes()

    history = History(db)

    [aside] = _kept_aside(db)
    assert aside.read_bytes() == damaged
    assert history.chats() == []
    assert len(history.problems) == 1 and "damaged" in history.problems[0]
    history.close()


def test_a_damaged_file_goes_aside_with_its_wal_and_shm(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").write_bytes(suffix.encode() or b"main")
    aside = keep_aside(db)
    # Left behind, a -wal would be replayed into the new database and damage it too.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        aside.name, f"{aside.name}-shm", f"{aside.name}-wal"]
    assert Path(f"{aside}-wal").read_bytes() == b"-wal"  # still paired the way SQLite pairs
    db.write_bytes(b"damaged again")  # in the same second, most likely
    assert keep_aside(db) != aside
    assert aside.read_bytes() == b"main"


def test_a_page_damaged_while_open_raises_a_clear_error_on_read(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    chat_id = _history_with_a_damaged_page(db)
    history = History(tmp_path / "other.sqlite3")
    history._db.close()
    # As if the page went bad after History checked the file on opening.
    history._db = sqlite3.connect(db, isolation_level=None)

    with pytest.raises(HistoryDamaged) as caught:
        history.messages(chat_id)
    assert caught.value.title == "Your chat history file was damaged."
    assert "malformed" in caught.value.detail
    assert "disk space" not in caught.value.hint
    history.close()


def test_an_unwritable_place_is_a_storage_failure_and_nothing_is_moved(tmp_path: Path) -> None:
    with pytest.raises(StorageFailed) as caught:
        History(tmp_path / "no such folder" / "history.sqlite3")
    assert type(caught.value) is StorageFailed
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_file_that_cannot_be_moved_aside_raises_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "history.sqlite3"
    db.write_bytes(b"not a database" * 100)

    def refuse(self: Path, target: Path) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(HistoryDamaged) as caught:
        History(db)
    assert "could not be moved aside" in caught.value.detail
    assert db.read_bytes() == b"not a database" * 100


def test_half_a_character_from_a_model_is_saved_as_a_replacement_mark(tmp_path: Path) -> None:
    # A model's JSON escape "\udcf9" decodes to a lone surrogate, which UTF-8 can't hold.
    history = History(tmp_path / "history.db")
    chat = history.create_chat()
    message = history.add_message(chat.id, "assistant", "C7d\udcf9 and \ud83d\ude00")
    history.update_message(message.id, content="goal: C7d\udcf9")
    history.close()

    again = History(tmp_path / "history.db")
    [saved] = again.messages(chat.id)
    assert saved.content == "goal: C7d\ufffd"
    assert again.add_message(chat.id, "user", "\ud800").content == "\ufffd"
    again.close()


def test_a_history_from_before_migrations_were_counted_gets_the_new_columns(
        tmp_path: Path) -> None:
    # The first release's messages table: none of the columns added since.
    db = tmp_path / "h.sqlite3"
    with contextlib.closing(sqlite3.connect(db)) as old:
        old.executescript("""
            CREATE TABLE chats (id INTEGER PRIMARY KEY, title TEXT NOT NULL,
                                created_at REAL NOT NULL, updated_at REAL NOT NULL);
            CREATE TABLE messages (id INTEGER PRIMARY KEY, chat_id INTEGER NOT NULL
                REFERENCES chats(id) ON DELETE CASCADE, role TEXT NOT NULL,
                content TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL,
                model TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '');
            INSERT INTO chats VALUES (1, 'Old chat', 1.0, 1.0);
            INSERT INTO messages (chat_id, role, content, status, created_at)
                VALUES (1, 'user', 'Kept from the first release', 'complete', 1.0);
        """)
    history = History(db)
    [kept] = history.messages(1)
    assert (kept.content, kept.ran_on, kept.pasted) == ("Kept from the first release", "", "")
    answer = history.add_message(1, "assistant", "new", kind="summary", data="{}")
    assert history.message(answer.id) == answer
    # What was said before search existed is found too.
    assert [hit.message_id for hit in history.search("release")] == [kept.id]
    history.close()
    with contextlib.closing(sqlite3.connect(db)) as again:
        assert again.execute("PRAGMA user_version").fetchone()[0] == 2
