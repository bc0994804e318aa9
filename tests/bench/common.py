"""What the benchmarks share: a `Figure` (one measured figure beside its goal and its
baseline from the same run), the machine's description, a process's memory and CPU from
/proc, and the stand-in node run in a child process of its own."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20


@dataclass
class Figure:
    """One figure of a run. `ratio` is always ours ÷ baseline; `met` is None where the
    figure has no goal (it is recorded to be watched)."""

    name: str
    ours: float | None
    unit: str = ""
    goal: str = "—"
    met: bool | None = None
    baseline: float | None = None
    baseline_name: str = ""  # what the baseline is: "bare PySide6 tray", "raw httpx"
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figure:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def at_most(name: str, ours: float, limit: float, unit: str, **kw: Any) -> Figure:
    return Figure(name, ours, unit, f"≤ {limit:g} {unit}", ours <= limit, **kw)


def at_least(name: str, ours: float, limit: float, unit: str, **kw: Any) -> Figure:
    return Figure(name, ours, unit, f"≥ {limit:g} {unit}", ours >= limit, **kw)


def no_goal(name: str, ours: float | None, unit: str, **kw: Any) -> Figure:
    return Figure(name, ours, unit, "—", None, **kw)


def failed(name: str, why: str) -> Figure:
    """A figure that could not be measured: counted as not met."""
    return Figure(name, None, goal="—", met=False, note=why)


def skipped(name: str, why: str) -> Figure:
    return Figure(name, None, goal="—", met=None, note=why)


def number(value: float) -> str:
    """Three significant figures, without exponents: 0.512, 12.3, 1,234."""
    size = abs(value)
    if size >= 100 or value == int(value):
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def with_unit(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{number(value)} {unit}".rstrip() if unit not in ("×", "%") else \
        f"{number(value)}{unit}"


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# ---------------------------------------------------------------- a process, from /proc


def rss_mib(pid: int | None = None) -> float:
    """Resident memory of a process (this one by default), in MiB."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return kib / 1024


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time a process has used, in seconds."""
    stat = Path(f"/proc/{pid or 'self'}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# ---------------------------------------------------------------- the machine


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpuinfo = _read("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.processor() or "?")
    meminfo = _read("/proc/meminfo")
    total = next((int(line.split()[1]) for line in meminfo.splitlines()
                  if line.startswith("MemTotal:")), 0)
    os_name = next((line.split("=", 1)[1].strip('"') for line in
                    _read("/etc/os-release").splitlines() if line.startswith("PRETTY_NAME=")),
                   platform.system())
    try:
        import PySide6
        from PySide6 import QtCore

        qt = f"PySide6 {PySide6.__version__}, Qt {QtCore.qVersion()}"
    except ImportError:
        qt = "no PySide6"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    from app.core.runtime.gpus import inventory

    gpus = ", ".join(f"{g.name} ({g.total_mib:,} MiB)" for g in inventory()) or "no GPU"
    return {
        "cpu": f"{os.cpu_count()} × {model} ({len(os.sched_getaffinity(0))} usable)",
        "memory": f"{total / 1024 / 1024:.1f} GiB",
        "os": f"{os_name}, Linux {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "qt": qt,
        "gpu": gpus,
        "load": load,
    }


def machine_line(m: dict[str, str]) -> str:
    """What a section was measured on, in one line (the load aside)."""
    return "; ".join(m[k] for k in ("cpu", "memory", "os", "python", "gpu") if k in m)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


# ---------------------------------------------------------------- the stand-in node


@dataclass
class StandInNode:
    """`tests/fixtures/fault_server.FaultServer` in a child process of its own, so that
    its threads take neither the GIL nor the CPU time of the process measured. Streams
    `chunks` answers of `chunks` tokens, `delay_s` apart (0: as fast as it can)."""

    process: subprocess.Popen[str] | None = None
    base_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    def __enter__(self) -> Self:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.stand_in"], cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, **self.extra_env})
        assert self.process.stdout is not None
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"the stand-in node did not start: {self.base_url!r}")
        return self

    def answer(self, chunks: int | list[str], delay_s: float = 0.0) -> None:
        """Answer the next chat requests with `chunks` tokens (or these texts)."""
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps({"chunks": chunks, "delay_s": delay_s}) + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline().strip()
        if reply != "ok":
            raise RuntimeError(f"the stand-in node said {reply!r}")

    def requests(self) -> int:
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write('"count"\n')
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def tokens(n: int) -> list[str]:
    """`n` streamed tokens of ordinary prose, about four characters each, with a
    paragraph break now and then."""
    words = ("the", " report", " lists", " budgets", ",", " staff", " and", " dates", ".",
             " Each", " team", " reviews", " its", " part")
    return [words[i % len(words)] + ("\n\n" if i % 60 == 59 else "") for i in range(n)]


def table_rows(figures: list[Figure]) -> list[list[str]]:
    """figure, goal, baseline, ours, ratio, met: one row a figure, as text."""
    rows = []
    for f in figures:
        baseline = "—" if f.baseline is None else \
            f"{f.baseline_name + ' ' if f.baseline_name else ''}{with_unit(f.baseline, f.unit)}"
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "—"
        met = {True: "yes", False: "**no**", None: "—"}[f.met]
        ours = with_unit(f.ours, f.unit) if f.ours is not None else "—"
        rows.append([f.name, f.goal, baseline, ours, ratio, met])
    return rows


def print_table(figures: list[Figure]) -> None:
    head = ["figure", "goal", "baseline", "ours", "ratio", "met"]
    rows = [[cell.replace("**", "") for cell in row] for row in table_rows(figures)]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for f in figures:
        if f.note:
            print(f"  - {f.name}: {f.note}")
