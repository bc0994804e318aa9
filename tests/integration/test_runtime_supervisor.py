"""The supervised runtime with the real llama.cpp server on the CPU and the tiny model:
load, stream, cancel, queue, crash and restart, give up, idle unload, no zombies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from app.core import errors
from app.core.llm.openai_client import Delta, Finished, OpenAIClient
from app.core.runtime.supervisor import RuntimeStatus, State, Supervisor, serve_command

HELLO = [{"role": "user", "content": "hi"}]
ROOT = Path(__file__).parents[2]


def supervisor_for(model: Path, tmp_path: Path, statuses: list[RuntimeStatus] | None = None,
                   **kw: object) -> Supervisor:
    return Supervisor(serve_command(model, ["--alias", "local", "--n-ctx", "512",
                                            "--n-threads", "1"]),
                      tmp_path / "runtime.log",
                      on_status=(statuses.append if statuses is not None else lambda s: None),
                      **kw)  # type: ignore[arg-type]


async def answer(supervisor: Supervisor, max_tokens: int = 16) -> Finished:
    url, token = await supervisor.ensure_ready()
    client = OpenAIClient(url, token=token, tier="local GPUs")
    try:
        async for event in client.stream_chat(HELLO, model="local", max_tokens=max_tokens):
            if isinstance(event, Finished):
                return event
    finally:
        await client.aclose()
    raise AssertionError("no Finished event")


def process_state(pid: int) -> str | None:
    """The kernel's state letter for `pid` ("Z" for a zombie), or None once it's reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def gone(pid: int) -> bool:
    """Exited and reaped: not even a zombie is left."""
    return process_state(pid) is None


def test_loads_serves_and_stops_without_a_zombie(tiny_model_path: Path, tmp_path: Path) -> None:
    statuses: list[RuntimeStatus] = []

    async def main() -> tuple[Finished, int]:
        supervisor = supervisor_for(tiny_model_path, tmp_path, statuses)
        try:
            finished = await answer(supervisor, max_tokens=12)
            pid = supervisor.pid
            assert pid is not None
        finally:
            await supervisor.stop()
        return finished, pid

    finished, pid = asyncio.run(main())
    assert finished.finish_reason == "length" and finished.text
    states = [s.state for s in statuses]
    assert states[0] is State.LOADING and State.READY in states and states[-1] is State.STOPPED
    assert any(0 < s.progress < 1 for s in statuses if s.state is State.LOADING), \
        "load progress was reported"
    assert gone(pid)
    assert "load_tensors" in (tmp_path / "runtime.log").read_text()


def test_two_requests_queue_instead_of_cutting_each_other(tiny_model_path: Path,
                                                         tmp_path: Path) -> None:
    async def main() -> list[Finished]:
        supervisor = supervisor_for(tiny_model_path, tmp_path)
        try:
            await supervisor.ensure_ready()
            return await asyncio.gather(answer(supervisor, 200), answer(supervisor, 200))
        finally:
            await supervisor.stop()

    for finished in asyncio.run(main()):
        assert finished.finish_reason == "length"  # both ran to max_tokens, neither was cut
        assert len(finished.text) >= 150


@pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL, and its exit code -9")
def test_a_killed_child_is_a_crash_with_its_log_then_it_restarts(tiny_model_path: Path,
                                                                tmp_path: Path) -> None:
    statuses: list[RuntimeStatus] = []

    async def main() -> tuple[str, Finished]:
        supervisor = supervisor_for(tiny_model_path, tmp_path, statuses)
        try:
            url, token = await supervisor.ensure_ready()
            first_pid = supervisor.pid
            assert first_pid is not None
            client = OpenAIClient(url, token=token, tier="local GPUs")
            received: list[str] = []
            with pytest.raises(errors.SwitchboardError) as caught:
                async for event in client.stream_chat(HELLO, model="local", max_tokens=2000):
                    if isinstance(event, Delta):
                        received.append(event.text)
                        if len(received) == 20:
                            os.kill(first_pid, signal.SIGKILL)
            await client.aclose()
            assert caught.value.partial == "".join(received)
            assert await supervisor.exited(2)
            while supervisor.status.state is not State.CRASHED:
                await asyncio.sleep(0.05)
            crash = supervisor.status.error
            assert isinstance(crash, errors.RuntimeCrashed)
            # It comes back by itself, after a backoff, as a new process.
            again = await answer(supervisor, 8)
            assert supervisor.pid != first_pid
            return crash.detail, again
        finally:
            await supervisor.stop()

    detail, again = asyncio.run(main())
    assert "exit code -9" in detail and "last lines of its log" in detail
    assert again.finish_reason == "length"


def test_three_crashes_in_a_minute_and_it_gives_up_with_advice(tmp_path: Path) -> None:
    statuses: list[RuntimeStatus] = []
    crashing = [sys.executable, "-c", "import sys; print('CUDA error: out of memory', "
                "file=sys.stderr); sys.exit(1)"]

    async def main() -> errors.SwitchboardError:
        supervisor = Supervisor(crashing, tmp_path / "runtime.log", on_status=statuses.append)
        for _ in range(3):
            with pytest.raises(errors.RuntimeCrashed):
                await supervisor.ensure_ready()
            while supervisor.status.state is State.CRASHED:
                await asyncio.sleep(0.05)  # the backoff restart, then its crash
        with pytest.raises(errors.RuntimeGaveUp) as caught:
            await supervisor.ensure_ready()
        await supervisor.stop()
        return caught.value

    error = asyncio.run(main())
    assert "smaller context" in error.hint and "smaller model" in error.hint
    assert "CUDA error: out of memory" in error.detail
    assert [s.state for s in statuses].count(State.CRASHED) == 2
    assert statuses[-1].state is State.GAVE_UP


def test_idle_unload_frees_the_model_and_the_next_request_reloads(tiny_model_path: Path,
                                                                 tmp_path: Path) -> None:
    async def main() -> None:
        supervisor = supervisor_for(tiny_model_path, tmp_path, idle_unload_s=0.5)
        try:
            async with supervisor.in_use():
                await answer(supervisor, 4)
            first = supervisor.pid
            assert first is not None
            deadline = time.monotonic() + 120  # only turns a hang into a failure
            while supervisor.status.state is not State.STOPPED:
                assert time.monotonic() < deadline, "it was not unloaded"
                await asyncio.sleep(0.05)
            assert gone(first)
            async with supervisor.in_use():
                finished = await answer(supervisor, 4)
            assert finished.text and supervisor.pid not in (None, first)
        finally:
            await supervisor.stop()

    asyncio.run(main())


ORPHANING_PARENT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from app.core.runtime.supervisor import Supervisor, serve_command

    async def main():
        s = Supervisor(serve_command(Path(sys.argv[1]), ["--n-ctx", "256"]), Path(sys.argv[2]))
        await s.ensure_ready()
        print(s.pid, flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
""")


@pytest.mark.skipif(sys.platform != "linux", reason="reads the process state in /proc")
def test_the_runtime_exits_when_the_app_is_killed(tiny_model_path: Path, tmp_path: Path) -> None:
    app = subprocess.Popen([sys.executable, "-c", ORPHANING_PARENT, str(tiny_model_path),
                            str(tmp_path / "runtime.log")], cwd=ROOT, stdout=subprocess.PIPE,
                           text=True)
    assert app.stdout is not None
    child = int(app.stdout.readline())
    app.kill()  # no chance to stop its child
    app.wait()
    app.stdout.close()
    deadline = time.monotonic() + 10
    # Its new parent (init, here maybe a sandbox's) reaps it, or it lingers as a zombie:
    # either way it no longer runs, and its memory is freed.
    while process_state(child) not in (None, "Z"):
        assert time.monotonic() < deadline, "the runtime outlived the app"
        time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_until_idle(pid: int, limit_s: float = 60.0) -> float:
    """The CPU seconds the process uses from now until it stops using any (no tick
    across a quarter of a second): a condition, waited for, not a fixed time."""
    start = previous = cpu_seconds(pid)
    deadline = time.monotonic() + limit_s
    while True:
        await asyncio.sleep(0.25)  # the poll interval of the wait, not the measure
        now = cpu_seconds(pid)
        if now == previous:
            return now - start
        assert time.monotonic() < deadline, "the runtime never went idle"
        previous = now


@pytest.mark.skipif(sys.platform != "linux", reason="reads CPU time in /proc")
def test_a_cancelled_stream_stops_generating_and_the_next_request_is_served(
        tiny_model_path: Path, tmp_path: Path) -> None:
    async def main() -> tuple[float, Finished]:
        supervisor = Supervisor(
            serve_command(tiny_model_path, ["--alias", "local", "--n-ctx", "4096",
                                            "--n-threads", "1"]), tmp_path / "runtime.log")
        try:
            url, token = await supervisor.ensure_ready()
            client = OpenAIClient(url, token=token, tier="local GPUs")
            received: list[str] = []

            async def consume() -> None:
                async for event in client.stream_chat(HELLO, model="local", max_tokens=4000):
                    if isinstance(event, Delta):
                        received.append(event.text)

            task = asyncio.create_task(consume())
            while len(received) < 10:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await client.aclose()
            pid = supervisor.pid
            assert pid is not None
            # What the runtime spends from the cancel until it is idle: generating the
            # rest of its 4,000 tokens would take seconds of CPU; noticing the client is
            # gone, a few ticks.
            busy = await cpu_until_idle(pid)
            return busy, await answer(supervisor, 8)
        finally:
            await supervisor.stop()

    busy, finished = asyncio.run(main())
    assert busy < 0.3, f"the runtime kept working for {busy:.2f} CPU s after the cancel"
    assert finished.finish_reason == "length"


def test_a_corrupt_model_is_refused_before_anything_starts(tiny_model_path: Path,
                                                          tmp_path: Path) -> None:
    from app.core.llm.local_gpus import LocalGPUs
    from app.core.settings import Settings

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_model_path.read_bytes()[: tiny_model_path.stat().st_size // 2])
    backend = LocalGPUs(Settings().changed(backend="local GPUs", model_path=str(broken)))

    async def main() -> errors.SwitchboardError:
        health = await backend.health()
        assert not health.ok
        with pytest.raises(errors.ModelRejected) as caught:
            async for _ in backend.stream_chat(HELLO):
                pass
        await backend.aclose()
        return caught.value

    error = asyncio.run(main())
    assert "cut short" in error.detail
    assert backend.supervisor is None  # no process was ever started
