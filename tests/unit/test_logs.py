"""Secrets never reach the log file, not even inside a traceback."""

import logging
from collections.abc import Iterator

import pytest

from app.core import logs


@pytest.fixture
def log_file() -> Iterator[logs.Path]:
    path = logs.setup()
    yield path
    logger = logging.getLogger("app")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


@pytest.mark.parametrize(("line", "secret"), [
    ("Authorization: Bearer abc.def-123", "abc.def-123"),
    ("key sk-or-v1-0123456789abcdef0123 rejected", "sk-or-v1-0123456789abcdef0123"),
    ('{"api_key": "hunter22"}', "hunter22"),
    ("token=zzz-top-secret, retrying", "zzz-top-secret"),
])
def test_things_that_look_like_secrets_are_masked(line: str, secret: str) -> None:
    masked = logs.redact(line)
    assert secret not in masked and logs.MASK in masked


def test_a_known_secret_is_masked_in_messages_and_tracebacks(log_file: logs.Path) -> None:
    logs.add_secret("plain-looking-value-42")
    log = logging.getLogger("app.test")
    log.info("connecting with %s", "plain-looking-value-42")
    try:
        raise ValueError("server echoed plain-looking-value-42")
    except ValueError:
        log.exception("request failed")
    text = log_file.read_text()
    assert "plain-looking-value-42" not in text
    assert text.count(logs.MASK) == 3 and "ValueError" in text  # the traceback is kept
    assert "Z INFO app.test: connecting with" in text  # UTC stamp, level, logger
