"""Benchmark: the chat view (ChatView) against one QTextBrowser holding the whole chat as Markdown.

Run from the repository root:  python tests/bench/bench_chat_view.py [--messages N] [--chunks N]

Both sides run in this one process, on the offscreen platform, with the same chat. The baseline is
what a naive transcript does: one QTextBrowser, setMarkdown() of the whole chat whenever it
changes. Every step ends in QApplication.processEvents() so that layouts and paints really happen.
The table prints seconds and the ratio baseline / ours (above 1: ours is faster).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtWidgets import QApplication, QTextBrowser  # noqa: E402

from app.core.history import Message  # noqa: E402
from app.ui.chat_refinement import RefinementScheduler  # noqa: E402
from app.ui.chat_view import ChatView  # noqa: E402

WIDTHS = (600, 420)
HEIGHT = 500


def make_chat(n: int, seed: int = 7) -> list[Message]:
    """A deterministic office chat: short questions, answers with lists, tables of text, code."""
    rng = random.Random(seed)
    words = [
        *("budget", "report", "quarter", "office", "node", "summary", "invoice", "supplier"),
        *("contract", "draft", "figure", "total", "team", "review", "deadline", "policy"),
        *("customer", "schedule", "estimate", "meeting", "minutes"),
    ]

    def sentence(k: int) -> str:
        return " ".join(rng.choice(words) for _ in range(k)).capitalize() + "."

    chat = []
    for i in range(n):
        if i % 2 == 0:
            chat.append(Message(i, 1, "user", sentence(rng.randint(6, 30))))
            continue
        parts = [" ".join(sentence(rng.randint(8, 20)) for _ in range(rng.randint(1, 4)))]
        if rng.random() < 0.4:
            parts.append("\n".join(f"- **{rng.choice(words)}**: {sentence(6)}" for _ in range(3)))
        if rng.random() < 0.25:
            code = "\n".join(f"total += row[{k}]  # {rng.choice(words)}" for k in range(6))
            parts.append(f"```python\n{code}\n```")
        parts.append(sentence(rng.randint(5, 15)))
        chat.append(Message(i, 1, "assistant", "\n\n".join(parts)))
    return chat


def as_markdown(chat: list[Message], tail: str = "") -> str:
    """The whole chat as one Markdown document, as a single-browser transcript renders it."""
    parts = [
        f"**You:** {m.content}" if m.role == "user" else m.content for m in chat
    ]
    if tail:
        parts.append(tail)
    return "\n\n---\n\n".join(parts)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def settle() -> None:
    for _ in range(3):
        QApplication.processEvents()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--resizes", type=int, default=20)
    parser.add_argument(
        "--baseline-budget",
        type=float,
        default=20.0,
        help="seconds the baseline may spend streaming; the rest of its chunks are extrapolated",
    )
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv)  # noqa: F841 (kept alive)
    chat = make_chat(args.messages)
    chunks = [f"word{i % 97} " + ("\n\n" if i % 40 == 39 else "") for i in range(args.chunks)]
    rows: list[tuple[str, float, float, str]] = []

    # -- ours ------------------------------------------------------------------------------
    view = ChatView()
    view.resize(WIDTHS[0], HEIGHT)
    view.show()
    delegate = view.chat_delegate
    delegate.refine_delay_ms = 10**9  # measured on its own below, not inside the loops

    def load_ours() -> None:
        view.chat_model.set_messages(chat)
        view.executeDelayedItemsLayout()
        settle()

    ours_load = timed(load_ours)

    def resize_ours() -> None:
        for k in range(args.resizes):
            view.resize(WIDTHS[(k + 1) % 2], HEIGHT)
            view.executeDelayedItemsLayout()  # the 100 ms delay QListView waits on a resize
            settle()

    layouts_before = delegate.stats.layouts_done
    ours_resize = timed(resize_ours)
    resize_layouts = delegate.stats.layouts_done - layouts_before

    # Background refinement after the last resize, in CPU seconds (it runs on idle ticks).
    delegate.refine_delay_ms = 0
    delegate.restart_refinement()
    cpu = time.process_time()
    layouts_before = delegate.stats.layouts_done
    deadline = time.perf_counter() + 20
    QApplication.processEvents()
    while delegate.refining and time.perf_counter() < deadline:
        QApplication.processEvents()
        time.sleep(0.001)
    refine_cpu = time.process_time() - cpu
    refine_layouts = delegate.stats.layouts_done - layouts_before
    delegate.refine_delay_ms = 10**9

    relayouts = [0]
    delegate.sizeHintChanged.connect(lambda _index: relayouts.__setitem__(0, relayouts[0] + 1))
    renders_before = delegate.stats.full_renders
    answer_id = len(chat) + 1

    def stream_ours() -> None:
        model = view.chat_model
        model.append_message(Message(answer_id, 1, "assistant", "", "streaming"))
        settle()
        for chunk in chunks:
            model.append_text(answer_id, chunk)
            QApplication.processEvents()
        model.finish_message(answer_id, status="complete")
        settle()

    ours_stream = timed(stream_ours)
    stream_renders = delegate.stats.full_renders - renders_before
    view.close()

    # -- baseline: one QTextBrowser, the whole chat as one Markdown document -------------------
    browser = QTextBrowser()
    browser.resize(WIDTHS[0], HEIGHT)
    browser.show()

    def load_base() -> None:
        browser.setMarkdown(as_markdown(chat))
        browser.document().size()  # the scroll bar needs the full height: lay out everything
        settle()

    base_load = timed(load_base)

    def resize_base_relayout() -> None:
        for k in range(args.resizes):
            browser.resize(WIDTHS[(k + 1) % 2], HEIGHT)
            browser.document().size()
            settle()

    base_resize_relayout = timed(resize_base_relayout)

    def resize_base_rerender() -> None:
        for k in range(args.resizes):
            browser.resize(WIDTHS[(k + 1) % 2], HEIGHT)
            browser.setMarkdown(as_markdown(chat))
            browser.document().size()
            settle()

    base_resize_rerender = timed(resize_base_rerender)

    answer = ""
    done = 0
    start = time.perf_counter()
    for chunk in chunks:
        answer += chunk
        browser.setMarkdown(as_markdown(chat, answer))
        browser.verticalScrollBar().setValue(browser.verticalScrollBar().maximum())
        QApplication.processEvents()
        done += 1
        if time.perf_counter() - start > args.baseline_budget:
            break
    base_stream_measured = time.perf_counter() - start
    base_stream = base_stream_measured / done * len(chunks)
    browser.close()

    # -- report -------------------------------------------------------------------------------
    n, r, c = args.messages, args.resizes, args.chunks
    rows.append((f"load {n} messages", base_load, ours_load, ""))
    rows.append(
        (
            f"resize x{r}, baseline re-lays out its document",
            base_resize_relayout,
            ours_resize,
            f"ours: {resize_layouts} document layouts for {r} resizes of {n} rows",
        )
    )
    rows.append(
        (
            f"resize x{r}, baseline setMarkdown() each time",
            base_resize_rerender,
            ours_resize,
            "",
        )
    )
    extrapolated = "" if done == c else f"baseline: {done} of {c} chunks timed, rest extrapolated"
    rows.append(
        (
            f"stream {c} chunks into an answer",
            base_stream,
            ours_stream,
            f"ours: {stream_renders} full render(s), {relayouts[0]} row re-layouts. {extrapolated}",
        )
    )

    print(f"\nChat view benchmark: {n} messages, widths {WIDTHS}, height {HEIGHT}, Qt offscreen")
    print(f"{'case':<46} {'baseline s':>11} {'ours s':>9} {'ratio':>8}")
    for name, base, ours, note in rows:
        print(f"{name:<46} {base:>11.3f} {ours:>9.3f} {base / ours:>7.1f}x")
        if note:
            print(f"{'':<6}{note}")
    print(
        f"\nours, background refinement after the resizes: {refine_cpu:.3f} CPU s, "
        f"{refine_layouts} layouts on idle ticks (rows within "
        f"{RefinementScheduler.RADIUS} of the screen; no baseline equivalent)"
    )
    print(
        f"per streamed chunk: baseline {base_stream / c * 1000:.2f} ms, "
        f"ours {ours_stream / c * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
