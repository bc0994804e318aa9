"""Benchmark: cold start, from exec to the tray icon in the system tray and to a main
window that takes input, against a bare PySide6 tray with a window.

Run: `python tests/bench/bench_startup.py [--rounds 7]`. Xvfb with trayer as the system
tray (`tests/fixtures/desktop.py`, as the end-to-end tests use); `python -m app --show`
in a home set up as a user's after a while (an office node — the stand-in — and a
200-message chat, which the window opens), against `bare_tray.py --window`, taking
turns, after one unmeasured start of each. This process watches the screen through
libX11: the icon counts when trayer has embedded it and it is viewable; the window takes
input when it is viewable and its GUI thread answers `_NET_WM_PING` (Qt answers from
the event loop, so a window still being built, or busy, does not).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import (  # noqa: E402
    REPO,
    Figure,
    StandInNode,
    at_most,
    failed,
    median,
    print_table,
)
from tests.bench.x11 import Screen  # noqa: E402
from tests.fixtures.desktop import Desktop, desktop  # noqa: E402
from tests.fixtures.processes import end  # noqa: E402

TITLE = "Cold start"
ABOUT = (
    "Under Xvfb with trayer as the system tray: `python -m app --show` in a home with an "
    "office node (the stand-in) and a 200-message chat, which the window opens, against a "
    "bare PySide6 tray icon and window (`bare_tray.py`), taking turns after one "
    "unmeasured start of each; medians. The icon counts once trayer has embedded it and it "
    "is viewable; the window takes input once it is viewable and its GUI thread answers "
    "`_NET_WM_PING`, watched through libX11 every 2 ms."
)
APP_NAME = "Switchboard"
BARE_NAME = "Bare tray"
CHAT_MESSAGES = 200


@dataclass
class Start:
    tray: float | None = None  # s after exec
    window: float | None = None  # viewable
    input: float | None = None  # viewable and answering pings


def prepare_home(home: Path, node_url: str, messages: int = CHAT_MESSAGES) -> dict[str, str]:
    """A user's home after a while: an office node set and a chat of `messages`
    messages (the window opens the latest chat). Returns the environment to start in."""
    os.environ["SWITCHBOARD_HOME"] = str(home)
    from app.core import paths
    from app.core.history import History
    from app.core.settings import Settings
    from tests.bench.bench_chat_view import make_chat

    Settings().changed(node_urls=[node_url]).save()
    history = History(paths.history_db())
    chat = history.create_chat("The quarterly report")
    for message in make_chat(messages):
        history.add_message(chat.id, message.role, message.content)
    history.close()
    return {"SWITCHBOARD_HOME": str(home), "SWITCHBOARD_NODE_TOKEN": "bench-token"}


def app_command() -> list[str]:
    return [sys.executable, "-m", "app", "--show"]


def bare_command(window: bool = True) -> list[str]:
    return [sys.executable, str(Path(__file__).with_name("bare_tray.py")), "--name",
            BARE_NAME, *(["--window"] if window else [])]


def launch(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=out)


def watch(screen: Screen, name: str, started: float, timeout: float = 30.0) -> Start:
    """Poll every 2 ms until the icon is in the tray and the window answers a ping."""
    seen = Start()
    screen.forget()
    screen.ponged()  # late answers to the last process's pings
    window = 0
    deadline = started + timeout
    while time.perf_counter() < deadline and seen.input is None:
        if seen.tray is None and screen.tray_icon(name):
            seen.tray = time.perf_counter() - started
        if not window:
            window = screen.top_level(name)
            if window:
                seen.window = time.perf_counter() - started
        if window:
            if screen.ponged():
                seen.input = time.perf_counter() - started
                break
            screen.ping(window)
        time.sleep(0.002)
    return seen


def one_start(screen: Screen, d: Desktop, command: list[str], name: str,
              env: dict[str, str], log: Path) -> Start:
    started = time.perf_counter()
    process = launch(command, {**d.env, **env}, log)
    try:
        return watch(screen, name, started)
    finally:
        end(process, 20)


def measure(rounds: int) -> tuple[list[Start], list[Start], Path]:
    folder = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    with StandInNode() as node, desktop() as d:
        env = prepare_home(folder / "home", node.base_url)
        screen = Screen(d.display)
        try:
            ours: list[Start] = []
            bare: list[Start] = []
            for round_ in range(rounds + 1):  # round 0: unmeasured (bytecode, disk cache)
                b = one_start(screen, d, bare_command(), BARE_NAME, env, folder / "bare.log")
                o = one_start(screen, d, app_command(), APP_NAME, env, folder / "app.log")
                if round_:
                    bare.append(b)
                    ours.append(o)
                    print(f"round {round_}: bare tray {_s(b.tray)} window {_s(b.input)}   "
                          f"app tray {_s(o.tray)} window {_s(o.input)} (viewable "
                          f"{_s(o.window)})", flush=True)
        finally:
            screen.close()
    return bare, ours, folder


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f} s"


def figures(bare: list[Start], ours: list[Start], log: Path) -> list[Figure]:
    out = []
    for what, goal, label in (("tray", 0.5, "exec → tray icon shown"),
                              ("input", 1.0, "exec → window accepts input")):
        mine = [getattr(s, what) for s in ours]
        base = [getattr(s, what) for s in bare]
        if None in mine or None in base:
            out.append(failed(label, f"not seen in {mine.count(None)} of {len(mine)} starts "
                                     f"(bare: {base.count(None)}); logs in {log}"))
            continue
        over = sum(t > goal for t in mine)
        out.append(at_most(label, median(mine), goal, "s", baseline=median(base),
                           baseline_name="bare PySide6 tray",
                           note=f"median of {len(mine)}; range {min(mine):.2f}–"
                                f"{max(mine):.2f} s, {over} over the goal"))
    return out


def run(rounds: int = 7) -> list[Figure]:
    bare, ours, folder = measure(rounds)
    result = figures(bare, ours, folder)
    if all(f.ours is not None for f in result):  # else its logs say why
        shutil.rmtree(folder, ignore_errors=True)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    print_table(run(parser.parse_args().rounds))
