"""The benchmark suite in one command: runs every benchmark (each in a fresh interpreter of
its own), prints each figure beside its goal and its baseline from the same run, and
rewrites tests/bench/RESULTS.md (from results.json, which keeps every benchmark's last
figures, so `--only` rewrites just its sections).

Run from the repository root:

    python -m tests.bench                      # everything, about 10 minutes
    python -m tests.bench --only client        # one (repeat --only for more)
    python -m tests.bench --list               # the names
    python -m tests.bench --no-write           # print, leave RESULTS.md as it is

Not part of `.ci/run`'s pass/fail: the exit status is 0 whether goals are met or not
(1 only if a benchmark could not run). Each benchmark is also a script of its own:
`python tests/bench/bench_<name>.py --help`.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python tests/bench/__main__.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import (
    REPO,
    Figure,
    failed,
    machine,
    machine_line,
    print_table,
    table_rows,
)

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_JSON = HERE / "results.json"
# In order: the cheap and the start-up ones first, the long replays last.
BENCHES = ("startup", "idle", "client", "streaming", "chat_view", "soak", "ui_stall",
           "extract", "summary", "local_runtime", "economics", "cuda")
TIMEOUT_S = 900


def module_of(name: str) -> Any:
    return importlib.import_module(f"tests.bench.bench_{name}")


# ---------------------------------------------------------------- one benchmark, in a child


def child(name: str, out: Path) -> int:
    """Run one benchmark here and write its figures to `out` as JSON."""
    figures = module_of(name).run()
    out.write_text(json.dumps([f.as_json() for f in figures]))
    return 0


def run_one(name: str, timeout: float) -> tuple[list[Figure], float]:
    """Run one benchmark in a fresh interpreter; its progress goes to this stdout, its
    stderr (Qt's notices) to a file shown only if it fails."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    # No machine policy: /etc/switchboard must not change what is measured.
    env.setdefault("SWITCHBOARD_POLICY", "/nonexistent/switchboard-policy.json")
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        out, err = Path(folder) / "figures.json", Path(folder) / "stderr.txt"
        started = time.perf_counter()
        with err.open("w") as stderr:
            try:
                done = subprocess.run([sys.executable, "-m", "tests.bench", "--child", name,
                                       "--out", str(out)], cwd=REPO, env=env,
                                      stderr=stderr, timeout=timeout, check=False)
                code: int | str = done.returncode
            except subprocess.TimeoutExpired:
                code = f"timed out after {timeout:g} s"
        took = time.perf_counter() - started
        if code == 0 and out.exists():
            return [Figure.from_json(f) for f in json.loads(out.read_text())], took
        tail = [line for line in err.read_text(errors="replace").splitlines() if line.strip()]
        print("\n".join(tail[-25:]), file=sys.stderr)
        why = tail[-1] if tail else "no output"
        return [failed(f"{name}: did not finish", f"exit {code}: {why[:300]}")], took


# ---------------------------------------------------------------- RESULTS.md


def load_results() -> dict[str, Any]:
    try:
        data = json.loads(RESULTS_JSON.read_text())
    except (OSError, ValueError):
        return {"benches": {}}
    return data if isinstance(data.get("benches"), dict) else {"benches": {}}


def markdown(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m tests.bench`, which runs every benchmark here and rewrites "
        "this file (`--only NAME` rewrites one section). Every baseline runs in the same "
        "process, or the same run, as what it is compared with, interleaved where it can: "
        "the machines are shared and noisy, so absolute figures move between runs while "
        "the ratios hold. **ratio** is always ours ÷ baseline. Not part of `.ci/run`'s "
        "pass/fail.",
        "",
        f"Machine: {m.get('cpu', '?')}; {m.get('memory', '?')} of memory; "
        f"{m.get('os', '?')}; {m.get('python', '?')}; {m.get('qt', '?')}; "
        f"{m.get('gpu', 'GPU not recorded')}; Qt offscreen unless said; load average "
        f"{m.get('load', '?')} when the last run began ({results.get('run_at', '?')}; each "
        "section says when it was measured, and on what if not here).",
        "",
    ]
    benches = [(n, results["benches"][n]) for n in BENCHES if n in results["benches"]]
    here = machine_line(m)
    missed = [(b, Figure.from_json(f)) for _, b in benches for f in b["figures"]
              if f.get("met") is False]
    if missed:
        lines += ["Goals not met in the last run:", ""]
        lines += [f"- {b['title']}: {f.name}" + (f" — {_cell(f.note)}" if f.ours is None else "")
                  + (f" (on {b['machine']})" if b.get("machine", here) != here else "")
                  for b, f in missed]
        lines.append("")
    for name, bench in benches:
        figures = [Figure.from_json(f) for f in bench["figures"]]
        lines += [f"## {bench['title']} — `python tests/bench/bench_{name}.py`", ""]
        if bench.get("about"):
            lines += [bench["about"], ""]
        where = f" on {bench['machine']}" if bench.get("machine", here) != here else ""
        took = f", in {bench['seconds']:.0f} s" if bench.get("seconds") else ""
        lines += [f"Measured {bench.get('run_at', '?')}{where}{took}.", ""]
        lines += ["| figure | goal | baseline | ours | ratio | met |",
                  "|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table_rows(figures)]
        notes = [f"- {f.name}: {f.note}" for f in figures if f.note]
        if notes:
            lines += ["", *notes]
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=BENCHES, metavar="NAME",
                        help="run only this benchmark (repeatable); see --list")
    parser.add_argument("--list", action="store_true", help="list the benchmarks")
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md as it is")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S,
                        help="seconds one benchmark may take (default %(default)s)")
    parser.add_argument("--child", choices=BENCHES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.out)
    if args.list:
        for name in BENCHES:
            print(f"{name:14} {module_of(name).TITLE}")
        return 0

    names = args.only or list(BENCHES)
    results = load_results()
    results["machine"] = machine()
    results["run_at"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print("Machine: " + "; ".join(f"{k} {v}" for k, v in results["machine"].items()))
    everything: list[tuple[str, Figure]] = []
    ran_all = True
    started = time.perf_counter()
    for name in names:
        module = module_of(name)
        print(f"\n== {name}: {module.TITLE} ==", flush=True)
        figures, took = run_one(name, args.timeout)
        ran_all &= not any(f.name.endswith("did not finish") for f in figures)
        print(f"-- {name}, {took:.0f} s:")
        print_table(figures)
        everything += [(name, f) for f in figures]
        if all(f.ours is None and f.met is None for f in figures) \
                and name in results["benches"]:
            continue  # can't run here (no GPU): keep what was measured where it could
        results["benches"][name] = {
            "title": module.TITLE, "about": getattr(module, "ABOUT", ""),
            "figures": [f.as_json() for f in figures], "seconds": took,
            "run_at": results["run_at"], "machine": machine_line(results["machine"])}
        if not args.no_write:  # after each, so a long run interrupted keeps what it measured
            RESULTS_JSON.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
            RESULTS_MD.write_text(markdown(results))

    print(f"\n== all, {(time.perf_counter() - started) / 60:.1f} min ==")
    print_table([f for _, f in everything])
    missed = [f"{name}: {f.name}" for name, f in everything if f.met is False]
    print(f"\n{len(missed)} goal(s) not met" + (":\n  " + "\n  ".join(missed) if missed else ""))
    if not args.no_write:
        print(f"rewrote {RESULTS_MD.relative_to(REPO)}")
    return 0 if ran_all else 1


if __name__ == "__main__":
    sys.exit(main())
