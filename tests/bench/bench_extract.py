"""Benchmark: text extraction of a generated 300-page PDF, in pages per second, through
the app's `extract()` (one limited child process reading it with pypdfium2, JSON back
over a pipe) against `pypdf` extracting the same file in this process.

Run: `python tests/bench/bench_extract.py [--pages 300] [--rounds 9] [--profile]`. Both
sides run interleaved, several rounds, so the machine's noise hits both alike; the
ratio is of the best rounds (and, printed too, of the medians). Ours includes starting
the child every time. The app's modules are compiled to bytecode first, as an installed
app has them (pip compiles them, the frozen build ships them). `--profile` also times
the parts of the child's work: its start-up, PDFium's text layout, and the JSON.
Goal (issue 14): at least 100 pages/s and at least 3× pypdf.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pypdf  # noqa: E402

from app.core.documents import extract as extract_module  # noqa: E402
from app.core.documents.extract import DEFAULT_LIMITS, extract  # noqa: E402
from tests.bench.common import Figure, at_least  # noqa: E402
from tests.fixtures import documents  # noqa: E402

TITLE = "Text extraction of a 300-page PDF"
ABOUT = (
    "`extract()` (the checks, then one limited child process reading the file with "
    "pypdfium2 and writing its pages back as one line of JSON; starting the child counted "
    "every time) against `pypdf` extracting the same generated 300-page PDF in the "
    "benchmark's own process; interleaved, best of the rounds. `--profile` (script only) "
    "times the child's parts."
)


def ours(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    document = asyncio.run(extract(path))
    chars = sum(len(page.text) for page in document.pages)
    return time.perf_counter() - started, chars


def baseline(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    reader = pypdf.PdfReader(path)
    chars = sum(len(page.extract_text()) for page in reader.pages)
    return time.perf_counter() - started, chars


def profile(path: Path, pages: int) -> None:
    """Where the child's time goes, each part best of five."""
    from app.core.documents import formats

    env = extract_module._child_env(tempfile.gettempdir())
    python = extract_module.child_command()[0]
    start_up = min(_timed(lambda: subprocess.run(
        [python, "-c", "import pypdfium2; from app.core.documents import extract_child"],
        env=env, check=True)) for _ in range(5))
    bare = min(_timed(lambda: subprocess.run([python, "-c", "pass"], env=env,
                                             check=True)) for _ in range(5))

    def layout() -> None:
        with open(path, "rb") as file:
            formats.read_pdf(file, DEFAULT_LIMITS.caps())

    texts = [page.text for page in asyncio.run(extract(path)).pages]
    print(f"profile: child start-up {start_up * 1000:.0f} ms (a bare interpreter "
          f"{bare * 1000:.0f} ms); PDFium text of {pages} pages in this process "
          f"{min(_timed(layout) for _ in range(5)) * 1000:.0f} ms; JSON out and in "
          f"{min(_timed(lambda: json.loads(json.dumps(texts))) for _ in range(5)) * 1000:.0f}"
          f" ms")


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def measure(pages: int, rounds: int, with_profile: bool = False
            ) -> tuple[list[float], list[float]]:
    """Seconds a round, ours and pypdf's, interleaved."""
    compileall.compile_dir(Path(extract_module.__file__).parents[2], quiet=1)
    times_ours: list[float] = []
    times_base: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        path = documents.pdf_with_pages(Path(folder), pages, filler_lines=45)
        print(f"made a {pages}-page PDF ({path.stat().st_size / 1e6:.1f} MB) "
              f"in {time.perf_counter() - started:.1f} s")
        if with_profile:
            profile(path, pages)
        for round_ in range(1, rounds + 1):
            took_ours, chars_ours = ours(path)
            took_base, chars_base = baseline(path)
            times_ours.append(took_ours)
            times_base.append(took_base)
            print(f"round {round_}: extract() {took_ours:.3f} s ({chars_ours:,} chars), "
                  f"pypdf {took_base:.3f} s ({chars_base:,} chars)", flush=True)
    return times_ours, times_base


def run(pages: int = 300, rounds: int = 9) -> list[Figure]:
    times_ours, times_base = measure(pages, rounds)
    rate, base_rate = pages / min(times_ours), pages / min(times_base)
    medians = statistics.median(times_base) / statistics.median(times_ours)
    note = f"best of {rounds} rounds, the child's start counted; ratio of the medians " \
           f"{medians:.1f}×"
    return [
        at_least(f"text extraction of a {pages}-page PDF", rate, 100, "pages/s", note=note),
        Figure(f"text extraction of a {pages}-page PDF, against pypdf", rate, "pages/s",
               "≥ 3 × baseline", rate >= 3 * base_rate, base_rate, "pypdf in-process",
               note="goal from issue 14"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    times_ours, times_base = measure(args.pages, args.rounds, args.profile)
    ours_rate, base_rate = args.pages / min(times_ours), args.pages / min(times_base)
    median_ratio = statistics.median(times_base) / statistics.median(times_ours)
    print(f"extract(): {ours_rate:,.0f} pages/s   pypdf: {base_rate:,.0f} pages/s   "
          f"ratio: {ours_rate / base_rate:.1f}× (of medians: {median_ratio:.1f}×)")
    ok = ours_rate >= 100 and ours_rate / base_rate >= 3
    print("goal (≥ 100 pages/s and ≥ 3× pypdf):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
