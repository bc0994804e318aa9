"""`switchboard --selftest`: build the whole GUI offscreen in a throw-away home, make
one round trip through the core loop, check the parts a frozen build loses first (native
libraries, the key store backends, the app's own child processes), and report what
failed. The release build smoke-runs the frozen app with it."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

RUNTIME_TIMEOUT_S = 60.0  # the model runtime child: imports and a refused model file


def selftest() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory(prefix="switchboard-selftest-") as home:
        os.environ["SWITCHBOARD_HOME"] = home
        try:
            _run()
            _check_parts(Path(home))
        except Exception as e:  # noqa: BLE001 — the reason goes to stderr, exit non-zero
            print(f"switchboard selftest failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    print("switchboard selftest: ok")
    return 0


def _run() -> None:
    from PySide6.QtWidgets import QApplication

    from app.core.workspace import Workspace
    from app.ui.application import SwitchboardApp

    qapp = QApplication.instance() or QApplication(sys.argv)
    app = SwitchboardApp(Workspace.open())
    try:
        app.start()
        app.show_main()
        app.quick_ask.open()
        chat = app.bridge.call(app.workspace.create_chat, "selftest").result(10)
        if app.bridge.call(app.workspace.chat, chat.id).result(10) != chat:
            raise RuntimeError("the chat store did not keep a chat")
        qapp.processEvents()
        if app.tray.icon().isNull():
            raise RuntimeError("the tray icon did not load")
        if not app.main_window.isVisible():
            raise RuntimeError("the main window did not show")
        app.open_usage()  # its chart library is one a frozen build could lose
        qapp.processEvents()
        if app.usage_window is None or not app.usage_window.isVisible():
            raise RuntimeError("the Usage page did not show")
    finally:
        app.shutdown()


def _check_parts(home: Path) -> None:
    import llama_cpp  # loads llama.cpp's shared libraries through ctypes

    if not llama_cpp.llama_print_system_info():
        raise RuntimeError("llama.cpp loaded but does not answer")
    _check_key_store()
    _check_document_reader(home)
    _check_model_runtime(home)


def _check_key_store() -> None:
    """This system's key store backend is registered (keyring finds backends through
    package metadata) and has what it needs; whether a store is running is `doctor`'s
    business."""
    from importlib.metadata import entry_points

    name, needs = {"win32": ("Windows", "win32ctypes.pywin32.win32cred"),
                   "darwin": ("macOS", None)}.get(sys.platform, ("SecretService", "secretstorage"))
    found = {entry.name: entry for entry in entry_points(group="keyring.backends")}
    if name not in found:
        raise RuntimeError(f"the {name} key store backend is missing (found: "
                           f"{', '.join(sorted(found)) or 'none'})")
    found[name].load()
    if needs:
        __import__(needs)


def _check_document_reader(home: Path) -> None:
    """PDFium writes a PDF here, and the document reader child reads it back."""
    import pypdfium2 as pdfium

    from app.core.documents.extract import extract

    path = home / "selftest.pdf"
    pdf = pdfium.PdfDocument.new()
    try:
        pdf.new_page(200, 200).close()
        pdf.save(str(path))
    finally:
        pdf.close()
    document = asyncio.run(extract(path))
    if document.kind != "pdf" or len(document.pages) != 1:
        raise RuntimeError(f"the document reader read {len(document.pages)} pages of a "
                           f"{document.kind}, not 1 page of a PDF")


def _check_model_runtime(home: Path) -> None:
    """The model runtime child starts, binds its port and reaches llama.cpp, which
    refuses a file that isn't a model; the child must then exit, not hang."""
    from app.core.runtime.serve import PORT_LINE, TOKEN_ENV
    from app.core.runtime.supervisor import serve_command

    not_a_model = home / "selftest-not-a-model.gguf"
    not_a_model.write_bytes(b"not a GGUF model\n")
    command = serve_command(not_a_model, ["--n-ctx", "64", "--n-threads", "1"])
    env = {**os.environ, TOKEN_ENV: secrets.token_urlsafe(16)}
    killed = threading.Event()
    with tempfile.TemporaryFile() as stderr:
        # stdin stays open while it runs: the child exits when its stdin closes.
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=stderr, env=env)

        def kill() -> None:
            killed.set()
            process.kill()

        timer = threading.Timer(RUNTIME_TIMEOUT_S, kill)
        timer.start()
        try:
            assert process.stdout is not None and process.stdin is not None
            out = process.stdout.read().decode("utf-8", "replace")  # until it exits
            code = process.wait()
        finally:
            timer.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
        stderr.seek(0)
        log = stderr.read().decode("utf-8", "replace")
    tail = "\n".join(log.strip().splitlines()[-5:])
    if killed.is_set():
        raise RuntimeError(f"the model runtime did not exit within {RUNTIME_TIMEOUT_S:g} s "
                           f"of being given a file that isn't a model: {tail}")
    if PORT_LINE not in out:
        raise RuntimeError(f"the model runtime did not start (exit code {code}): {tail}")
    if code == 0 or str(not_a_model) not in log:
        raise RuntimeError(f"the model runtime did not reach llama.cpp (exit code {code}): "
                           f"{tail}")
