"""The OpenRouter key in a real Secret Service: gnome-keyring-daemon in a D-Bus session of
its own (`dbus-run-session`), unlocked from stdin as a login would, with the real
`switchboard key` commands — set, read back, status, remove; a store that is locked; and
a Linux user with no key store at all, whom `doctor` and `key set` tell what to install.
Linux only: the key stores of Windows and macOS are tested on their release runners."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.openrouter_server import API_KEY, OpenRouterServer

ROOT = Path(__file__).parents[2]
PYTHON = sys.executable
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Secret Service is Linux's")


def in_session(script: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a shell script in a fresh D-Bus session (gnome-keyring starts only if the script
    starts it); the environment has no keyring backend forced, as a user's has none."""
    assert shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon"), \
        "packaging/dev-setup.sh installs dbus and gnome-keyring"
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PYTHON_KEYRING_BACKEND", "DBUS_SESSION_BUS_ADDRESS")}
    # The keyring's own files go under the test's folder, never the real user's.
    environment.update(SWITCHBOARD_HOME=str(home), PY=PYTHON, HOME=str(home.parent),
                       XDG_DATA_HOME=str(home.parent / "share"), **env)
    return subprocess.run(["dbus-run-session", "--", "bash", "-c", script], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=120)


UNLOCKED = "printf 'login-password' | gnome-keyring-daemon --unlock --components=secrets " \
           ">/dev/null 2>&1\n"


def test_the_key_is_set_read_and_removed_in_a_real_secret_service(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    with OpenRouterServer() as cloud:
        done = in_session(UNLOCKED + """
            printf '%s\\n' "$KEY" | "$PY" -m app key set; echo "set=$?"
            "$PY" -c 'import keyring; print("stored=" + str(keyring.get_password(
                "Switchboard", "openrouter-api-key")))'
            "$PY" -m app key status; echo "status=$?"
            "$PY" -m app key remove; echo "remove=$?"
            "$PY" -m app key status; echo "after=$?"
            """, home, KEY=API_KEY, SWITCHBOARD_OPENROUTER_URL=cloud.base_url)
    out = done.stdout
    assert "set=0" in out, done.stderr
    assert "SecretService" in out  # where it says it stored it
    assert f"stored={API_KEY}" in out  # in the Secret Service, read by another program
    assert "status=0" in out and "label:" in out  # read back, and OpenRouter asked with it
    assert "remove=0" in out and "after=1" in out and "none stored" in out
    # Only the key store ever had it.
    for path in home.rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path


def test_a_locked_secret_service_says_so_and_keeps_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # A login keyring with a key in it, made in one session...
    first = in_session(UNLOCKED + """printf '%s\n' "$KEY" | "$PY" -m app key set""", home,
                       KEY=API_KEY)
    assert first.returncode == 0, first.stderr
    # ...and the next session's daemon never unlocks it: as when the keyring's password
    # is not the login's.
    done = in_session("""
        eval "$(gnome-keyring-daemon --start --components=secrets 2>/dev/null)"
        printf '%s\n' "sk-or-v1-another-key-0123456789abcdef" | "$PY" -m app key set
        echo "set=$?"
        "$PY" -m app key status; echo "status=$?"
        """, home)
    assert "set=2" in done.stdout and "status=2" in done.stdout
    assert done.stderr.count("The system key store is locked.") == 2
    assert "Unlock it" in done.stderr
    assert API_KEY not in done.stderr + done.stdout and "another-key" not in done.stderr


def test_a_linux_user_with_no_key_store_is_told_what_to_install(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PYTHON_KEYRING_BACKEND", "DBUS_SESSION_BUS_ADDRESS")}
    environment["SWITCHBOARD_HOME"] = str(tmp_path / "home")
    # No D-Bus session, so no Secret Service: what a bare server or container has.
    key = subprocess.run([PYTHON, "-m", "app", "key", "set"], input=API_KEY + "\n",
                         cwd=ROOT, env=environment, capture_output=True, text=True,
                         timeout=60)
    assert key.returncode == 2
    assert "No secure key store on this computer" in key.stderr
    assert "gnome-keyring" in key.stderr and "KWallet" in key.stderr
    doctor = subprocess.run([PYTHON, "-m", "app", "doctor"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=60)
    assert "FAIL  key store" in doctor.stdout
    assert "sudo apt install gnome-keyring" in doctor.stdout
