"""The one place where Qt meets the core's asyncio loop.

The core runs on one asyncio loop in a background thread. Widgets never await and
never block: they hand a coroutine to `Bridge.run` with callbacks, and the callbacks
are called back on the GUI thread through a queued Qt signal. Streamed text is
coalesced so the GUI gets at most ~60 updates a second.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Qt, Signal, Slot

from app.core.chat import ChatEvent, TextAppended

log = logging.getLogger(__name__)

FRAME_S = 1 / 60  # the most often streamed text reaches the GUI
# How long a thread holding the GIL may keep the GUI thread waiting for it. Every call from
# Qt into Python (a paint, a slot, a timer) needs the GIL; with Python's default (5 ms), a
# core thread busy with a fast stream made each such call wait its turn, and a frame
# took ten of those turns.
GIL_SWITCH_S = 0.0005


class CoreLoop:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        sys.setswitchinterval(GIL_SWITCH_S)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="switchboard-core", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit[T](self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self.loop.is_closed() or not self._thread.is_alive():
            # Shut down: late timers and clicks run nothing, and leave no unawaited coroutine.
            coro.close()
            future: concurrent.futures.Future[T] = concurrent.futures.Future()
            future.cancel()
            return future
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, cleanup: Callable[[], Coroutine[Any, Any, Any]] | None = None,
             timeout: float = 5.0) -> None:
        """Cancel what is still running, run `cleanup`, and end the thread."""
        if not self._thread.is_alive():
            return

        async def cancel_the_rest() -> None:
            # Rounds, not one pass: a task being cancelled may start others (httpx's
            # connection attempts do), which must not be left pending when the loop
            # closes (a task that never ran is a coroutine "never awaited").
            for _ in range(5):
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                if not tasks:
                    break
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        async def finish() -> None:
            await cancel_the_rest()
            if cleanup is not None:
                await cleanup()
            await cancel_the_rest()  # whatever the cleanup started
            await self.loop.shutdown_asyncgens()
            # Work handed to threads (asyncio.to_thread: the key store, the disk) ends here,
            # not after the app has moved on: a thread still importing a module beside the
            # main thread deadlocked the selftest about one run in twenty.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.loop.shutdown_default_executor(), timeout)
            # Closed sockets finish closing on the loop's next turns (connection_lost is
            # scheduled with call_soon); stopping before that leaks them.
            for _ in range(3):
                await asyncio.sleep(0)

        with contextlib.suppress(Exception):  # shutting down: nobody is left to tell
            self.submit(finish()).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


class Bridge(QObject):
    """Runs core coroutines for widgets and delivers their results on the GUI thread.

    Signals:
        _deliver(object, object): internal; carries a callback and its argument across
            threads (queued, because the Bridge lives on the GUI thread).
    """

    _deliver = Signal(object, object)

    def __init__(self, core_loop: CoreLoop, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.core_loop = core_loop
        # Queued even from the GUI thread: a callback never runs inside the event handler
        # that caused it (a cancel's callbacks run at once, in the clicking thread).
        self._deliver.connect(self._call, Qt.ConnectionType.QueuedConnection)

    @Slot(object, object)
    def _call(self, callback: Callable[[Any], None], value: Any) -> None:
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, QObject) and not shiboken6.isValid(owner):
            return  # its widget was closed and deleted while the work ran: nobody to tell
        callback(value)

    def post(self, callback: Callable[[Any], None], value: Any = None) -> None:
        """Call `callback(value)` on the GUI thread; safe from any thread."""
        self._deliver.emit(callback, value)

    def run[T](
        self,
        coro: Coroutine[Any, Any, T],
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> concurrent.futures.Future[T]:
        """Run `coro` on the core loop; call back on the GUI thread when it ends.

        Cancellation (see `cancel`) calls neither callback.
        """
        future = self.core_loop.submit(coro)

        def done(f: concurrent.futures.Future[T]) -> None:
            if f.cancelled():
                return
            error = f.exception()
            if error is not None:
                if on_error is not None:
                    self.post(on_error, error)
                else:
                    log.error("background task failed", exc_info=error)
            elif on_done is not None:
                self.post(on_done, f.result())

        future.add_done_callback(done)
        return future

    def call[T](
        self,
        fn: Callable[..., T],
        *args: Any,
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> concurrent.futures.Future[T]:
        """Run a plain function (say, a history query) on the core thread; call back."""

        async def as_coroutine() -> T:
            return fn(*args)

        return self.run(as_coroutine(), on_done, on_error)

    def cancel(self, future: concurrent.futures.Future[Any]) -> None:
        """Cancel a running coroutine; the task sees CancelledError at its next await."""
        future.cancel()  # run_coroutine_threadsafe forwards this to the task, thread-safely

    def coalesced(self, on_event: Callable[[ChatEvent], None]) -> Callable[[ChatEvent], None]:
        """An `emit` for the core that batches TextAppended into one event a frame.

        Runs on the core loop; other events flush the pending text first, so order holds.
        """
        pending: dict[int, list[str]] = {}
        scheduled = False
        loop = self.core_loop.loop

        def flush() -> None:
            nonlocal scheduled
            scheduled = False
            for message_id, parts in pending.items():
                self.post(on_event, TextAppended(message_id, "".join(parts)))
            pending.clear()

        def emit(event: ChatEvent) -> None:
            nonlocal scheduled
            if isinstance(event, TextAppended):
                pending.setdefault(event.message_id, []).append(event.text)
                if not scheduled:
                    scheduled = True
                    loop.call_later(FRAME_S, flush)
                return
            flush()
            self.post(on_event, event)

        return emit

