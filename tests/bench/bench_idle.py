"""Benchmark: the app's memory and CPU once started and left alone, against a bare
PySide6 tray icon with a window.

Run: `python tests/bench/bench_idle.py [--settle 5] [--window 10]`. Both start together
on one Xvfb screen with trayer as the tray (the set-up of `bench_startup.py`: an office
node, the stand-in, and a 200-message chat the window opens); once both windows answer
`_NET_WM_PING` they are left `--settle` seconds (start-up work such as the first health
check and the chat's background layout ends), then their CPU time is read over
`--window` seconds and their resident memory (VmRSS) at its end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_startup import (  # noqa: E402
    APP_NAME,
    BARE_NAME,
    app_command,
    bare_command,
    launch,
    prepare_home,
    watch,
)
from tests.bench.common import (  # noqa: E402
    Figure,
    StandInNode,
    at_most,
    cpu_seconds,
    failed,
    no_goal,
    print_table,
    rss_mib,
)
from tests.bench.x11 import Screen  # noqa: E402
from tests.fixtures.desktop import desktop  # noqa: E402
from tests.fixtures.processes import end  # noqa: E402

TITLE = "Idle memory and CPU"
ABOUT = (
    "The app (`python -m app --show`, an office node set, a 200-message chat open) and a "
    "bare PySide6 tray icon with a window, started together under Xvfb with trayer; once "
    "both windows answer, a settling pause, then CPU time over a window of seconds and "
    "resident memory (VmRSS of the process) at its end."
)


def run(settle: float = 5.0, window: float = 10.0) -> list[Figure]:
    folder = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    with StandInNode() as node, desktop() as d:
        env = {**d.env, **prepare_home(folder / "home", node.base_url)}
        screen = Screen(d.display)
        bare = launch(bare_command(), env, folder / "bare.log")
        bare_seen = watch(screen, BARE_NAME, time.perf_counter())
        app = launch(app_command(), env, folder / "app.log")
        app_seen = watch(screen, APP_NAME, time.perf_counter())
        screen.close()
        try:
            if app_seen.input is None or bare_seen.input is None:
                why = f"a window did not answer (app {app_seen}, bare {bare_seen}); {folder}"
                return [failed("idle RSS", why), failed("idle CPU", why)]
            time.sleep(settle)
            cpu = {p.pid: cpu_seconds(p.pid) for p in (app, bare)}
            time.sleep(window)
            used = {p.pid: (cpu_seconds(p.pid) - cpu[p.pid]) / window * 100 for p in (app, bare)}
            rss = {p.pid: rss_mib(p.pid) for p in (app, bare)}
        finally:
            end(app, 20)
            end(bare, 20)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"app: {rss[app.pid]:.1f} MiB, {used[app.pid]:.2f}% of a core; bare tray and "
          f"window: {rss[bare.pid]:.1f} MiB, {used[bare.pid]:.2f}%")
    after = f"after {settle:g} s settling and {window:g} s measured"
    return [
        at_most("idle RSS, window open", rss[app.pid], 100, "MiB", baseline=rss[bare.pid],
                baseline_name="bare PySide6 tray + window", note=after),
        no_goal("idle CPU, window open, share of one core", used[app.pid], "%",
                baseline=used[bare.pid], baseline_name="bare PySide6 tray + window",
                note=f"CPU time over {window:g} s"),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    print_table(run(args.settle, args.window))
