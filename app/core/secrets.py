"""Secrets (the office node's token) kept only in the OS keyring, never in a file.

Only keyring backends on an allow-list of secure stores are used (Windows Credential
Manager, macOS Keychain, Secret Service, KWallet); a plaintext, null or failing backend
is refused. For scripts and CI, `SWITCHBOARD_NODE_TOKEN` in the environment overrides
the stored token; it is read, never written anywhere.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from app.core import logs
from app.core.errors import KeyStoreLocked, KeyStoreUnavailable

# keyring is imported where it is used: finding the backend loads several modules and
# talks to the system's key service, which the tray need not wait for.
if TYPE_CHECKING:
    from keyring.backend import KeyringBackend
    from keyring.errors import KeyringError

SERVICE = "Switchboard"
NODE_TOKEN = "office-node-token"
OPENROUTER_KEY = "openrouter-api-key"
ENV_OVERRIDES = {NODE_TOKEN: "SWITCHBOARD_NODE_TOKEN"}  # the cloud key has none: keyring only

# Fully qualified class names of backends that keep secrets encrypted by the OS.
SECURE_BACKENDS = {
    "keyring.backends.Windows.WinVaultKeyring",
    "keyring.backends.macOS.Keyring",
    "keyring.backends.SecretService.Keyring",
    "keyring.backends.libsecret.Keyring",
    "keyring.backends.kwallet.DBusKeyring",
    "keyring.backends.kwallet.DBusKeyringKWallet4",
}


def _qualname(backend: KeyringBackend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def secure_backend() -> KeyringBackend | None:
    """The keyring backend to use, or None when no secure one is available."""
    import keyring

    backend = keyring.get_keyring()
    candidates = getattr(backend, "backends", None) or [backend]  # ChainerBackend wraps several
    for candidate in candidates:
        if _qualname(candidate) in SECURE_BACKENDS:
            return candidate
    return None


def backend_name() -> str:
    import keyring

    backend = secure_backend()
    return _qualname(backend) if backend else f"refused: {_qualname(keyring.get_keyring())}"


def _require() -> KeyringBackend:
    import keyring

    backend = secure_backend()
    if backend is None:
        raise KeyStoreUnavailable(_qualname(keyring.get_keyring()))
    return backend


def get_secret(name: str) -> str | None:
    env = ENV_OVERRIDES.get(name)
    if env and os.environ.get(env):
        value: str | None = os.environ[env]
    elif (backend := secure_backend()) is None:
        return None
    else:
        import keyring.errors

        try:
            value = backend.get_password(SERVICE, name)
        except keyring.errors.KeyringError as e:
            # Locked, or its service is not answering: say so, rather than carry on
            # as if no token were saved (every request would then be refused).
            raise _failed(e, "the key store could not be read") from None
    logs.add_secret(value)  # whatever else goes wrong, this value never reaches the log
    return value


def set_secret(name: str, value: str) -> None:
    """Store `value` and read it back, proving the store kept it."""
    import keyring.errors

    backend = _require()
    logs.add_secret(value)
    try:
        backend.set_password(SERVICE, name, value)
        kept = backend.get_password(SERVICE, name)
    except keyring.errors.KeyringError as e:
        # The backend's message can quote what it was given; never let the secret through.
        raise _failed(e) from None
    if kept != value:
        raise KeyStoreUnavailable("the key store did not keep the token")


def delete_secret(name: str) -> None:
    import keyring.errors

    backend = _require()
    try:
        backend.delete_password(SERVICE, name)
    except keyring.errors.PasswordDeleteError:
        pass
    except keyring.errors.KeyringError as e:
        raise _failed(e) from None


def _failed(e: KeyringError, what: str = "") -> KeyStoreUnavailable:
    """The error for a key store that failed; only the failure's type is named (its
    message may quote what it was given)."""
    import keyring.errors

    detail = f"{what} ({type(e).__name__})" if what else type(e).__name__
    # Locked, or (InitError) its keyring could not be opened or made without a prompt.
    if isinstance(e, keyring.errors.KeyringLocked | keyring.errors.InitError):
        return KeyStoreLocked(detail)
    return KeyStoreUnavailable(detail)
