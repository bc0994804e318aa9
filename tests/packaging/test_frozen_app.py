"""The frozen app, built once per session with packaging/switchboard.spec: its selftest
passes offscreen, the frozen executable runs its own children, the document reader on a
real PDF and the model runtime serving the tiny model, as the app starts them, and its
console twin `switchboard-cli` answers IT's verbs from the same `_internal/`."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from app.core.documents import extract as extract_module
from app.core.llm.openai_client import Finished, OpenAIClient
from app.core.runtime import supervisor as supervisor_module
from app.core.runtime.supervisor import Supervisor
from tests.fixtures.documents import marker, pdf_with_pages
from tests.fixtures.llama_server import LlamaServer
from tests.packaging.conftest import VERSION, Release

ROOT = Path(__file__).parents[2]

# The release takes minutes on two cores (freezing, compressing under wine), inside the
# first test's time limit.
pytestmark = [pytest.mark.frozen, pytest.mark.timeout(1500)]


def _load_freeze() -> ModuleType:
    # packaging/ is not a package (a PyPI package has that name): load the file.
    spec = importlib.util.spec_from_file_location("freeze", ROOT / "packaging" / "freeze.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


freeze = _load_freeze()


@dataclass(frozen=True)
class Frozen:
    app_dir: Path
    work_dir: Path

    @property
    def exe(self) -> Path:
        return Path(freeze.executable(self.app_dir))

    @property
    def cli(self) -> Path:
        return Path(freeze.cli_executable(self.app_dir))


@pytest.fixture(scope="session")
def frozen(release: Release) -> Frozen:
    """The app as the release script froze it (tests/packaging/conftest.py)."""
    return Frozen(release.app_dir, release.work_dir)


@pytest.fixture
def as_frozen(frozen: Frozen, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process as the frozen app sees itself, for the code that builds the children's
    command lines (extract.child_command, supervisor.serve_command)."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(frozen.exe))
    yield frozen.exe


def test_the_frozen_selftest_passes_offscreen(frozen: Frozen) -> None:
    freeze.smoke_run(frozen.app_dir, version=VERSION)


def test_both_frozen_executables_print_the_version_the_build_stamped(frozen: Frozen) -> None:
    # The windowed one too, where it has a stdout to print to (not a Windows GUI .exe).
    for exe in (frozen.cli, *([frozen.exe] if sys.platform != "win32" else [])):
        result = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                                timeout=60)
        assert (result.returncode, result.stdout) == (0, f"switchboard {VERSION}\n"), exe


def test_the_frozen_cli_doctor_prints_the_policy_and_node_as_json(
        frozen: Frozen, office_node: LlamaServer, tmp_path: Path) -> None:
    # The policy fixes the office node, so doctor checks the node IT set, not the user's.
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"office_node_urls": [office_node.base_url],
                                  "cloud_allowed": False, "budget_ceiling_usd": 25}))
    result = subprocess.run(
        [str(frozen.cli), "doctor", "--json"],
        env={**os.environ, "SWITCHBOARD_POLICY": str(policy),
             "SWITCHBOARD_NODE_TOKEN": office_node.api_key},
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["policy"]["file"] == str(policy) and report["policy"]["found"] is True
    assert report["policy"]["problems"] == []
    assert report["policy"]["in_force"] == {
        "office_node_urls": [office_node.base_url], "cloud_allowed": False,
        "budget_ceiling_usd": 25.0, "allowed_planner_models": []}
    node = report["office_node"]
    assert node["url"] == office_node.base_url and node["reachable"] is True
    assert node["models"] == [office_node.model]


def test_the_two_executables_share_one_internal_folder(frozen: Frozen) -> None:
    assert sorted(p.name for p in frozen.app_dir.iterdir()) == sorted(
        [frozen.exe.name, frozen.cli.name, "_internal"])
    assert frozen.cli.is_file() and os.access(frozen.cli, os.X_OK)
    # Each launcher is the bootloader and the app's Python modules (the same PYZ in both);
    # the interpreter, Qt and llama.cpp are only in _internal, once.
    internal = freeze.folder_size(frozen.app_dir / "_internal")
    launchers = frozen.exe.stat().st_size + frozen.cli.stat().st_size
    assert freeze.folder_size(frozen.app_dir) == internal + launchers
    assert abs(frozen.cli.stat().st_size - frozen.exe.stat().st_size) < 2**20
    assert frozen.cli.stat().st_size < 20 * 2**20, "the console launcher carries more " \
                                                   "than the app's Python modules"


def test_the_frozen_document_reader_reads_a_pdf_page_by_page(as_frozen: Path,
                                                             tmp_path: Path) -> None:
    assert extract_module.child_command() == [str(as_frozen), "--extract-document"]
    document = asyncio.run(extract_module.extract(pdf_with_pages(tmp_path, pages=3)))
    assert document.kind == "pdf"
    assert [page.number for page in document.pages] == [1, 2, 3]
    for page in document.pages:
        assert f"This is page {page.number}." in page.text and marker(page.number) in page.text


def test_the_frozen_model_runtime_serves_a_chat_completion(as_frozen: Path,
                                                           tiny_model_path: Path,
                                                           tmp_path: Path) -> None:
    command = supervisor_module.serve_command(
        tiny_model_path, ["--alias", "local", "--n-ctx", "512", "--n-threads", "1"])
    assert command[:2] == [str(as_frozen), "--serve-model"]

    async def main() -> tuple[Finished, int]:
        supervisor = Supervisor(command, tmp_path / "runtime.log", load_timeout_s=60)
        try:
            url, token = await supervisor.ensure_ready()
            pid = supervisor.pid
            assert pid is not None
            client = OpenAIClient(url, token=token, tier="local GPUs")
            try:
                async for event in client.stream_chat([{"role": "user", "content": "hi"}],
                                                      model="local", max_tokens=12):
                    if isinstance(event, Finished):
                        return event, pid
            finally:
                await client.aclose()
        finally:
            await supervisor.stop()
        raise AssertionError("the stream ended without a Finished event")

    finished, pid = asyncio.run(main())
    assert finished.finish_reason == "length" and finished.text
    assert not Path(f"/proc/{pid}").exists(), "the runtime was stopped and reaped"
    assert "load_tensors" in (tmp_path / "runtime.log").read_text()  # llama.cpp's own log


def test_frozen_summarize_reads_the_pdf_in_its_own_child(frozen: Frozen, office_node: LlamaServer,
                                                         tmp_path: Path) -> None:
    pdf = pdf_with_pages(tmp_path, pages=2)
    out = tmp_path / "summary.md"
    result = subprocess.run(
        [str(frozen.exe), "summarize", str(pdf), "--node", office_node.base_url,
         "--out", str(out)],
        env={**os.environ, "SWITCHBOARD_NODE_TOKEN": office_node.api_key},
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("**Summary of known.pdf** (PDF, 2 pages)")


def test_the_bundle_holds_what_the_app_loads_and_leaves_out_the_rest(frozen: Frozen) -> None:
    internal = frozen.app_dir / "_internal"
    files = [p.relative_to(internal).as_posix() for p in internal.rglob("*")
             if p.is_file() or p.is_symlink()]
    assert frozen.exe.is_file() and os.access(frozen.exe, os.X_OK)
    # llama_cpp opens lib/libllama.so by path; the loader then wants its sonames.
    for name in ("libllama.so", "libllama.so.0", "libggml.so", "libggml.so.0",
                 "libggml-base.so.0", "libggml-cpu.so.0"):
        assert (internal / "llama_cpp" / "lib" / name).exists(), name
    assert (internal / "llama_cpp" / "lib" / "libllama.so.0").resolve() == \
        (internal / "llama_cpp" / "lib" / "libllama.so").resolve()
    assert any(re.fullmatch(r"pypdfium2_raw/libpdfium\.so", f) for f in files)
    assert any(re.fullmatch(r"keyring-[^/]+\.dist-info/entry_points\.txt", f) for f in files)
    assert "resources/icons/app.png" in files and "resources/icons/tray-idle.png" in files

    unused = re.compile(r"Qt6(Qml|Quick|Pdf|3D|WebEngine|Multimedia|VirtualKeyboard)"
                        r"|PySide6/Qt(Qml|Quick|Pdf|WebEngine|Multimedia)"
                        r"|PySide6/Qt/translations/|/plugins/(qmltooling|egldevice)"
                        r"|^(PIL|mypy|pytest|_pytest|keyrings|setuptools)/")
    assert [f for f in files if unused.search(f)] == []
    size = freeze.folder_size(frozen.app_dir)
    assert size < 300 * 2**20, f"the frozen app grew to {size / 2**20:.0f} MiB"


def test_the_build_stamps_the_version_it_is_given(frozen: Frozen) -> None:
    resource = (frozen.work_dir / "switchboard" / freeze.VERSION_FILE).read_text()
    tree = ast.parse(resource, mode="eval")  # PyInstaller evaluates this text
    assert isinstance(tree.body, ast.Call) and ast.unparse(tree.body.func) == "VSVersionInfo"
    assert "filevers=(7, 8, 9, 0)" in resource
    assert "StringStruct('FileVersion', '7.8.9')" in resource
    assert "StringStruct('OriginalFilename', 'Switchboard.exe')" in resource
    cli_resource = (frozen.work_dir / "switchboard" / freeze.CLI_VERSION_FILE).read_text()
    assert "filevers=(7, 8, 9, 0)" in cli_resource
    assert "StringStruct('OriginalFilename', 'switchboard-cli.exe')" in cli_resource
    assert (frozen.app_dir / "_internal" / "app" / "VERSION").read_text() == "7.8.9\n"


def test_version_numbers_for_windows() -> None:
    assert freeze.version_numbers("1.2.3") == (1, 2, 3, 0)
    assert freeze.version_numbers("2.0rc1") == (2, 0, 0, 0)
    assert freeze.version_numbers("1.2.3.4") == (1, 2, 3, 4)
    for bad in ("", "v1.2", "1.70000"):
        with pytest.raises(ValueError):
            freeze.version_numbers(bad)


def test_a_bad_version_is_refused_before_freezing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a version"):
        freeze.freeze(tmp_path, version="latest")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in app is a shell script")
def test_smoke_run_raises_with_the_output_of_a_failing_app(tmp_path: Path) -> None:
    exe = Path(freeze.executable(tmp_path))
    exe.write_text("#!/bin/sh\necho \"started with $*\"\necho 'no icons here' >&2\nexit 3\n")
    exe.chmod(0o755)
    with pytest.raises(freeze.FreezeError) as caught:
        freeze.smoke_run(tmp_path)
    message = str(caught.value)
    assert "exit code 3" in message
    assert "started with --selftest" in message and "no icons here" in message


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in app is a shell script")
def test_smoke_run_wants_the_console_executable_to_print_the_version(tmp_path: Path) -> None:
    exe = Path(freeze.executable(tmp_path))
    exe.write_text(f"#!/bin/sh\necho '{freeze.SELFTEST_OK}'\n")
    exe.chmod(0o755)
    cli = Path(freeze.cli_executable(tmp_path))
    cli.write_text("#!/bin/sh\necho 'switchboard 0.1.0'\n")  # not the version stamped
    cli.chmod(0o755)
    freeze.smoke_run(tmp_path)  # any version will do when none is asked for
    with pytest.raises(freeze.FreezeError, match="did not print 'switchboard 7.8.9'"):
        freeze.smoke_run(tmp_path, version=VERSION)


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in app is a shell script")
def test_smoke_run_wants_the_selftest_to_say_ok(tmp_path: Path) -> None:
    exe = Path(freeze.executable(tmp_path))
    exe.write_text("#!/bin/sh\nexit 0\n")  # an app that exits 0 but checked nothing
    exe.chmod(0o755)
    with pytest.raises(freeze.FreezeError, match="exit code 0"):
        freeze.smoke_run(tmp_path)
