"""Chats and messages survive restarts; an answer cut off by a kill is kept, marked."""

from pathlib import Path

import pytest

from app.core.errors import StorageFailed
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
    assert [m.content for m in history.messages(chat.id)] == ["kept"]
