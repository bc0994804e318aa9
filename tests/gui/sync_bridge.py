"""A synchronous stand-in for `app.ui.bridge.Bridge`, for widget tests that need only
simple core calls and not the core thread (as Picard's tests fake its thread pool).

`run` and `call` do the work at once, on the GUI thread, on an asyncio loop the stand-in
owns; the callbacks are then delivered exactly as the real bridge delivers them: queued
to the GUI thread, never inside the handler that caused them, and not to a widget that
has been deleted meanwhile. A test waits for them with `qtbot.waitUntil` or
`qtbot.waitSignal`, as it would with the real one.

What it cannot stand in for: cancelling work part-way (the work is over by the time
`run` returns, so `cancel` finds it done) and streaming coalesced by frame (each event
is delivered on its own). Tests of those use the real bridge through `build_app`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtCore import QObject

from app.core.chat import ChatEvent
from app.ui.bridge import Bridge


class SyncBridge(Bridge):
    """`Bridge`'s API, with the work done at once on the calling (GUI) thread."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(None, parent)  # type: ignore[arg-type]  # no core loop to hand work to
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        """End the loop; what it handed to threads (asyncio.to_thread) is waited for."""
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()

    def run[T](
        self,
        coro: Coroutine[Any, Any, T],
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        try:
            result = self.loop.run_until_complete(coro)
        except Exception as error:  # for on_error; with none, the test fails with it
            future.set_exception(error)
            if on_error is not None:
                self.post(on_error, error)
            else:
                raise
        else:
            future.set_result(result)
            if on_done is not None:
                self.post(on_done, result)
        return future

    def coalesced(self, on_event: Callable[[ChatEvent], None]) -> Callable[[ChatEvent], None]:
        return lambda event: self.post(on_event, event)
