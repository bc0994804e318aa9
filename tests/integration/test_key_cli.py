"""`switchboard key set|status|remove`: the OpenRouter key goes in through standard input
only, lives only in a secure OS key store, and never lands in a file under the app's home.

Tests that need a stored key call the CLI functions in-process, where the test-wide
in-memory key store stands in for the OS's; production code has no hook to allow a test
store in another process. Real processes check what needs none: argv, the refused
backends (chosen with keyring's own `PYTHON_KEYRING_BACKEND`) and exit codes.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.errors
import pytest
from keyrings.alt.file import PlaintextKeyring

from app import cli
from app.__main__ import main
from app.core import cloud_account, secrets
from tests.fixtures.memory_keyring import MemoryKeyring
from tests.fixtures.openrouter_server import API_KEY, KeyState, OpenRouterServer

ROOT = Path(__file__).parents[2]
STORED = (secrets.SERVICE, secrets.OPENROUTER_KEY)
REFUSED_BACKENDS = ["keyring.backends.fail.Keyring", "keyring.backends.null.Keyring",
                    "keyrings.alt.file.PlaintextKeyring"]


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_key(*verbs: str, stdin: str = "", backend: str = "keyring.backends.fail.Keyring",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`switchboard key …` in a real process. Always with a chosen backend: never the
    real user's key store."""
    argv = [sys.executable, "-m", "app", "key", *verbs]
    assert not any(API_KEY in arg for arg in argv)  # what `ps` shows holds no key
    return subprocess.run(argv, cwd=ROOT, input=stdin, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHON_KEYRING_BACKEND": backend,
                                           **(env or {})})


def set_key(key: str = API_KEY) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.key_set(io.StringIO(key + "\n"), out, err)
    return code, out.getvalue(), err.getvalue()


def status(server: OpenRouterServer) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.key_status(out, err, base_url=server.base_url)
    return code, out.getvalue(), err.getvalue()


def files_holding(root: Path, text: str) -> list[Path]:
    """Files under `root` with `text` in them, as it is or base64-encoded (as keyrings.alt's
    file stores write it)."""
    needles = (text.encode(), base64.b64encode(text.encode()).rstrip(b"="))
    return [p for p in root.rglob("*")
            if p.is_file() and any(n in p.read_bytes() for n in needles)]


def plaintext_keyring(file: Path) -> PlaintextKeyring:
    store = PlaintextKeyring()
    store.file_path = str(file)  # an instance-level override keyrings.alt documents
    return store


@pytest.fixture
def openrouter() -> Iterator[OpenRouterServer]:
    with OpenRouterServer(key=KeyState(label="Finance planning", limit="20.00",
                                       usage="7.66", usage_monthly="3.12")) as server:
        yield server


# ------------------------------------------------------------------ set, status, remove


def test_set_reads_stdin_and_status_shows_openrouters_view_but_only_the_last_four(
        memory_keyring: MemoryKeyring, openrouter: OpenRouterServer) -> None:
    code, out, err = set_key(f"  {API_KEY}  ")
    assert (code, err) == (0, "")
    assert memory_keyring.store[STORED] == API_KEY  # stripped, and read back
    assert API_KEY not in out and f"…{API_KEY[-4:]}" in out

    code, out, err = status(openrouter)
    assert (code, err) == (0, "")
    assert "stored (ends in …cdef)" in out
    assert "label:      Finance planning" in out
    assert "limit:      $20.00" in out
    assert "remaining:  $12.34" in out
    assert "this month: $3.12" in out
    assert API_KEY[:-4] not in out and API_KEY[-5:] not in out
    (request,) = [r for r in openrouter.requests if r.path.endswith("/key")]
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


def test_openrouters_default_label_is_not_shown_as_it_holds_part_of_the_key(
        memory_keyring: MemoryKeyring) -> None:
    set_key()
    with OpenRouterServer(key=KeyState(label=f"{API_KEY[:12]}...{API_KEY[-3:]}")) as server:
        code, out, _ = status(server)
    assert code == 0
    assert API_KEY[:12] not in out and "not named" in out
    assert "limit:      none" in out and "remaining:  no limit" in out


def test_main_dispatches_and_status_finds_openrouter_through_the_environment(
        memory_keyring: MemoryKeyring, openrouter: OpenRouterServer,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(API_KEY + "\n"))
    assert main(["key", "set"]) == 0
    monkeypatch.setenv(cloud_account.URL_ENV, openrouter.base_url)
    assert main(["key", "status"]) == 0
    assert "Finance planning" in capsys.readouterr().out
    assert main(["key", "remove"]) == 0
    assert STORED not in memory_keyring.store


def test_on_a_terminal_the_key_is_asked_for_without_echo(
        memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[str] = []

    def getpass(prompt: str, stream: object = None) -> str:
        prompts.append(prompt)
        return API_KEY

    monkeypatch.setattr("getpass.getpass", getpass)
    assert cli.key_set(TTY(), io.StringIO(), io.StringIO()) == 0
    assert prompts == ["OpenRouter key (typing is hidden): "]
    assert memory_keyring.store[STORED] == API_KEY


def test_remove_deletes_the_key_and_status_then_says_none(
        memory_keyring: MemoryKeyring, openrouter: OpenRouterServer) -> None:
    set_key()
    out = io.StringIO()
    assert cli.key_remove(out, io.StringIO()) == 0
    assert "removed" in out.getvalue() and STORED not in memory_keyring.store
    out = io.StringIO()
    assert cli.key_remove(out, io.StringIO()) == 0
    assert "nothing to remove" in out.getvalue()
    code, out_text, _ = status(openrouter)
    assert code == 1 and "none stored" in out_text
    assert not [r for r in openrouter.requests if r.path.endswith("/key")]


def test_status_with_a_rejected_key_exits_2_with_the_reason(
        memory_keyring: MemoryKeyring, openrouter: OpenRouterServer) -> None:
    set_key()
    openrouter.inject("401", on="key")
    code, out, err = status(openrouter)
    assert code == 2
    assert "rejected your OpenRouter key" in err
    assert API_KEY not in out + err


def test_status_with_openrouter_unreachable_exits_2(memory_keyring: MemoryKeyring) -> None:
    set_key()
    with OpenRouterServer() as server:
        url = server.base_url
    out, err = io.StringIO(), io.StringIO()
    assert cli.key_status(out, err, base_url=url) == 2
    assert "can't be reached" in err.getvalue()


# ------------------------------------------------------------------ keys refused


@pytest.mark.parametrize(("pasted", "words"), [
    ("", "no key was given"),
    ("   \n", "no key was given"),
    ("sk-or-v1-short", "too short"),
    (f"Bearer {API_KEY}", "doesn't look like an OpenRouter key"),
    (f'"{API_KEY}"', "doesn't look like an OpenRouter key"),
    ("sk-or-v1-" + "a" * 5000, "more than the 4096"),
])
def test_an_empty_or_implausible_key_is_refused_before_the_store(
        memory_keyring: MemoryKeyring, pasted: str, words: str) -> None:
    code, out, err = set_key(pasted)
    assert code == 2 and out == ""
    assert words in err
    assert memory_keyring.store == {}
    if pasted.strip():
        assert pasted.strip() not in err


def test_a_key_longer_than_the_store_accepts_gets_a_clear_message(
        memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    long_key = "sk-or-v1-" + "b" * 3000
    real_set = memory_keyring.set_password

    def limited(service: str, username: str, password: str) -> None:
        if len(password) > 2560:  # Windows Credential Manager's limit, in bytes
            raise keyring.errors.PasswordSetError(f"blob too large: {password}")
        real_set(service, username, password)

    monkeypatch.setattr(memory_keyring, "set_password", limited)
    code, _, err = set_key(long_key)
    assert code == 2
    assert "would not keep the key" in err and "3009 characters long" in err
    assert "may be more than this key store accepts" in err
    assert long_key not in err
    assert STORED not in memory_keyring.store


@pytest.mark.parametrize("failure", ["raises its own error", "cuts it short"])
def test_a_store_that_fails_or_truncates_leaves_no_half_key(
        memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    def store(service: str, username: str, password: str) -> None:
        if failure == "raises its own error":  # as pywintypes.error escapes keyring's types
            raise OSError(f"the stub received bad data: {password}")
        memory_keyring.store[(service, username)] = password[:20]

    monkeypatch.setattr(memory_keyring, "set_password", store)
    code, _, err = set_key()
    assert code == 2
    assert "would not keep the key" in err and "No key is stored" in err
    assert API_KEY not in err
    assert STORED not in memory_keyring.store


# ------------------------------------------------------------------ real processes


def test_a_key_given_on_the_command_line_is_refused_and_not_echoed(
        memory_keyring: MemoryKeyring, capsys: pytest.CaptureFixture[str]) -> None:
    # `run_key` asserts that its own argv holds no key; this argv holds one on purpose.
    argv = [sys.executable, "-m", "app", "key", "set", API_KEY]
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": REFUSED_BACKENDS[0]}
    result = subprocess.run(argv, cwd=ROOT, input="", capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 2
    assert "read from standard input, never from the command line" in result.stderr
    assert API_KEY not in result.stdout + result.stderr

    with pytest.raises(SystemExit) as exited:  # in-process, with a store that would take it
        main(["key", "set", API_KEY])
    assert exited.value.code == 2
    assert memory_keyring.store == {}
    assert API_KEY not in capsys.readouterr().err


def test_a_subcommand_is_required() -> None:
    result = run_key()
    assert result.returncode == 2 and "set,status,remove" in result.stderr


@pytest.fixture
def plaintext_store(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Where keyrings.alt's PlaintextKeyring writes in a child process, proven by one
    write: otherwise "the file holds no key" could pass by looking in the wrong place."""
    data = tmp_path / "xdg-data"
    env = {"XDG_DATA_HOME": str(data), "HOME": str(tmp_path / "user-home")}
    file = data / "python_keyring" / "keyring_pass.cfg"
    probe = subprocess.run(
        [sys.executable, "-c", "import keyring; keyring.set_password('probe', 'p', 'kept')"],
        env={**os.environ, **env, "PYTHON_KEYRING_BACKEND": REFUSED_BACKENDS[2]},
        capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert plaintext_keyring(file).get_password("probe", "p") == "kept"
    return env, file


@pytest.mark.parametrize("backend", REFUSED_BACKENDS)
def test_a_refused_backend_exits_2_and_nothing_is_written(
        backend: str, switchboard_home: Path,
        plaintext_store: tuple[dict[str, str], Path]) -> None:
    env, plaintext_file = plaintext_store
    result = run_key("set", stdin=API_KEY + "\n", backend=backend, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "No secure key store on this computer; cloud planning is off" in result.stderr
    assert API_KEY not in result.stdout + result.stderr
    assert plaintext_keyring(plaintext_file).get_password(*STORED) is None
    assert files_holding(plaintext_file.parent, API_KEY) == []
    if switchboard_home.exists():
        assert files_holding(switchboard_home, API_KEY) == []

    for verb in ("status", "remove"):
        result = run_key(verb, backend=backend, env=env)
        assert result.returncode == 2, (verb, result.stdout + result.stderr)
        assert "cloud planning is off" in result.stderr


def test_refused_backends_in_process(memory_keyring: MemoryKeyring) -> None:
    # The same refusal without a process, so the store beside it can be checked as well.
    import keyring.backends.fail

    keyring.set_keyring(keyring.backends.fail.Keyring())
    code, _, err = set_key()
    assert code == 2 and "cloud planning is off" in err
    assert memory_keyring.store == {}


# ------------------------------------------------------------------ nothing on disk


def test_after_set_and_status_the_key_is_in_no_file_under_the_home(
        switchboard_home: Path, memory_keyring: MemoryKeyring,
        openrouter: OpenRouterServer) -> None:
    from app.core import logs, paths

    log_file = logs.setup()  # the app's own log, redacting, as the tray app runs it
    logging.getLogger("app").setLevel(logging.DEBUG)  # everything the calls below log
    try:
        paths.settings_file()  # config, data and logs folders exist, as in a real run
        paths.data_dir()
        assert set_key()[0] == 0
        assert status(openrouter)[0] == 0
        openrouter.inject("401", on="key")
        assert status(openrouter)[0] == 2
        assert cli.key_remove(io.StringIO(), io.StringIO()) == 0
    finally:
        logger = logging.getLogger("app")
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
            handler.close()
    assert log_file.parent.is_relative_to(switchboard_home)
    scanned = [p for p in switchboard_home.rglob("*") if p.is_file()]
    assert files_holding(switchboard_home, API_KEY) == [], scanned
    assert files_holding(switchboard_home, API_KEY[:-4]) == []
