"""Notifications from the tray, for what a user away from the window wants to know: a long
answer or summary has finished, the chat tier stopped answering, or answers again."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject

from app.core.tier_status import Availability, TierState

LONG_WORK_S = 20.0  # shorter work the user is likely still watching


class Notifier(QObject):
    """Decides what is worth a notification; `show(title, text)` shows it.

    `away()` says whether the user is elsewhere (the window hidden or not active): work
    that finishes while they watch needs no notification.
    """

    def __init__(self, show: Callable[[str, str], None], away: Callable[[], bool],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._show = show
        self._away = away
        self._started: float | None = None
        self._was: Availability | None = None
        self.long_work_s = LONG_WORK_S

    def busy_changed(self, busy: bool, what: str = "answer") -> None:
        """An answer (or summary: `what`) started or ended."""
        if busy:
            self._started = time.monotonic()
            return
        started, self._started = self._started, None
        if started is not None and time.monotonic() - started >= self.long_work_s \
                and self._away():
            self._show("Switchboard", f"Your {what} is ready.")

    def tier_changed(self, tier: TierState) -> None:
        """Say when the tier goes down, and when it answers again after that; not when it
        is first checked or set up."""
        was, self._was = self._was, tier.availability
        if tier.down and was in (Availability.READY, Availability.LOADING):
            self._show("Switchboard", f"{tier.problem} Switchboard keeps checking.")
        elif was is Availability.DOWN and tier.availability is Availability.READY:
            self._show("Switchboard", f"{tier.line.split(':', 1)[0]} answers again.")
