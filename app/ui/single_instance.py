"""One Switchboard per user and home: a second launch brings the first one's window
forward and exits.

A `QLockFile` decides who is first (it detects a lock left by a crashed process by its
PID and takes it over); a `QLocalServer` carries the "show yourself" message.

Signals:
    activated(): another launch asked this instance to show its window.
"""

from __future__ import annotations

import hashlib

from PySide6.QtCore import QLockFile, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from app.core import paths

SHOW = b"show\n"


def _server_name() -> str:
    # One name per home directory, so tests with temporary homes don't collide.
    digest = hashlib.sha256(str(paths.runtime_dir()).encode()).hexdigest()[:16]
    return f"switchboard-{digest}"


class SingleInstance(QObject):
    """Signals:
    activated(): a second launch asked this instance to come forward.
    """

    activated = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = QLockFile(str(paths.runtime_dir() / "switchboard.lock"))
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
        if bytes(socket.readAll().data()).startswith(SHOW.strip()):
            self.activated.emit()

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._lock.unlock()


def ask_first_instance_to_show(timeout_ms: int = 3000) -> bool:
    """From a second launch: tell the running instance to show itself."""
    socket = QLocalSocket()
    socket.connectToServer(_server_name())
    if not socket.waitForConnected(timeout_ms):
        return False
    socket.write(SHOW)
    ok = socket.waitForBytesWritten(timeout_ms)
    socket.disconnectFromServer()
    return ok
