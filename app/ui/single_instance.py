"""One Switchboard per user and home: a second launch brings the first one's window
forward and exits; `switchboard --quit` (what the installer runs before an upgrade)
asks the running one to save its work and quit, and waits until it has.

A `QLockFile` decides who is first (it detects a lock left by a crashed process by its
PID and takes it over); a `QLocalServer` carries the "show yourself" and "quit" messages.

Signals:
    activated(): another launch asked this instance to show its window.
    quickAskRequested(): `switchboard --quick-ask` asked this instance to open quick ask.
    quitRequested(): `switchboard --quit` asked this instance to quit.
"""

from __future__ import annotations

import hashlib
import time

from PySide6.QtCore import QLockFile, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from app.core import paths

SHOW = b"show\n"
QUICK_ASK = b"quick-ask\n"
QUIT = b"quit\n"


def _lock_file() -> str:
    return str(paths.runtime_dir() / "switchboard.lock")


def _server_name() -> str:
    # One name per home directory, so tests with temporary homes don't collide.
    digest = hashlib.sha256(str(paths.runtime_dir()).encode()).hexdigest()[:16]
    return f"switchboard-{digest}"


class SingleInstance(QObject):
    """Signals:
    activated(): a second launch asked this instance to come forward.
    quickAskRequested(): `switchboard --quick-ask` asked for quick ask.
    quitRequested(): `switchboard --quit` asked this instance to quit.
    """

    activated = Signal()
    quickAskRequested = Signal()
    quitRequested = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = QLockFile(_lock_file())
        self._lock.setStaleLockTime(0)  # stale only when its process is gone, never by age
        self._server: QLocalServer | None = None

    def acquire(self) -> bool:
        """True if this is the first instance (now listening); False if another runs."""
        if not self._lock.tryLock(200):
            return False
        QLocalServer.removeServer(_server_name())  # a socket file left by a crash
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(_server_name()):
            raise RuntimeError(f"can't listen for other launches: {server.errorString()}")
        server.newConnection.connect(self._on_connection)
        self._server = server
        return True

    def _on_connection(self) -> None:
        assert self._server is not None
        while (socket := self._server.nextPendingConnection()) is not None:
            socket.readyRead.connect(lambda s=socket: self._on_ready(s))
            socket.disconnected.connect(socket.deleteLater)

    def _on_ready(self, socket: QLocalSocket) -> None:
        message = bytes(socket.readAll().data())
        if message.startswith(SHOW.strip()):
            self.activated.emit()
        elif message.startswith(QUICK_ASK.strip()):
            self.quickAskRequested.emit()
        elif message.startswith(QUIT.strip()):
            self.quitRequested.emit()

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._lock.unlock()


def ask_first_instance_to_show(timeout_ms: int = 3000) -> bool:
    """From a second launch: tell the running instance to show itself."""
    return _send(SHOW, timeout_ms)


def ask_first_instance_for_quick_ask(timeout_ms: int = 3000) -> bool:
    """From `switchboard --quick-ask`: tell the running instance to open quick ask."""
    return _send(QUICK_ASK, timeout_ms)


def ask_running_instance_to_quit(timeout_s: float = 20.0) -> bool:
    """Ask this user's running Switchboard to save its work and quit; True once none runs
    (also when none was running), False if it still runs after `timeout_s`."""
    lock = QLockFile(_lock_file())
    lock.setStaleLockTime(0)
    if lock.tryLock(0):  # nobody holds it: nothing to quit
        lock.unlock()
        return True
    _send(QUIT, 3000)
    # The lock is released only after the instance has saved and shut its core down.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if lock.tryLock(250):
            lock.unlock()
            return True
    return False


def _send(message: bytes, timeout_ms: int) -> bool:
    socket = QLocalSocket()
    socket.connectToServer(_server_name())
    if not socket.waitForConnected(timeout_ms):
        return False
    socket.write(message)
    ok = socket.waitForBytesWritten(timeout_ms)
    socket.disconnectFromServer()
    return ok
