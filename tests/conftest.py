"""Test-wide set-up: an offscreen Qt, a throw-away Switchboard home and an in-memory key
store for every test, and the servers the tests talk to."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest

# Before Qt is imported anywhere: no test needs a real screen unless it starts Xvfb.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.core import secrets  # noqa: E402
from tests.fixtures.fault_server import FaultServer  # noqa: E402
from tests.fixtures.memory_keyring import MemoryKeyring  # noqa: E402

pytest_plugins = ["tests.fixtures.pytest_fixtures"]

TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(TESTS).parts
        if parts[0] == "gui":
            item.add_marker(pytest.mark.gui)
        elif parts[0] == "e2e":
            item.add_marker(pytest.mark.e2e)
            if sys.platform != "linux":
                item.add_marker(pytest.mark.skip(reason="runs the app under Xvfb with an X11 tray"))


@pytest.fixture(autouse=True)
def switchboard_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own home; nothing touches the real user's files."""
    home = tmp_path / "home"
    monkeypatch.setenv("SWITCHBOARD_HOME", str(home))
    monkeypatch.delenv("SWITCHBOARD_NODE_TOKEN", raising=False)
    # No machine policy unless a test writes one: the real /etc/switchboard must not count.
    monkeypatch.setenv("SWITCHBOARD_POLICY", str(tmp_path / "policy.json"))
    return home


@pytest.fixture(autouse=True)
def nothing_marked_local_only() -> Iterator[None]:
    """What one test marked local-only must not refuse (or pass) another's requests."""
    from app.core.privacy import LOCAL_ONLY

    LOCAL_ONLY.clear()
    yield
    LOCAL_ONLY.clear()


@pytest.fixture(autouse=True)
def memory_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryKeyring]:
    """The in-memory key store, allowed as if it were a secure OS store."""
    backend = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    monkeypatch.setattr(secrets, "SECURE_BACKENDS",
                        secrets.SECURE_BACKENDS | {"tests.fixtures.memory_keyring.MemoryKeyring"})
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server
