"""Switchboard's log file: rotating, in the log folder, times in UTC, and anything that
looks like a secret (or is one the app knows) redacted before it is written."""

from __future__ import annotations

import logging
import logging.handlers
import re
import threading
import time
from pathlib import Path

from app.core import paths

LOG_NAME = "switchboard.log"
MAX_BYTES = 1_000_000
BACKUPS = 3
MASK = "[redacted]"

# Bearer tokens, OpenRouter/OpenAI-style keys, and `token=…` / `api_key: …` pairs.
_PATTERNS = re.compile(
    r"(?P<bearer>Bearer\s+)\S+"
    r"|sk-[A-Za-z0-9_-]{8,}"
    r"|(?P<pair>(?:api[_-]?key|token|password|secret)[\"']?\s*[=:]\s*[\"']?)[^\s,\"'}]+",
    re.IGNORECASE,
)
# Replaced whole, never changed in place: `redact` runs on any thread that logs and reads
# it without a lock while `add_secret` may run on another. Longest first, so that a secret
# containing a shorter one is masked whole rather than leaving its tail in the log.
_known_secrets: tuple[str, ...] = ()
_adding = threading.Lock()


def add_secret(value: str | None) -> None:
    """Mask this exact value wherever it appears in a log line from now on."""
    global _known_secrets
    if value and len(value) >= 4:
        with _adding:
            if value not in _known_secrets:
                _known_secrets = tuple(sorted((*_known_secrets, value), key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _known_secrets:
        text = text.replace(secret, MASK)
    return _PATTERNS.sub(lambda m: (m.group("bearer") or m.group("pair") or "") + MASK, text)


class RedactingFormatter(logging.Formatter):
    """Redacts the whole formatted record, traceback included."""

    converter = time.gmtime  # type: ignore[assignment]  # typeshed misses the argument

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup(level: int = logging.INFO) -> Path:
    """Send the app's log records to the rotating log file; returns its path."""
    path = paths.log_dir() / LOG_NAME
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES,
                                                   backupCount=BACKUPS, encoding="utf-8")
    handler.setFormatter(RedactingFormatter("%(asctime)sZ %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("app")
    root.setLevel(level)
    root.addHandler(handler)
    return path
