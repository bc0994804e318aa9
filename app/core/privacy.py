"""Text that must never reach the cloud, and the one check that keeps it there.

Document text, what is derived from it (summaries, answers about a document, file names)
and material the user pasted into the composer is marked local-only where it enters the
core (`mark`, `mark_name`). The cloud planner's client asks `refuse_if_local_only` before
every request, whatever code built the request: a request that carries such text is
refused with a typed error, logged, and nothing is sent.

Text is recognised by runs of words: every run of `RUN_WORDS` words of marked text is
kept as a hash (the text itself is not kept), and a request is refused when it shares a
run with it. A shorter text (a file name, a short pasted line) is kept whole, and refused
wherever it appears. Comparison ignores case, punctuation and spacing.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Mapping

from app.core import errors

log = logging.getLogger(__name__)

RUN_WORDS = 6  # long enough that ordinary phrases don't match, short enough for a quote
MIN_NAME_CHARS = 6  # a shorter name is a common word: refusing it would refuse everything
_WORD = re.compile(r"\w+")




def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _runs(words: list[str]) -> Iterable[bytes]:
    for i in range(len(words) - RUN_WORDS + 1):
        yield hashlib.blake2b(" ".join(words[i:i + RUN_WORDS]).encode(),
                              digest_size=8).digest()


class LocalOnly:
    """The local-only text of this process. Thread-safe: documents are marked on the
    core's worker threads while the loop checks a request."""

    def __init__(self) -> None:
        self._runs: set[bytes] = set()
        self._names: set[str] = set()  # short texts, normalised: " ".join(words)
        self._lock = threading.Lock()

    def mark(self, text: str) -> None:
        """Keep `text` from the cloud (a page, a summary, pasted material)."""
        words = _words(text)
        if len(words) < RUN_WORDS:
            self.mark_name(text)
            return
        runs = set(_runs(words))
        with self._lock:
            self._runs |= runs

    def mark_name(self, name: str) -> None:
        """Keep a short text from the cloud wherever it appears (a file name)."""
        normal = " ".join(_words(name))
        if len(normal) >= MIN_NAME_CHARS:
            with self._lock:
                self._names.add(normal)

    def found_in(self, text: str) -> bool:
        words = _words(text)
        normal = " ".join(words)
        with self._lock:
            names, runs = tuple(self._names), self._runs
            if any(name in normal for name in names):
                return True
            return any(run in runs for run in _runs(words))

    def refuse_if_local_only(self, messages: Iterable[Mapping[str, str]]) -> None:
        """Raise LocalOnlyRefused when any message carries local-only text."""
        for message in messages:
            if self.found_in(str(message.get("content", ""))):
                log.error("a request to the cloud carried local-only text; it was refused "
                          "and nothing was sent")
                raise errors.LocalOnlyRefused(tier="cloud planner")

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()
            self._names.clear()


# The process's one registry: text is marked where it enters, checked where it leaves.
LOCAL_ONLY = LocalOnly()
