"""Benchmark: the chat view (ChatView) at 2,000 messages against one QTextBrowser holding the
whole chat as Markdown: open, scroll, resize, memory, streaming, and the cost of each update at
the end of an 8,000-token answer.

Run from the repository root:  python tests/bench/bench_chat_view.py [--messages N] [--chunks N]

Both sides run in this one process, on the offscreen platform, with the same chat (memory: each
in a fresh process of its own). The baseline is what a naive transcript does: one QTextBrowser,
setMarkdown() of the whole chat whenever it changes, re-laid out on every resize. Every step ends
in QApplication.processEvents() so that layouts and paints really happen. Background layout
(ChatView measuring rows off screen on idle ticks) is kept out of the resize and scroll timings
and measured on its own: its longest step is what a user could feel.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtWidgets import QApplication, QTextBrowser  # noqa: E402

from app.core.history import Message  # noqa: E402
from app.ui.chat_view import ChatView  # noqa: E402
from tests.bench.common import (  # noqa: E402
    REPO,
    Figure,
    at_most,
    median,
    no_goal,
    percentile,
    print_table,
    rss_mib,
    tokens,
)

TITLE = "Chat view at 2,000 messages"
ABOUT = (
    "`ChatView` (a list model; a delegate that caches row heights per width, lays out rows "
    "on screen and refines the rest on idle ticks; streamed text appended to the streaming "
    "row's document) against one `QTextBrowser` holding the whole chat as one Markdown "
    "document, offscreen, in one process (memory: a fresh process each). Background layout "
    "is kept out of the resize and scroll timings and measured on its own. The 8,000-token "
    "answer gets one update a frame (16 ms apart, 3 tokens each, as the bridge coalesces "
    "200 tok/s), each timed from the model change to the end of its paint."
)
WIDTHS = (600, 420)
HEIGHT = 500
FRAME_S = 1 / 60


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


def _scroll_up(bar: Any, steps: int) -> list[float]:
    """Page up `steps` times from where the bar is, each step timed to its paint."""
    def page_up() -> None:
        bar.setValue(bar.value() - bar.pageStep())
        settle()

    return [timed(page_up) for _ in range(steps)]


# ---------------------------------------------------------------- ours


def measure_ours(chat: list[Message], chunks: list[str], resizes: int, scrolls: int,
                 answer_tokens: int, paced_updates: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    view = ChatView()
    view.resize(WIDTHS[0], HEIGHT)
    view.show()
    delegate = view.chat_delegate
    delegate.refine_delay_ms = 10**9  # measured on its own below, not inside the loops
    settle()

    def load() -> None:
        view.chat_model.set_messages(chat)
        view.executeDelayedItemsLayout()
        view.scrollToBottom()
        settle()

    out["open"] = timed(load)

    def resize(k: int) -> None:
        view.resize(WIDTHS[(k + 1) % 2], HEIGHT)
        view.executeDelayedItemsLayout()  # the 100 ms delay QListView waits on a resize
        settle()

    layouts = delegate.stats.layouts_done
    out["resize"] = [timed(lambda k=k: resize(k)) for k in range(resizes)]  # type: ignore[misc]
    out["resize_layouts"] = delegate.stats.layouts_done - layouts

    # Background refinement after the last resize: each idle tick timed.
    delegate.refine_delay_ms = 0
    delegate.restart_refinement()
    cpu = time.process_time()
    layouts = delegate.stats.layouts_done
    steps: list[float] = []
    deadline = time.perf_counter() + 20
    steps.append(timed(QApplication.processEvents))
    while delegate.refining and time.perf_counter() < deadline:
        steps.append(timed(QApplication.processEvents))
        time.sleep(0.001)
    out["refine_cpu"] = time.process_time() - cpu
    out["refine_layouts"] = delegate.stats.layouts_done - layouts
    out["refine_steps"] = steps
    delegate.refine_delay_ms = 10**9

    out["scroll"] = _scroll_up(view.verticalScrollBar(), scrolls)
    view.scrollToBottom()
    settle()

    relayouts = [0]
    delegate.sizeHintChanged.connect(lambda _index: relayouts.__setitem__(0, relayouts[0] + 1))
    renders = delegate.stats.full_renders
    model = view.chat_model
    answer_id = len(chat) + 1

    def stream() -> None:
        model.append_message(Message(answer_id, 1, "assistant", "", "streaming"))
        settle()
        for chunk in chunks:
            model.append_text(answer_id, chunk)
            QApplication.processEvents()
        model.finish_message(answer_id, status="complete")
        settle()

    out["stream"] = timed(stream)
    out["stream_renders"] = delegate.stats.full_renders - renders
    out["stream_relayouts"] = relayouts[0]

    # An 8,000-token answer: filled fast to near its end, then one update a frame.
    long_id = answer_id + 1
    words = tokens(answer_tokens)
    paced = paced_updates * 3
    model.append_message(Message(long_id, 1, "assistant", "", "streaming"))
    settle()
    for start in range(0, len(words) - paced, 100):
        model.append_text(long_id, "".join(words[start:min(start + 100, len(words) - paced)]))
        QApplication.processEvents()
    def update(text: str) -> None:
        model.append_text(long_id, text)
        QApplication.processEvents()

    def finish() -> None:
        model.finish_message(long_id, status="complete")
        QApplication.processEvents()

    updates = []
    for start in range(len(words) - paced, len(words), 3):
        next_frame = time.perf_counter() + FRAME_S
        text = "".join(words[start:start + 3])
        updates.append(timed(lambda text=text: update(text)))  # type: ignore[misc]
        time.sleep(max(0.0, next_frame - time.perf_counter()))
    out["updates"] = updates
    out["final_render"] = timed(finish)
    settle()
    view.close()
    return out


# ---------------------------------------------------------------- baseline


def measure_baseline(chat: list[Message], chunks: list[str], resizes: int, scrolls: int,
                     budget_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    browser = QTextBrowser()
    browser.resize(WIDTHS[0], HEIGHT)
    browser.show()
    settle()

    def load() -> None:
        browser.setMarkdown(as_markdown(chat))
        browser.document().size()  # the scroll bar needs the full height: lay out everything
        bar = browser.verticalScrollBar()
        bar.setValue(bar.maximum())
        settle()

    out["open"] = timed(load)

    def resize(k: int) -> None:
        browser.resize(WIDTHS[(k + 1) % 2], HEIGHT)
        browser.document().size()
        settle()

    out["resize"] = [timed(lambda k=k: resize(k)) for k in range(resizes)]  # type: ignore[misc]
    out["scroll"] = _scroll_up(browser.verticalScrollBar(), scrolls)

    answer = ""
    done = 0
    start = time.perf_counter()
    for chunk in chunks:
        answer += chunk
        browser.setMarkdown(as_markdown(chat, answer))
        browser.verticalScrollBar().setValue(browser.verticalScrollBar().maximum())
        QApplication.processEvents()
        done += 1
        if time.perf_counter() - start > budget_s:
            break
    out["stream"] = (time.perf_counter() - start) / done * len(chunks)
    out["stream_timed"] = done
    browser.close()
    return out


# ---------------------------------------------------------------- memory, in a fresh process


def memory(side: str, messages: int) -> float:
    """MiB the process grows by when the chat is opened and scrolled through, top to end."""
    app = QApplication.instance() or QApplication(sys.argv[:1])  # noqa: F841 (kept alive)
    chat = make_chat(messages)
    widget: Any = ChatView() if side == "ours" else QTextBrowser()
    widget.resize(WIDTHS[0], HEIGHT)
    widget.show()
    settle()
    before = rss_mib()
    if side == "ours":
        widget.chat_delegate.refine_delay_ms = 10**9
        widget.chat_model.set_messages(chat)
        widget.executeDelayedItemsLayout()
    else:
        widget.setMarkdown(as_markdown(chat))
        widget.document().size()
    settle()
    bar = widget.verticalScrollBar()
    bar.setValue(bar.maximum())
    settle()
    while bar.value() > bar.minimum():
        bar.setValue(bar.value() - bar.pageStep())
        settle()
    return rss_mib() - before


def memory_in_child(side: str, messages: int) -> float:
    done = subprocess.run([sys.executable, __file__, "--memory", side, "--messages",
                           str(messages)], cwd=REPO, capture_output=True, text=True, check=True,
                          timeout=600)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["grew_mib"])


# ---------------------------------------------------------------- the run


def run(messages: int = 2000, chunks: int = 2000, resizes: int = 20, scrolls: int = 40,
        answer_tokens: int = 8000, paced_updates: int = 333,
        baseline_budget: float = 10.0) -> list[Figure]:
    app = QApplication.instance() or QApplication(sys.argv[:1])  # noqa: F841 (kept alive)
    chat = make_chat(messages)
    streamed = [f"word{i % 97} " + ("\n\n" if i % 40 == 39 else "") for i in range(chunks)]
    ours = measure_ours(chat, streamed, resizes, scrolls, answer_tokens, paced_updates)
    base = measure_baseline(chat, streamed, resizes, scrolls, baseline_budget)
    mem_ours, mem_base = memory_in_child("ours", messages), memory_in_child("baseline", messages)
    browser = "one QTextBrowser"
    n = f"{messages:,}"
    extrapolated = "" if base["stream_timed"] == chunks else \
        f"; the baseline's {base['stream_timed']} of {chunks} chunks timed, the rest extrapolated"
    steps = ours["refine_steps"]
    return [
        no_goal(f"open a {n}-message chat", ours["open"] * 1000, "ms",
                baseline=base["open"] * 1000, baseline_name=browser),
        at_most(f"scroll a {n}-message chat by a page, p95", percentile(ours["scroll"], 95) * 1000,
                16, "ms", baseline=percentile(base["scroll"], 95) * 1000, baseline_name=browser,
                note=f"{scrolls} pages up from the end; goal: a frame (this suite's)"),
        at_most(f"resize a {n}-message chat", median(ours["resize"]) * 1000, 50, "ms",
                baseline=median(base["resize"]) * 1000, baseline_name=browser,
                note=f"median of {resizes} resizes ({WIDTHS[0]} ↔ {WIDTHS[1]} px); p95 "
                     f"{percentile(ours['resize'], 95) * 1000:.0f} ms (baseline "
                     f"{percentile(base['resize'], 95) * 1000:.0f}); "
                     f"{ours['resize_layouts']} document layouts"),
        at_most("longest step of background layout after a resize", max(steps) * 1000, 16,
                "ms", note=f"{len(steps)} idle ticks, {ours['refine_layouts']} layouts, "
                           f"{ours['refine_cpu'] * 1000:.0f} ms CPU; goal: a frame (this "
                           "suite's): it runs between frames"),
        no_goal(f"memory of a {n}-message chat, opened and scrolled through", mem_ours, "MiB",
                baseline=mem_base, baseline_name=browser,
                note="growth of a fresh process's RSS"),
        no_goal(f"stream {chunks:,} chunks into an answer, per chunk",
                ours["stream"] / chunks * 1000, "ms", baseline=base["stream"] / chunks * 1000,
                baseline_name=f"{browser}, setMarkdown() a chunk",
                note=f"ours: {ours['stream_renders']} full renders, "
                     f"{ours['stream_relayouts']} row re-layouts{extrapolated}"),
        at_most(f"per-update cost at the end of an {answer_tokens:,}-token answer, p95",
                percentile(ours["updates"], 95) * 1000, 4, "ms",
                note=f"{len(ours['updates'])} updates, one a frame; median "
                     f"{median(ours['updates']) * 1000:.2f} ms, worst "
                     f"{max(ours['updates']) * 1000:.1f} ms"),
        at_most(f"final render of an {answer_tokens:,}-token answer", ours["final_render"] * 1000,
                16, "ms", note="finish_message() to the end of its paint; goal: no frame "
                               "blocked (issue 16)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--resizes", type=int, default=20)
    parser.add_argument("--baseline-budget", type=float, default=20.0,
                        help="seconds the baseline may spend streaming; the rest of its "
                             "chunks are extrapolated")
    parser.add_argument("--memory", choices=("ours", "baseline"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        print(json.dumps({"grew_mib": memory(args.memory, args.messages)}))
        return
    print_table(run(args.messages, args.chunks, args.resizes,
                    baseline_budget=args.baseline_budget))


if __name__ == "__main__":
    main()
