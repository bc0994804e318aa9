"""Opening Switchboard's SQLite files one way: checked before anything writes, WAL,
brought up to date by numbered migrations (`user_version` counts those done), sqlite3's
failures translated into the app's typed errors, and a damaged file kept aside where
starting a new one loses nothing that matters (never for the budget ledger)."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from app.core.errors import StorageFailed, SwitchboardError

log = logging.getLogger(__name__)

# SQLite's result codes for a damaged file ("database disk image is malformed", "file is
# not a database") and for a lock held past the busy timeout. Anything else ("database or
# disk is full", "disk I/O error") is a problem with the disk, not with the file.
DAMAGED_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

# One step from a file saved by an earlier version towards today's, in a transaction.
Migration = Callable[[sqlite3.Connection], None]


def primary_code(e: sqlite3.DatabaseError) -> int:
    """The primary result code of a failure (extended codes keep it in their low 8 bits)."""
    return (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF


@contextmanager
def translated(what: str, damaged: type[StorageFailed],
               busy: type[SwitchboardError] | None = None) -> Iterator[None]:
    """sqlite3's storage failures as `damaged`, `busy` (when given) or StorageFailed, each
    naming `what` ("chat history"). A constraint or a misuse is a bug and goes through."""
    try:
        yield
    except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
        raise
    except sqlite3.DatabaseError as e:
        code = primary_code(e)
        detail = f"{what}: {e}"
        if busy is not None and code in BUSY_CODES:
            raise busy(detail) from e
        if code in DAMAGED_CODES:
            raise damaged(detail) from e
        raise StorageFailed(detail) from e


def open_checked(path: Path, *, what: str, damaged: type[StorageFailed], schema: str,
                 busy: type[SwitchboardError] | None = None, synchronous: str = "NORMAL",
                 timeout: float = 10.0, migrations: Sequence[Migration] = ()
                 ) -> sqlite3.Connection:
    """An open connection to `path` with `schema` applied and brought up to date by
    `migrations`, or `damaged` when the file is not a sound database (checked before
    anything writes, so it is left as found).

    `schema` creates what is missing as today's version has it; `migrations` change what
    an earlier version made, in order, each once. A new migration goes at the end.

    Transactions are opened explicitly (isolation_level=None); the connection may be used
    from another thread than the one that opened it, by one thread at a time.
    """
    with translated(what, damaged, busy):  # "unable to open database file": a missing folder
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                             timeout=timeout)
    try:
        with translated(what, damaged, busy):
            found = [str(row[0]) for row in db.execute("PRAGMA quick_check").fetchall()]
            if found != ["ok"]:
                raise damaged(f"{what}: {'; '.join(found[:3])}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.executescript(schema)
            _migrate(db, migrations)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    """Run the migrations this file has not had, each in its own transaction with the
    count that records it. A file from a newer version (a higher count) is left alone."""
    done = int(db.execute("PRAGMA user_version").fetchone()[0])
    for number, step in enumerate(migrations[done:], done + 1):
        with db:
            db.execute("BEGIN IMMEDIATE")
            step(db)
            db.execute(f"PRAGMA user_version={number}")


def keep_aside(path: Path) -> Path:
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
