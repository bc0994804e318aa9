"""Settings: declared once, validated, saved atomically, and robust to a damaged file."""

import errno
import json
import os
from pathlib import Path

import pytest

from app.core import paths
from app.core.errors import SettingsError, StorageFailed
from app.core.settings import Settings, describe


def test_defaults_then_saved_values_survive_a_reload() -> None:
    settings, problems = Settings.load()
    assert settings == Settings() and problems == []
    changed = settings.changed(node_urls=["https://node.example:8443/v1"], max_tokens=512,
                               temperature=1)
    changed.save()
    loaded, problems = Settings.load()
    assert problems == []
    assert loaded == changed
    assert loaded.temperature == 1.0 and isinstance(loaded.temperature, float)


@pytest.mark.parametrize(("name", "value", "words"), [
    ("max_tokens", 0, "outside"),
    ("max_tokens", "many", "expected int"),
    ("max_tokens", True, "expected int"),
    ("temperature", float("nan"), "not a number"),
    ("temperature", 9.0, "outside"),
    ("node_urls", ["ftp://node"], "not an http"),
    ("node_urls", ["http://[::1/v1"], "not a valid address"),
    ("node_urls", ["http://node:abc/v1"], "port"),
    ("node_urls", ["http://node.example/v1", "http://node:99999/v1"], "port"),
    ("node_urls", ["http://node:0/v1"], "port"),
    ("node_urls", ["http://:8080/v1"], "not an http"),
    ("node_urls", [3], "expected a list of text"),
    ("colour", "blue", "unknown setting"),
])
def test_a_bad_value_is_refused_with_the_setting_named(name: str, value: object,
                                                       words: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings().changed(**{name: value})
    assert words in caught.value.detail
    if name != "colour":
        assert describe(name)["label"].split(" (")[0] in caught.value.detail


def test_a_corrupt_file_is_kept_aside_and_defaults_load() -> None:
    paths.settings_file().write_text("{ this is not json", encoding="utf-8")
    settings, problems = Settings.load()
    assert settings == Settings()
    assert len(problems) == 1 and "damaged" in problems[0]
    kept = list(paths.config_dir().glob("settings.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text() == "{ this is not json"
    assert not paths.settings_file().exists()


def test_one_bad_value_falls_back_to_its_default_and_keeps_the_rest() -> None:
    doc = {"version": 1, "settings": {"node_url": "http://node:8080/v1", "max_tokens": -5}}
    paths.settings_file().write_text(json.dumps(doc), encoding="utf-8")
    settings, problems = Settings.load()
    assert settings.node_url == "http://node:8080/v1"
    assert settings.max_tokens == Settings().max_tokens
    assert len(problems) == 1 and "Longest answer" in problems[0]


def test_saving_on_a_full_disk_raises_a_clear_error_and_keeps_the_old_file(
        monkeypatch: pytest.MonkeyPatch) -> None:
    Settings().changed(node_urls=["http://old:1/v1"]).save()
    before = paths.settings_file().read_text()

    def full_disk(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StorageFailed) as caught:
        Settings().changed(node_urls=["http://new:1/v1"]).save()
    assert "disk" in caught.value.user_text()
    assert paths.settings_file().read_text() == before


def test_settings_file_is_plain_json_with_a_version(switchboard_home: Path) -> None:
    Settings().save()
    doc = json.loads(paths.settings_file().read_text())
    assert doc["version"] == 1 and set(doc["settings"]) == set(Settings().to_dict())


@pytest.mark.parametrize("url", ["http://node.example:8080/v1", "https://[::1]:8443/v1",
                                 "http://10.0.0.5/v1", "https://node.example"])
def test_good_addresses_are_accepted(url: str) -> None:
    assert Settings().changed(node_urls=[url]).node_url == url


def test_a_bare_host_and_port_gets_http_and_several_nodes_are_kept_in_order() -> None:
    settings = Settings().changed(node_urls="ai-1.office.local:8080, http://ai-2:8080/v1\n")
    assert settings.node_urls == ("http://ai-1.office.local:8080", "http://ai-2:8080/v1")
    assert settings.node_url == "http://ai-1.office.local:8080"


def test_a_file_from_before_the_pool_keeps_its_one_node() -> None:
    doc = {"version": 1, "settings": {"node_url": "http://node:8080/v1"}}
    paths.settings_file().write_text(json.dumps(doc), encoding="utf-8")
    settings, problems = Settings.load()
    assert settings.node_urls == ("http://node:8080/v1",) and problems == []


def test_an_unparsable_address_in_the_file_falls_back_to_its_default() -> None:
    doc = {"version": 1, "settings": {"node_url": "http://[::1/v1", "max_tokens": 512}}
    paths.settings_file().write_text(json.dumps(doc), encoding="utf-8")
    settings, problems = Settings.load()
    assert (settings.node_url, settings.max_tokens) == ("", 512)
    assert len(problems) == 1 and "Office node addresses" in problems[0]


def test_a_file_that_is_not_utf8_is_kept_aside_and_defaults_load() -> None:
    paths.settings_file().write_bytes(b'{"version": 1, "settings": {"model": "\xff\xfe"}}')
    settings, problems = Settings.load()
    assert settings == Settings() and "damaged" in problems[0]
    assert len(list(paths.config_dir().glob("settings.json.corrupt-*"))) == 1


def test_a_damaged_file_that_cannot_be_moved_aside_still_loads_defaults(
        monkeypatch: pytest.MonkeyPatch) -> None:
    paths.settings_file().write_text("{ this is not json", encoding="utf-8")

    def refuse(self: Path, target: Path) -> Path:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "replace", refuse)
    settings, problems = Settings.load()
    assert settings == Settings()
    assert len(problems) == 1 and "damaged" in problems[0] and "Permission denied" in problems[0]
    assert paths.settings_file().read_text() == "{ this is not json"


@pytest.mark.parametrize("inner", [
    {"node_url": "http://node:8080/v1", "max_tokens": 512, "colour": "blue"},
    "a shape this version doesn't know",
])
def test_a_file_from_a_newer_version_is_read_as_far_as_known_and_left_alone(
        inner: object) -> None:
    text = json.dumps({"version": 99, "settings": inner})
    paths.settings_file().write_text(text, encoding="utf-8")
    settings, problems = Settings.load()
    if isinstance(inner, dict):
        assert (settings.node_url, settings.max_tokens) == ("http://node:8080/v1", 512)
    else:
        assert settings == Settings()
    assert len(problems) == 1 and "newer version" in problems[0]
    assert paths.settings_file().read_text() == text  # a downgrade doesn't lose it
    assert list(paths.config_dir().glob("settings.json.corrupt-*")) == []
