"""Secrets never reach the log file, not even inside a traceback."""

import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from app.core import logs


@pytest.fixture(autouse=True)
def known_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """add_secret replaces the module's tuple; this puts the old one back after each test."""
    monkeypatch.setattr(logs, "_known_secrets", logs._known_secrets)


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


def test_a_secret_that_contains_another_is_masked_whole() -> None:
    logs.add_secret("abcd")
    logs.add_secret("abcd-and-the-rest-of-it")
    assert logs.redact("key abcd-and-the-rest-of-it, prefix abcd") == (
        f"key {logs.MASK}, prefix {logs.MASK}")


def test_secrets_added_on_other_threads_while_logging_lose_no_line() -> None:
    for i in range(200):
        logs.add_secret(f"existing-secret-{i:04}")
    # Switch threads as often as possible, so additions land mid-redaction.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    failures: list[BaseException] = []
    done = threading.Event()

    def add(worker: int) -> None:
        try:
            for i in range(500):
                logs.add_secret(f"new-secret-{worker}-{i:05}")
        except BaseException as e:  # noqa: BLE001 — reported by the test below
            failures.append(e)

    def log_lines() -> None:
        try:
            while not done.is_set():
                assert logs.MASK in logs.redact("line with existing-secret-0007 in it")
        except BaseException as e:  # noqa: BLE001
            failures.append(e)

    try:
        adders = [threading.Thread(target=add, args=(n,)) for n in range(3)]
        logger = threading.Thread(target=log_lines)
        logger.start()
        for thread in adders:
            thread.start()
        for thread in adders:
            thread.join()
        done.set()
        logger.join()
    finally:
        sys.setswitchinterval(previous)
    assert failures == []
    assert logs.redact("new-secret-2-00499") == logs.MASK
