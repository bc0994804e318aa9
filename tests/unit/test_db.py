"""Every store opens through app.core.db: numbered migrations run once each, in order, and
a file from a newer version is left alone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.core.db import open_checked
from app.core.errors import StorageFailed

SCHEMA = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"


def test_migrations_run_once_each_in_order_and_are_counted(tmp_path: Path) -> None:
    ran: list[str] = []

    def first(db: sqlite3.Connection) -> None:
        ran.append("first")
        db.execute("ALTER TABLE notes ADD COLUMN tag TEXT NOT NULL DEFAULT ''")

    def second(db: sqlite3.Connection) -> None:
        ran.append("second")
        db.execute("UPDATE notes SET tag='old'")

    path = tmp_path / "s.sqlite3"
    db = open_checked(path, what="notes", damaged=StorageFailed, schema=SCHEMA,
                      migrations=(first,))
    db.execute("INSERT INTO notes (text) VALUES ('a')")
    db.close()
    db = open_checked(path, what="notes", damaged=StorageFailed, schema=SCHEMA,
                      migrations=(first, second))  # a later version adds a step
    assert ran == ["first", "second"]
    assert db.execute("SELECT text, tag FROM notes").fetchall() == [("a", "old")]
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()


def test_a_failed_migration_changes_nothing_and_runs_again_next_time(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    open_checked(path, what="notes", damaged=StorageFailed, schema=SCHEMA).close()

    def broken(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE notes ADD COLUMN tag TEXT")
        raise OSError("the disk went away")

    with pytest.raises(OSError):
        open_checked(path, what="notes", damaged=StorageFailed, schema=SCHEMA,
                     migrations=(broken,))
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(notes)")]
        assert columns == ["id", "text"]  # rolled back
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0


def test_a_file_from_a_newer_version_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    db = open_checked(path, what="notes", damaged=StorageFailed, schema=SCHEMA)
    db.execute("PRAGMA user_version=5")
    db.close()
    ran: list[int] = []
    db = open_checked(path, what="notes", damaged=StorageFailed, schema=SCHEMA,
                      migrations=(lambda d: ran.append(1), lambda d: ran.append(2)))
    assert ran == [] and db.execute("PRAGMA user_version").fetchone()[0] == 5
    db.close()
