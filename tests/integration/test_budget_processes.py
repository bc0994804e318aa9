"""The budget ledger under concurrency: threads and real processes on one ledger file
cannot overspend together, and a process killed between reserve and settle frees nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.core.budget import Ledger, Reservation
from app.core.errors import BudgetExhausted

ROOT = Path(__file__).parents[2]
USD = 1_000_000


def test_twenty_concurrent_reservations_against_a_cap_for_ten(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    start = threading.Barrier(20)
    won: list[Reservation] = []
    refused: list[BudgetExhausted] = []
    failed: list[BaseException] = []

    def plan() -> None:
        try:
            ledger = Ledger(db)  # each its own connection, as separate windows would be
            try:
                start.wait(timeout=30)
                won.append(ledger.reserve(100_000, USD, purpose="plan", model="m"))
            finally:
                ledger.close()
        except BudgetExhausted as e:
            refused.append(e)
        except BaseException as e:  # reported by the assertion below
            failed.append(e)

    threads = [threading.Thread(target=plan) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert failed == []
    assert (len(won), len(refused)) == (10, 10)
    with Ledger(db) as ledger:
        summary = ledger.month_summary(cap_micro_usd=USD)
        assert summary.charged_micro_usd == 10 * 100_000 <= USD
        assert summary.calls == 10 and summary.remaining_micro_usd == 0


# A stand-in for an app process: it reserves, then does what the test asks.
CHILD = """
import sys, time
from pathlib import Path
from app.core.budget import Ledger
from app.core.errors import BudgetExhausted

db, amount, cap, then = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ledger = Ledger(db)
if then == "race":
    go = db.with_name("go")
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
try:
    r = ledger.reserve(amount, cap, purpose="plan", model="m")
except BudgetExhausted:
    print("refused", flush=True)
    sys.exit(0)
print(f"reserved {r.id}", flush=True)
if then == "sleep":
    time.sleep(600)  # the test kills us here, between reserve and settle
"""


def child(db: Path, amount: int, limit: int, then: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(amount), str(limit), then],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX SIGKILL")
def test_sigkill_between_reserve_and_settle_frees_no_budget(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    with Ledger(db) as ledger:
        ledger.settle(ledger.reserve(100_000, USD, purpose="plan", model="m").id, 100_000)
        before = ledger.month_summary(cap_micro_usd=USD).remaining_micro_usd
    assert before == 900_000

    proc = child(db, 300_000, USD, "sleep")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("reserved "), line + (proc.stderr.read() if proc.stderr else "")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    with Ledger(db) as reopened:
        summary = reopened.month_summary(cap_micro_usd=USD)
        assert summary.remaining_micro_usd == 600_000  # did not grow back to 900,000
        assert summary.reserved_micro_usd == 300_000
        with pytest.raises(BudgetExhausted):
            reopened.reserve(600_001, USD, purpose="plan", model="m")


def test_two_processes_racing_for_the_last_cent_exactly_one_wins(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    with Ledger(db) as ledger:
        ledger.settle(ledger.reserve(990_000, USD, purpose="plan", model="m").id, 990_000)
    racers = [child(db, 10_000, USD, "race") for _ in range(2)]
    try:
        for proc in racers:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        db.with_name("go").touch()
        results = [proc.communicate(timeout=60) for proc in racers]
    finally:
        for proc in racers:
            proc.kill()
    assert [proc.returncode for proc in racers] == [0, 0], [err for _, err in results]
    outcomes = sorted(out.split()[0] for out, _ in results)
    assert outcomes == ["refused", "reserved"]
    with Ledger(db) as ledger:
        summary = ledger.month_summary(cap_micro_usd=USD)
        assert summary.charged_micro_usd == USD and summary.calls == 2


def test_a_second_process_waits_for_the_first_ones_write(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE in another process makes reserve wait (the busy timeout), not fail."""
    db = tmp_path / "ledger.sqlite3"
    go = tmp_path / "go"
    Ledger(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import pathlib, sqlite3, sys, time\n"
         "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "db.execute('BEGIN IMMEDIATE'); print('locked', flush=True)\n"
         "while not pathlib.Path(sys.argv[2]).exists(): time.sleep(0.01)\n"
         "db.execute('COMMIT')\n", str(db), str(go)],
        stdout=subprocess.PIPE, text=True)
    release = threading.Timer(0.3, go.touch)  # lets the holder commit while we wait
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        release.start()
        with Ledger(db) as ledger:  # opening writes too (flags stale reservations)
            ledger.reserve(1, USD, purpose="plan", model="m")
        assert go.exists()  # it got the write only once the holder let go
        assert holder.wait(timeout=30) == 0
    finally:
        release.cancel()
        go.touch()
        holder.communicate(timeout=30)
