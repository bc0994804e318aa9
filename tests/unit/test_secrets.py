"""The office node's token lives only in a secure OS key store."""

from pathlib import Path

import keyring
import keyring.backends.fail
import keyring.backends.null
import pytest

from app.core import secrets
from app.core.errors import KeyStoreUnavailable
from tests.fixtures.memory_keyring import MemoryKeyring


def test_round_trip_through_the_key_store(memory_keyring: MemoryKeyring) -> None:
    secrets.set_secret(secrets.NODE_TOKEN, "tok-123")
    assert memory_keyring.store[(secrets.SERVICE, secrets.NODE_TOKEN)] == "tok-123"
    assert secrets.get_secret(secrets.NODE_TOKEN) == "tok-123"
    secrets.delete_secret(secrets.NODE_TOKEN)
    assert secrets.get_secret(secrets.NODE_TOKEN) is None
    secrets.delete_secret(secrets.NODE_TOKEN)  # removing what isn't there is fine


@pytest.mark.parametrize("backend", [keyring.backends.fail.Keyring, keyring.backends.null.Keyring])
def test_an_insecure_or_missing_store_is_refused(backend: type) -> None:
    keyring.set_keyring(backend())
    with pytest.raises(KeyStoreUnavailable) as caught:
        secrets.set_secret(secrets.NODE_TOKEN, "tok-123")
    assert "tok-123" not in str(caught.value)
    assert secrets.get_secret(secrets.NODE_TOKEN) is None
    assert secrets.backend_name().startswith("refused")


def test_a_store_that_loses_the_token_is_caught(memory_keyring: MemoryKeyring,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_keyring, "set_password", lambda *a: None)
    with pytest.raises(KeyStoreUnavailable, match="did not keep"):
        secrets.set_secret(secrets.NODE_TOKEN, "tok-123")


def test_the_environment_overrides_the_store(memory_keyring: MemoryKeyring,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    secrets.set_secret(secrets.NODE_TOKEN, "stored")
    monkeypatch.setenv("SWITCHBOARD_NODE_TOKEN", "from-env")
    assert secrets.get_secret(secrets.NODE_TOKEN) == "from-env"


def test_a_plaintext_file_store_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    from keyrings.alt.file import PlaintextKeyring

    plaintext = PlaintextKeyring()
    plaintext.file_path = str(tmp_path / "keyring_pass.cfg")  # keyrings.alt's own override
    keyring.set_keyring(plaintext)
    with pytest.raises(KeyStoreUnavailable, match="cloud planning is off") as caught:
        secrets.set_secret(secrets.OPENROUTER_KEY, "sk-or-v1-plain-0123456789")
    assert "sk-or-v1-plain" not in str(caught.value)
    assert "PlaintextKeyring" in caught.value.detail
    assert not (tmp_path / "keyring_pass.cfg").exists()
    assert secrets.get_secret(secrets.OPENROUTER_KEY) is None
    assert secrets.backend_name() == "refused: keyrings.alt.file.PlaintextKeyring"
