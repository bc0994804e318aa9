"""Benchmark: how the app's GUI thread keeps up while an answer streams in — event-loop lag
and key echo — against the same app idle.

Run: `QT_QPA_PLATFORM=offscreen python tests/bench/bench_streaming.py`. The real app
(`SwitchboardApp` over a `Workspace` in a throw-away home, its GUI-thread collector on)
asks the stand-in node, which runs in a child process, through the main window's Send.
Three phases: idle (5 s), an answer of 1,000 tokens paced at 200 tokens a second, and
one of 20,000 tokens sent as fast as the node can (unpaced). In each, a 1 ms precise
QTimer records the gaps between its ticks (event-loop lag), and a thread presses a key
in the composer every 50 ms, timing from the press (posted to the composer, as the
platform's input thread would) to the composer's next paint (key echo). Each answer's
phase runs on half a second after it ends, to take in its final render.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt  # noqa: E402
from PySide6.QtGui import QKeyEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from tests.bench.bench_ui_stall import GapRecorder, wait  # noqa: E402
from tests.bench.common import (  # noqa: E402
    Figure,
    StandInNode,
    at_most,
    median,
    no_goal,
    percentile,
    print_table,
)

TITLE = "Event-loop lag and key echo while streaming"
ABOUT = (
    "The real app (`SwitchboardApp`, offscreen, a throw-away home) asks the stand-in node "
    "(a child process) through the main window's Send. Three phases: idle for 5 s (the "
    "baseline), 1,000 tokens paced at 200 tokens a second, 20,000 tokens unpaced. A "
    "1 ms precise `QTimer` records the gaps between its ticks (lag); a thread presses a key "
    "in the composer every 50 ms, timed from the press to the composer's next paint "
    "(echo). The goals are this suite's: a frame (16 ms)."
)
PHASE_S = 5.0
KEY_EVERY_S = 0.05
UNPACED = 20_000  # tokens: a long answer, sent as fast as the node can


class KeyEcho(QObject):
    """Presses a key in `widget` every `every` seconds from a thread; times each press to
    the widget's next paint after the GUI thread handled it."""

    def __init__(self, widget: QWidget, every: float = KEY_EVERY_S) -> None:
        super().__init__()
        self.widget, self.every = widget, every
        self.viewport = getattr(widget, "viewport", lambda: widget)()
        self.viewport.installEventFilter(self)
        widget.installEventFilter(self)
        self.pressed: list[float] = []  # when each press was posted
        self.handled: list[float] = []
        self.echoes: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 — Qt's name
        kind = event.type()
        if watched is self.widget and kind == QEvent.Type.KeyPress and \
                len(self.handled) < len(self.pressed):
            self.handled.append(time.perf_counter())
        elif watched is self.viewport and kind == QEvent.Type.Paint:
            # The key's echo is being painted (painting one line of text takes well
            # under a millisecond, not counted).
            now = time.perf_counter()
            while len(self.echoes) < len(self.handled):
                self.echoes.append(now - self.pressed[len(self.echoes)])
        return False

    def _press(self) -> None:
        while not self._stop.wait(self.every):
            if len(self.pressed) > len(self.echoes) + 1:
                continue  # the last press is not echoed yet: a user would wait too
            self.pressed.append(time.perf_counter())
            for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
                QCoreApplication.postEvent(self.widget, QKeyEvent(
                    kind, Qt.Key.Key_A, Qt.KeyboardModifier.NoModifier, "a"))

    def start(self) -> None:
        self.pressed.clear()
        self.handled.clear()
        self.echoes.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._press, name="key-presser", daemon=True)
        self._thread.start()

    def stop(self) -> list[float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return list(self.echoes)


@contextmanager
def app_under_test(node_url: str) -> Iterator[Any]:
    """The real app in a throw-away home, its office node at `node_url`; the main window
    shown and settled."""
    import keyring

    from app.core import secrets
    from tests.fixtures.memory_keyring import MemoryKeyring

    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qapp, QApplication)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["SWITCHBOARD_HOME"] = str(Path(folder) / "home")
        os.environ["SWITCHBOARD_NODE_TOKEN"] = "bench-token"
        keyring.set_keyring(MemoryKeyring())  # as in the tests: nothing touches the real one
        secrets.SECURE_BACKENDS = secrets.SECURE_BACKENDS | {
            "tests.fixtures.memory_keyring.MemoryKeyring"}
        from app.core.settings import Settings
        from app.core.workspace import Workspace
        from app.ui.application import SwitchboardApp
        from app.ui.garbage import GuiThreadCollector

        collector = GuiThreadCollector()  # as the app's start does: gc on the GUI thread
        collector.start()
        Settings().changed(node_urls=[node_url]).save()
        app = SwitchboardApp(Workspace.open())
        app.start()
        app.show_main()
        wait(qapp, 1.5)  # the start-up health check and the first layout
        try:
            yield app
        finally:
            app.shutdown()
            collector.stop()


def ask(app: Any, prompt: str, timeout: float = 120) -> float:
    """Send `prompt` from the main window and run the loop until the answer has ended;
    returns the seconds it took."""
    qapp = QApplication.instance()
    assert isinstance(qapp, QApplication)
    done = threading.Event()

    def busy(now: bool) -> None:
        if not now:
            done.set()

    app.controller.busyChanged.connect(busy)
    started = time.perf_counter()
    app.main_window.send(prompt)
    wait(qapp, timeout, done.is_set)
    app.controller.busyChanged.disconnect(busy)
    if not done.is_set():
        raise RuntimeError(f"no answer to {prompt!r} in {timeout:g} s")
    return time.perf_counter() - started


def phase(app: Any, node: StandInNode, chunks: int, delay_s: float) -> dict[str, Any]:
    qapp = QApplication.instance()
    assert isinstance(qapp, QApplication)
    composer = app.main_window.composer
    composer.setFocus()
    recorder, echo = GapRecorder(), KeyEcho(composer)
    if chunks:
        node.answer(chunks, delay_s)
    recorder.start()
    echo.start()
    took = ask(app, f"Write {chunks} words.") if chunks else 0.0
    # Idle: the baseline's length; after an answer: its final render and what follows.
    wait(qapp, PHASE_S if not chunks else 0.5)
    echoes = echo.stop()
    gaps = recorder.stop()
    composer.clear()
    return {"gaps": gaps, "echoes": echoes, "took": took}


def run() -> list[Figure]:
    results: dict[str, dict[str, Any]] = {}
    with StandInNode() as node, app_under_test(node.base_url) as app:
        paced = round(PHASE_S * 200)
        results["idle"] = phase(app, node, 0, 0)
        results["paced"] = phase(app, node, paced, 1 / 200)
        results["unpaced"] = phase(app, node, UNPACED, 0)
    for name, r in results.items():
        gaps, echoes = r["gaps"], r["echoes"]
        print(f"{name:8} {r['took']:5.1f} s  lag: max {max(gaps):6.1f} ms, p99 "
              f"{percentile(gaps, 99):5.1f} ms   key echo: {len(echoes)} presses, median "
              f"{median(echoes) * 1000:5.1f} ms, p95 {percentile(echoes, 95) * 1000:5.1f} ms, "
              f"worst {max(echoes) * 1000:5.1f} ms")
    idle = results["idle"]
    out = []
    for name, label in (("paced", "paced at 200 tok/s"),
                        ("unpaced", f"unpaced ({UNPACED:,} tokens)")):
        r = results[name]
        out.append(at_most(f"event-loop lag while streaming {label}, worst", max(r["gaps"]),
                           16, "ms", baseline=max(idle["gaps"]), baseline_name="idle",
                           note=f"p99 {percentile(r['gaps'], 99):.1f} ms (idle "
                                f"{percentile(idle['gaps'], 99):.1f}); "
                                f"{sum(g > 16 for g in r['gaps'])} gaps over 16 ms"))
        out.append(at_most(f"key echo while streaming {label}, p95",
                           percentile(r["echoes"], 95) * 1000, 16, "ms",
                           baseline=percentile(idle["echoes"], 95) * 1000, baseline_name="idle",
                           note=f"{len(r['echoes'])} presses; median "
                                f"{median(r['echoes']) * 1000:.1f} ms, worst "
                                f"{max(r['echoes']) * 1000:.1f} ms"))
    out.append(no_goal("time to stream 1,000 tokens paced at 200 tok/s",
                       results["paced"]["took"], "s", note="the node takes 5 s"))
    return out


if __name__ == "__main__":
    print_table(run())
