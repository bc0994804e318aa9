"""What the fault matrix's rows share: the app run as a real process, a real key store for
it, a secret node token and a document text to look for afterwards, and a wait that
polls a condition (never a fixed sleep)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.documents import LOREM

ROOT = Path(__file__).parents[2]
# Secrets and a document text unlike anything else, so any copy of them can be found.
NODE_TOKEN = "node-token-Vk82QxWm5Lp"
DOCUMENT_TEXT = "Quillfeather4406"


def app_env(**extra: str) -> dict[str, str]:
    """The environment of a Switchboard process: this test's home (set by the root
    conftest), the node token, and no keyring backend forced."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_KEYRING_BACKEND"}
    env.update({"SWITCHBOARD_NODE_TOKEN": NODE_TOKEN, **extra})
    return env


def switchboard(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m app ARGS` to the end."""
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT,
                          env=env or app_env(), input=stdin, capture_output=True, text=True,
                          timeout=timeout)


def start_switchboard(*args: str, env: dict[str, str] | None = None
                      ) -> subprocess.Popen[str]:
    """Start `python -m app ARGS`; its output goes to pipes."""
    return subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ROOT,
                            env=env or app_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def document_pdf(folder: Path, pages: int = 3, *, filler_lines: int = 0,
                 name: str = "board-report.pdf") -> Path:
    """A PDF whose every page carries DOCUMENT_TEXT, and `filler_lines` of prose."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "defusedxml", UserWarning)
        from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.cell(text=f"Page {number}. The budget code is {DOCUMENT_TEXT}.",
                 new_x="LMARGIN", new_y="NEXT")
        for line in range(filler_lines):
            pdf.cell(text=f"{line + 1}. {LOREM[:90]}", new_x="LMARGIN", new_y="NEXT")
    path = folder / name
    pdf.output(str(path))
    return path


@pytest.fixture(scope="session")
def key_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real Secret Service (gnome-keyring-daemon, unlocked, on a D-Bus session bus of its
    own) for app processes; yields the environment that reaches it. Linux only."""
    if sys.platform != "linux":
        pytest.skip("Secret Service is Linux's")
    assert shutil.which("dbus-daemon") and shutil.which("gnome-keyring-daemon"), \
        "packaging/dev-setup.sh installs dbus and gnome-keyring"
    place = tmp_path_factory.mktemp("key-store")
    bus = subprocess.run(["dbus-daemon", "--session", "--fork", "--print-address=1",
                          "--print-pid=1"], capture_output=True, text=True, check=True,
                         timeout=30).stdout.split()
    address, bus_pid = bus[0], int(bus[1])
    # Its own files under the test's folder, never the real user's.
    env = {"DBUS_SESSION_BUS_ADDRESS": address, "HOME": str(place),
           "XDG_DATA_HOME": str(place / "share"), "XDG_RUNTIME_DIR": str(place)}
    try:
        subprocess.run(["gnome-keyring-daemon", "--unlock", "--components=secrets"],
                       input="login-password", env={**os.environ, **env}, text=True,
                       capture_output=True, check=True, timeout=30)
        yield env
    finally:
        os.kill(bus_pid, 15)  # gnome-keyring-daemon leaves with its bus
