"""Benchmark: text extraction of a generated 300-page PDF, in pages per second, through
the app's `extract()` (a limited child process running PDFium, JSON back over a pipe)
against `pypdf` extracting the same file in this process.

Run: `python tests/bench/bench_extract.py [--pages 300] [--rounds 3]`. Both sides run
interleaved, best of several rounds, so the machine's noise hits both alike; ours
includes starting the child every time. Goal (issue 5): at least 100 pages/s and at
least 5× pypdf.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pypdf  # noqa: E402

from app.core.documents.extract import extract  # noqa: E402
from tests.fixtures import documents  # noqa: E402


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        path = documents.pdf_with_pages(Path(folder), args.pages, filler_lines=45)
        print(f"made a {args.pages}-page PDF ({path.stat().st_size / 1e6:.1f} MB) "
              f"in {time.perf_counter() - started:.1f} s")
        best_ours = best_base = float("inf")
        for round_ in range(1, args.rounds + 1):
            took_ours, chars_ours = ours(path)
            took_base, chars_base = baseline(path)
            best_ours, best_base = min(best_ours, took_ours), min(best_base, took_base)
            print(f"round {round_}: extract() {took_ours:.3f} s ({chars_ours:,} chars), "
                  f"pypdf {took_base:.3f} s ({chars_base:,} chars)")
    ours_rate, base_rate = args.pages / best_ours, args.pages / best_base
    print(f"extract(): {ours_rate:,.0f} pages/s   pypdf: {base_rate:,.0f} pages/s   "
          f"ratio: {ours_rate / base_rate:.1f}×")
    ok = ours_rate >= 100 and ours_rate / base_rate >= 5
    print("goal (≥ 100 pages/s and ≥ 5× pypdf):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
