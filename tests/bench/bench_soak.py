"""Benchmark: a soak — 200 answers of 100 chunks (20,000 chunks) through the real app, one
after another in one chat — for crashes and memory growth.

Run: `QT_QPA_PLATFORM=offscreen python tests/bench/bench_soak.py [--answers 200]`. The
app is `bench_streaming.app_under_test` (the real `SwitchboardApp`, offscreen, a
throw-away home); the stand-in node streams every answer unpaced from a child process.
Resident memory (VmRSS) is read half a second after the first answer and after the last;
the goal is that it grows by less than 10 MiB between them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402

from tests.bench.bench_streaming import app_under_test, ask  # noqa: E402
from tests.bench.bench_ui_stall import wait  # noqa: E402
from tests.bench.common import (  # noqa: E402
    Figure,
    StandInNode,
    at_most,
    no_goal,
    print_table,
    rss_mib,
)

TITLE = "Soak: 20,000 chunks in 200 answers"
ABOUT = (
    "The real app (`SwitchboardApp`, offscreen, a throw-away home) asks the stand-in node "
    "(a child process, unpaced) 200 times in one chat, 100 chunks an answer. Resident "
    "memory (VmRSS) half a second after the first answer and after the last; every answer "
    "must end complete."
)


def run(answers: int = 200, chunks: int = 100) -> list[Figure]:
    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qapp, QApplication)
    trend: list[tuple[int, float]] = []
    started = time.perf_counter()
    with StandInNode() as node, app_under_test(node.base_url) as app:
        node.answer(chunks)
        for n in range(1, answers + 1):
            ask(app, f"Question {n}: what does the report say?")
            if n == 1 or n % 20 == 0:
                wait(qapp, 0.5)
                trend.append((n, rss_mib()))
                print(f"answer {n}: {trend[-1][1]:.1f} MiB", flush=True)
        model = app.main_window.chat_view.chat_model
        rows = [model.message_at(r) for r in range(model.rowCount())]
        complete = sum(1 for m in rows if m.role == "assistant" and m.status == "complete")
        requests = node.requests()
    took = time.perf_counter() - started
    growth = trend[-1][1] - trend[0][1]
    return [
        at_most(f"memory growth after the first answer, over {answers} answers", growth, 10,
                "MiB", note="RSS after answer " + ", ".join(
                    f"{n}: {mib:.0f}" for n, mib in trend) + " MiB"),
        Figure(f"answers complete, of {answers}", complete, "", f"all {answers}",
               complete == answers,
               note=f"{requests} requests to the node; {answers * chunks:,} chunks in "
                    f"{took:.0f} s"),
        no_goal("RSS after the last answer", trend[-1][1], "MiB"),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=200)
    print_table(run(parser.parse_args().answers))
