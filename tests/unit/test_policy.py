"""The machine policy file: read strictly (a wrong type turns the cloud off, an unknown
key is only noted for IT), and the one function that bounds a user's settings by it."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.core.policy import (
    SET_BY_IT,
    NodeTerms,
    Policy,
    bound,
    load_policy,
    policy_file,
    read_policy,
)
from app.core.settings import Settings

NODE_A = "https://ai1.office.example/v1"
NODE_B = "https://ai2.office.example/v1"


def write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def test_the_environment_names_the_file_and_tests_never_read_the_machines(
        tmp_path: Path) -> None:
    assert policy_file() == tmp_path / "policy.json"  # set by tests/conftest.py


def test_a_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    # What the installer (Inno Setup's SaveStringsToUTF8File) and Windows editors write.
    path = tmp_path / "policy.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"budget_ceiling_usd": 7}).encode())
    policy, problems = load_policy(path)
    assert problems == []
    assert policy.budget_ceiling_usd == 7


def test_no_file_is_no_policy() -> None:
    read = read_policy()
    assert (read.policy, read.found, read.problems, read.notes) == (Policy(), False, (), ())


def test_every_key_is_read(tmp_path: Path) -> None:
    read = read_policy(write(tmp_path, {
        "version": 1, "office_node_urls": [NODE_A, NODE_B], "cloud_allowed": False,
        "budget_ceiling_usd": 25, "allowed_planner_models": ["a/b", "c/d"]}))
    assert read.found and read.problems == () and read.notes == ()
    assert read.policy == Policy(office_node_urls=(NODE_A, NODE_B), cloud_allowed=False,
                                 budget_ceiling_usd=25.0,
                                 allowed_planner_models=("a/b", "c/d"))


def test_an_unknown_key_is_noted_for_it_in_the_log_and_the_rest_is_in_force(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, {"budget_celing_usd": 5, "budget_ceiling_usd": 30})
    with caplog.at_level(logging.WARNING, logger="app.core.policy"):
        policy, problems = load_policy(path)
    assert problems == []  # nothing for the user: the file is in force
    assert policy == Policy(budget_ceiling_usd=30.0)
    assert "unknown key 'budget_celing_usd' ignored" in caplog.text
    assert str(path) in caplog.text


def test_a_newer_version_is_read_as_far_as_known(tmp_path: Path) -> None:
    read = read_policy(write(tmp_path, {"version": 2, "cloud_allowed": False,
                                        "printer": "hp"}))
    assert read.problems == () and read.policy == Policy(cloud_allowed=False)
    assert "newer Switchboard (version 2)" in read.notes[0]
    assert "unknown key 'printer' ignored" in read.notes[1]


@pytest.mark.parametrize(("doc", "words"), [
    ({"cloud_allowed": "no"}, "cloud_allowed must be true or false"),
    ({"cloud_allowed": 0}, "cloud_allowed must be true or false"),
    ({"budget_ceiling_usd": "25"}, "budget_ceiling_usd must be a number"),
    ({"budget_ceiling_usd": True}, "budget_ceiling_usd must be a number"),
    ({"budget_ceiling_usd": -1}, "budget_ceiling_usd must be a number"),
    ({"office_node_urls": NODE_A}, "office_node_urls must be a list"),  # not one string's chars
    ({"office_node_urls": [NODE_A, ""]}, "office_node_urls must be a list"),
    ({"office_node_urls": ["ai1.office.example"]}, "not an http:// or https:// address"),
    ({"allowed_planner_models": [1]}, "allowed_planner_models must be a list"),
    ({"allowed_planner_models": None}, "allowed_planner_models must be a list"),
    ({"version": "1"}, "version must be a whole number"),
    ([NODE_A], "must be a JSON object"),
])
def test_a_value_of_the_wrong_type_makes_the_file_not_valid_and_the_cloud_off(
        tmp_path: Path, doc: Any, words: str) -> None:
    path = write(tmp_path, doc)
    read = read_policy(path)
    assert read.found and read.policy == Policy(cloud_allowed=False)
    assert len(read.problems) == 1
    assert f"{path} is not valid" in read.problems[0] and words in read.problems[0]
    assert read.problems[0].endswith("cloud planning is off.")


def test_a_file_that_cannot_be_parsed_turns_the_cloud_off(tmp_path: Path) -> None:
    read = read_policy(write(tmp_path, '{"cloud_allowed": true,'))
    assert read.policy == Policy(cloud_allowed=False)
    assert "can't be read" in read.problems[0]


def test_a_null_ceiling_is_no_ceiling(tmp_path: Path) -> None:
    assert read_policy(write(tmp_path, {"budget_ceiling_usd": None})).policy == Policy()


# -- bounding -----------------------------------------------------------------------------


def test_no_policy_bounds_nothing() -> None:
    settings = Settings().changed(node_urls=[NODE_B], monthly_budget_usd=999,
                                  mode="plan with cloud")
    bounded = bound(settings, Policy())
    assert bounded.settings == settings and bounded.limits == {} and bounded.changes == ()


@pytest.mark.parametrize(("mine", "in_force"), [
    ((), (NODE_A, NODE_B)),  # none chosen: all of IT's, in IT's order
    (("http://elsewhere:8080/v1",), (NODE_A, NODE_B)),  # none allowed: the same
    ((NODE_B,), (NODE_B,)),  # one of IT's (a script's --node): kept
    ((NODE_B + "/", "http://elsewhere:8080/v1", NODE_A), (NODE_B, NODE_A)),  # as IT spells
])
def test_the_office_nodes_are_its_own(mine: tuple[str, ...], in_force: tuple[str, ...]
                                      ) -> None:
    policy = Policy(office_node_urls=(NODE_A, NODE_B))
    bounded = bound(Settings(node_urls=mine), policy)
    assert bounded.settings.node_urls == in_force
    limit = bounded.limits["node_urls"]
    assert limit.choices == (NODE_A, NODE_B) and limit.fixed
    assert limit.why.startswith(SET_BY_IT)


def test_one_office_node_is_fixed() -> None:
    bounded = bound(Settings(node_urls=(NODE_B,)), Policy(office_node_urls=(NODE_A,)))
    assert bounded.settings.node_urls == (NODE_A,)
    assert bounded.limits["node_urls"].fixed and bounded.limits["node_urls"].why == SET_BY_IT
    assert bounded.changes == (f"Office node addresses: IT's policy puts {(NODE_A,)!r} in "
                               f"place of {(NODE_B,)!r}",)


def test_it_names_its_nodes_and_their_running_cost(tmp_path: Path) -> None:
    read = read_policy(write(tmp_path, {"office_node_urls": [
        {"url": NODE_A, "name": "GPU room", "usd_per_million_tokens": 0.05}, NODE_B]}))
    assert not read.problems
    policy = read.policy
    assert policy.office_node_urls == (NODE_A, NODE_B)
    assert policy.terms(NODE_A).name == "GPU room"
    assert policy.terms(NODE_A + "/").usd_per_million_tokens == Decimal("0.05")
    assert policy.terms(NODE_B) == NodeTerms()


@pytest.mark.parametrize("entry", [{"url": NODE_A, "cost": 1}, {"name": "x"},
                                   {"url": NODE_A, "usd_per_million_tokens": -1},
                                   {"url": NODE_A, "name": 3}])
def test_a_wrong_node_entry_turns_the_cloud_off(tmp_path: Path, entry: object) -> None:
    read = read_policy(write(tmp_path, {"office_node_urls": [entry]}))
    assert read.problems and not read.policy.cloud_allowed


def test_bounding_twice_changes_nothing_more() -> None:
    policy = Policy(office_node_urls=(NODE_A,), cloud_allowed=False, budget_ceiling_usd=5,
                    allowed_planner_models=("a/b",))
    once = bound(Settings(node_urls=(NODE_B,), monthly_budget_usd=50, mode="auto"), policy)
    twice = bound(once.settings, policy)
    assert twice.settings == once.settings and twice.changes == ()
    assert twice.limits == once.limits
