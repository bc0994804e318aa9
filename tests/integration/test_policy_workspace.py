"""IT's machine policy where the app meets it: the workspace bounds the settings it loads
(a hand-edited settings.json can't lift a limit) and everything it saves, and
`switchboard doctor` shows IT what is in force."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from app import cli
from app.core.settings import Settings
from app.core.workspace import Workspace
from tests.fixtures.policy_files import hand_edit_settings, saved, write_policy

NODE = "http://127.0.0.1:9/v1"  # nothing listens on the discard port: doctor fails fast


def test_a_hand_edited_settings_file_is_bounded_on_load() -> None:
    write_policy({"office_node_urls": [NODE], "budget_ceiling_usd": 25,
                  "allowed_planner_models": ["a/b"], "cloud_allowed": False})
    hand_edit_settings(node_url="http://elsewhere:8080/v1", monthly_budget_usd=500,
                       planner_model="x/y", mode="plan with cloud")
    workspace = Workspace.open()
    try:
        s = workspace.settings
        assert (s.node_url, s.monthly_budget_usd, s.planner_model, s.mode) == \
            (NODE, 25.0, "a/b", "local only")
        assert workspace.problems == []  # bounded quietly; Settings shows the limits
        assert set(workspace.limits()) == {"node_urls", "monthly_budget_usd",
                                           "planner_model", "mode"}
        assert saved()["monthly_budget_usd"] == 500  # loading never writes the file
    finally:
        asyncio.run(workspace.close())


def test_saving_cannot_lift_a_limit() -> None:
    write_policy({"office_node_urls": [NODE], "budget_ceiling_usd": 25, "cloud_allowed": False})
    workspace = Workspace.open()

    async def main() -> None:
        try:
            lifted = Settings().changed(node_urls=["http://elsewhere:8080/v1"],
                                        monthly_budget_usd=500, temperature=0.3)
            await workspace.apply_settings(lifted, None)
            on_disk = saved()
            assert (on_disk["node_urls"], on_disk["monthly_budget_usd"]) == ([NODE], 25.0)
            assert on_disk["temperature"] == 0.3  # what the policy doesn't bound is as sent
            assert workspace.settings == Settings.load()[0]
            await workspace.set_mode("plan with cloud")
            assert saved()["mode"] == "local only" == workspace.settings.mode
        finally:
            await workspace.close()

    asyncio.run(main())


def test_changes_the_policy_makes_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    write_policy({"budget_ceiling_usd": 25, "colour": "blue"})
    hand_edit_settings(monthly_budget_usd=500)
    with caplog.at_level(logging.INFO, logger="app.core"):
        workspace = Workspace.open()
    asyncio.run(workspace.close())
    assert "unknown key 'colour' ignored" in caplog.text
    assert "IT's policy puts 25.0 in place of 500.0" in caplog.text
    assert workspace.problems == []


def test_a_broken_policy_is_a_problem_for_the_user_and_turns_the_cloud_off() -> None:
    path = write_policy({"cloud_allowed": "yes"})
    hand_edit_settings(mode="auto", monthly_budget_usd=20)
    workspace = Workspace.open()
    asyncio.run(workspace.close())
    assert workspace.settings.mode == "local only"
    assert workspace.policy_problems() == (
        f"The computer's policy file {path} is not valid (cloud_allowed must be true or "
        "false, not 'yes'); cloud planning is off.",)
    assert workspace.problems == list(workspace.policy_problems())


def test_doctor_shows_the_policy_and_checks_its_office_node() -> None:
    path = write_policy({"office_node_urls": [NODE], "budget_ceiling_usd": 25,
                         "budget_celing": 5})
    out = io.StringIO()
    cli.doctor(as_json=True, out=out)
    report = json.loads(out.getvalue())
    assert report["office_node"]["url"] == NODE  # the node IT fixed, not the user's empty one
    policy = report["policy"]
    assert policy["file"] == str(path) and policy["found"] and policy["problems"] == []
    assert policy["in_force"] == {"office_node_urls": [NODE], "cloud_allowed": True,
                                  "budget_ceiling_usd": 25.0, "allowed_planner_models": []}
    assert policy["notes"] == ["unknown key 'budget_celing' ignored"]
    assert policy["bounded_settings"] == ["monthly_budget_usd", "node_urls"]

    text = io.StringIO()
    cli.doctor(out=text)
    assert (f"ok    policy: {path}: office nodes {NODE}; cloud planning allowed; budget "
            "ceiling $25.00 a month; planner models any") in text.getvalue()
    assert "note  policy: unknown key 'budget_celing' ignored" in text.getvalue()


def test_doctor_says_when_the_policy_is_not_in_force() -> None:
    path = write_policy("{ not json")
    text = io.StringIO()
    cli.doctor(out=text)
    lines = text.getvalue().splitlines()
    assert f"FAIL  policy: {path} is not in force; cloud planning is off" in lines
    assert any(line.startswith("FAIL  policy: The computer's policy file") and
               "can't be read" in line for line in lines)
    path.unlink()
    text = io.StringIO()
    cli.doctor(out=text)
    assert f"ok    policy: none at {path}; users' settings are not bounded" in text.getvalue()
