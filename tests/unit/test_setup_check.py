"""The first-run guide is needed until an office node or a model file is set up, and
only then."""

from __future__ import annotations

import pytest

from app.core.settings import RunOn, Settings
from app.core.setup_check import needs_setup


def test_a_fresh_home_needs_setting_up() -> None:
    settings, problems = Settings.load()  # nothing saved yet in the test's own home
    assert problems == []
    assert needs_setup(settings)


@pytest.mark.parametrize("values", [
    {"node_urls": "ai-node:8080"},  # an office node's bare host:port
    {"node_urls": ["https://a.example/v1", "https://b.example/v1"]},
    {"backend": RunOn.LOCAL_GPUS, "model_path": "/models/qwen.gguf"},
    {"model_path": "/models/qwen.gguf"},  # a model file, though chats still say office node
])
def test_an_office_node_or_a_model_file_is_enough(values: dict[str, object]) -> None:
    assert not needs_setup(Settings().changed(**values))


def test_other_settings_alone_do_not_count() -> None:
    assert needs_setup(Settings().changed(backend=RunOn.LOCAL_GPUS, max_tokens=512,
                                          model="qwen", ca_bundle="/etc/office-ca.pem"))


def test_a_saved_node_stops_the_guide_on_the_next_start() -> None:
    Settings().changed(node_urls="127.0.0.1:8080").save()
    assert not needs_setup(Settings.load()[0])
