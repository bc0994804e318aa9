"""Supervises the runtime's child process: starts it, follows its loading, knows when
it is ready, restarts it with backoff after a crash, gives up after three crashes in a
minute, unloads it when idle, and never leaves a zombie behind.

A crash (a CUDA error, out of memory, `kill -9`) kills the child, never the app: the
app only ever talks to it over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core import errors, logs
from app.core.runtime.serve import PORT_LINE, READY_LINE, TOKEN_ENV

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 12
CRASH_WINDOW_S = 60.0
MAX_CRASHES = 3
BACKOFF_S = (1.0, 2.0, 4.0)
STOP_GRACE_S = 5.0


class State(enum.StrEnum):
    STOPPED = "stopped"
    LOADING = "loading"
    READY = "ready"
    CRASHED = "crashed"  # restarting after a backoff
    GAVE_UP = "gave up"


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    state: State
    progress: float = 0.0  # 0..1 while loading
    error: errors.SwitchboardError | None = None


def serve_command(model: Path, args: Sequence[str]) -> list[str]:
    """How to start the child: the frozen app itself, or this interpreter with `-m app`."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--serve-model", str(model), *args]
    return [sys.executable, "-m", "app", "--serve-model", str(model), *args]


class Supervisor:
    """Owns one child process. Use from one asyncio loop."""

    def __init__(self, command: Sequence[str], log_path: Path, *,
                 idle_unload_s: float = 0.0, load_timeout_s: float = 600.0,
                 on_status: Callable[[RuntimeStatus], None] = lambda status: None) -> None:
        self.command = list(command)
        self.log_path = log_path
        self.idle_unload_s = idle_unload_s
        self.load_timeout_s = load_timeout_s
        self.on_status = on_status
        self.status = RuntimeStatus(State.STOPPED)
        self.base_url = ""
        self.token = ""
        self._process: asyncio.subprocess.Process | None = None
        self._ready: asyncio.Future[None] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._crashes: list[float] = []
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._busy = 0

    # Public ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def last_log_lines(self) -> str:
        return "\n".join(self._tail)

    async def ensure_ready(self) -> tuple[str, str]:
        """Start the child if needed and wait until it serves; (base_url, token)."""
        if self.status.state is State.GAVE_UP:
            raise self.status.error or errors.RuntimeGaveUp()
        if self._ready is None:
            self._start()
        assert self._ready is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.load_timeout_s)
        except TimeoutError:
            await self.stop()
            raise errors.RuntimeCrashed(f"the model did not load within "
                                        f"{self.load_timeout_s:g} s", tier="local GPUs") from None
        return self.base_url, self.token

    @contextlib.asynccontextmanager
    async def in_use(self) -> AsyncIterator[None]:
        """Wrap each request: the idle-unload clock runs only while nothing is in use."""
        self._busy += 1
        self._cancel_idle_timer()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._arm_idle_timer()

    async def exited(self, within_s: float) -> bool:
        """Whether the child is gone (or goes within `within_s`): tells a crash from a
        network hiccup when a stream breaks."""
        process = self._process
        if process is None:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), within_s)
        return process.returncode is not None

    async def stop(self) -> None:
        """Stop the child (terminate, then kill) and wait for it: no zombie."""
        self._stopping = True
        self._cancel_idle_timer()
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        # Not the task running this: the idle unload calls stop() from one of them.
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._process = None
        self._fail_waiters(errors.RuntimeCrashed("the model was stopped", tier="local GPUs"))
        self._ready = None
        self._stopping = False
        if self.status.state is not State.GAVE_UP:
            self._set(RuntimeStatus(State.STOPPED))

    # Child process --------------------------------------------------------------------

    def _set(self, status: RuntimeStatus) -> None:
        self.status = status
        self.on_status(status)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self.token = secrets.token_urlsafe(32)
        logs.add_secret(self.token)
        self._tail.clear()
        self._set(RuntimeStatus(State.LOADING, 0.0))
        self._spawn(self._run())

    async def _run(self) -> None:
        # CUDA numbers GPUs fastest-first by default; NVML and nvidia-smi, which the plan
        # comes from, by PCI bus. One order for both, or tensor_split lands on wrong GPUs.
        env = {**os.environ, TOKEN_ENV: self.token, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        log.info("starting the runtime: %s", " ".join(self.command))
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command, env=env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as e:
            self._crashed(f"could not start: {e}")
            return
        self._process = process
        assert process.stdout is not None and process.stderr is not None
        self._spawn(self._read_stderr(process.stderr))
        async for raw in process.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith(PORT_LINE):
                self.base_url = f"http://127.0.0.1:{int(line.split()[1])}/v1"
            elif line == READY_LINE:
                self._set(RuntimeStatus(State.READY, 1.0))
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
                self._arm_idle_timer()
        code = await process.wait()
        if not self._stopping:
            self._crashed(f"exit code {code}")

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        """Keep the log, the last lines for error messages, and the load progress."""
        dots = 0
        with open(self.log_path, "a", encoding="utf-8", errors="replace") as log_file:
            while chunk := await stream.read(4096):
                text = chunk.decode("utf-8", "replace")
                log_file.write(logs.redact(text))
                log_file.flush()
                for line in text.splitlines():
                    if line.strip(". "):
                        self._tail.append(logs.redact(line.rstrip()))
                if self.status.state is State.LOADING:
                    # llama.cpp prints one '.' per percent of the model loaded, on a line
                    # of their own that grows across reads.
                    new = sum(len(s) for line in text.split("\n")
                              if (s := line.strip()) and set(s) == {"."})
                    if new:
                        dots += new
                        self._set(RuntimeStatus(State.LOADING, min(dots, 99) / 100))

    def _crashed(self, why: str) -> None:
        now = time.monotonic()
        self._crashes = [t for t in self._crashes if now - t < CRASH_WINDOW_S] + [now]
        tail = self.last_log_lines()
        detail = why + (f"; last lines of its log:\n{tail}" if tail else "")
        log.warning("runtime crashed (%s)", detail)
        self._process = None
        if len(self._crashes) >= MAX_CRASHES:
            error: errors.SwitchboardError = errors.RuntimeGaveUp(detail, tier="local GPUs")
            self._set(RuntimeStatus(State.GAVE_UP, error=error))
            self._fail_waiters(error)
            self._ready = None
            return
        error = errors.RuntimeCrashed(detail, tier="local GPUs")
        self._set(RuntimeStatus(State.CRASHED, error=error))
        self._fail_waiters(error)
        delay = BACKOFF_S[min(len(self._crashes), len(BACKOFF_S)) - 1]
        self._ready = None
        self._spawn(self._restart_after(delay))

    async def _restart_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._ready is None and self.status.state is State.CRASHED:
            self._start()

    def _fail_waiters(self, error: errors.SwitchboardError) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # retrieved here, so an unawaited one doesn't warn

    # Idle unload ----------------------------------------------------------------------

    def _arm_idle_timer(self) -> None:
        self._cancel_idle_timer()
        if self.idle_unload_s > 0 and self._busy == 0 and self.status.state is State.READY:
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(self.idle_unload_s,
                                               lambda: self._spawn(self._unload_idle()))

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    async def _unload_idle(self) -> None:
        if self._busy == 0:
            log.info("unloading the model after %g s idle", self.idle_unload_s)
            await self.stop()
