"""The checks every row ends with find what they look for: a secret or a document text in
a file (UTF-8, UTF-16, base64), in a process's command line, or sent to the cloud; and
document text where the user's documents are kept is allowed."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.fixtures.fault_server import RecordedRequest
from tests.fixtures.leaks import assert_nothing_leaked, command_lines, files_with, leaked

SECRET = "sk-or-v1-Hx8TqLm2"
TEXT = "Quillfeather4406"


class Seen:
    def __init__(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.requests = [RecordedRequest("POST", "/api/v1/chat/completions", headers or {},
                                         body)]


def test_each_form_sent_to_the_cloud_is_seen() -> None:
    for body in (f"x {TEXT} y".encode(), base64.b64encode(f"note: {TEXT}!".encode()),
                 urllib.parse.quote(f"a {TEXT}/b").encode()):
        assert leaked(Seen(body), TEXT) == ["POST /api/v1/chat/completions"], body
    assert leaked(Seen(b"nothing to see"), TEXT) == []
    as_credential = Seen(b"{}", {"authorization": f"Bearer {SECRET}"})
    assert leaked(as_credential, SECRET, credential=True) == []
    assert leaked(as_credential, SECRET) != []  # anywhere but as the credential it counts


def test_files_are_searched_in_each_encoding_but_the_document_stores(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text(f"token={SECRET}\n")
    (tmp_path / "crash.txt").write_bytes(f"at {TEXT}".encode("utf-16-le"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "history.sqlite3").write_text(TEXT)
    assert files_with(tmp_path, SECRET) == [tmp_path / "logs" / "a.log"]
    assert files_with(tmp_path, TEXT, allowed=("data/history.sqlite3",)) == [
        tmp_path / "crash.txt"]
    with pytest.raises(AssertionError, match="document text in"):
        assert_nothing_leaked(tmp_path, document_text=[TEXT])
    (tmp_path / "crash.txt").unlink()
    assert_nothing_leaked(tmp_path, document_text=[TEXT])  # the history may hold it
    with pytest.raises(AssertionError, match="secret in"):
        assert_nothing_leaked(tmp_path, secrets=[SECRET])


def test_command_lines_of_a_process_and_its_children_are_read() -> None:
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys; subprocess.run([sys.executable, '-c', "
                               "'import sys; sys.stdin.read()', '--api-key', sys.argv[1]])",
                               SECRET], stdin=subprocess.PIPE)
    try:
        lines: list[list[str]] = []
        while not any("--api-key" in line for line in lines):  # the child has started
            lines = command_lines([parent.pid])
        with pytest.raises(AssertionError, match="secret in argv"):
            assert_nothing_leaked(Path.cwd() / "app", secrets=[SECRET], argv=lines)
    finally:
        assert parent.stdin is not None
        parent.stdin.close()
        parent.wait(timeout=60)
