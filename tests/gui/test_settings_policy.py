"""What IT's machine policy looks like in the app: Settings shows the fixed office node,
the budget's ceiling and the allowed planner models as "Set by your IT department",
saving from the dialog can't lift them, the window's planning modes follow a cloud that
IT turned off, and a broken policy file is explained in words."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from app.core import paths
from app.core.policy import SET_BY_IT
from app.core.settings import MODES
from app.ui.application import SwitchboardApp
from app.ui.settings_dialog import SettingsDialog
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.policy_files import hand_edit_settings, saved, write_policy
from tests.gui.conftest import BuildApp


def settings_dialog(app: SwitchboardApp) -> SettingsDialog:
    app.open_settings()
    dialog = app.settings_dialog
    assert dialog is not None
    return dialog


def notes(dialog: SettingsDialog) -> list[str]:
    """The "Set by your IT department" notes on every tab of the dialog."""
    return [label.text() for label in dialog.findChildren(QLabel)
            if label.text().startswith(SET_BY_IT) and not label.isHidden()]


def test_settings_shows_what_it_fixed_and_saving_cannot_lift_it(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer) -> None:
    path = write_policy({"office_node_urls": [fault_server.base_url], "budget_ceiling_usd": 25,
                         "allowed_planner_models": ["openai/gpt-5", "a/b"]})
    # Edited by hand past every limit: the app starts within them all the same.
    hand_edit_settings(node_url="http://elsewhere.example:8080/v1", monthly_budget_usd=500,
                       planner_model="x/y")
    app = build_app()
    assert app.workspace.settings.monthly_budget_usd == 25
    qtbot.waitUntil(lambda: app.controller.health is not None, timeout=5000)
    dialog = settings_dialog(app)

    nodes = dialog.node_urls
    assert nodes.isReadOnly()  # IT's nodes, all of them: not the user's to change
    assert nodes.toPlainText() == fault_server.base_url
    assert str(path) in nodes.toolTip()

    page = dialog.cloud_page
    assert page.budget_usd.maximum() == 25
    assert page.budget_usd.value() == 25
    page.budget_usd.setValue(100)
    assert page.budget_usd.value() == 25  # the field stops at the ceiling
    models = page.planner_choice
    assert models is not None and models.isEnabled()
    assert [models.itemText(i) for i in range(models.count())] == ["openai/gpt-5", "a/b"]
    assert models.currentText() == "openai/gpt-5"  # "x/y" isn't allowed: IT's first
    assert sorted(notes(dialog)) == [SET_BY_IT, f"{SET_BY_IT}: at most $25.00 a month",
                                     f"{SET_BY_IT}: only these planner models"]
    assert not dialog.policy_problem.isVisibleTo(dialog)
    assert page.cloud_off_note.isHidden()

    # Past the widgets (as a future bug in them might be): the save is bounded all the same.
    page.budget_usd.setMaximum(1000)
    page.budget_usd.setValue(500)
    nodes.setPlainText("http://elsewhere.example:8080/v1")
    models.setCurrentIndex(1)
    # Saving checks the node again; waited for, so the test doesn't end mid-connection.
    with qtbot.waitSignals([dialog.accepted, app.controller.healthChanged], timeout=5000):
        dialog.save()
    on_disk = saved()
    assert on_disk["monthly_budget_usd"] == 25
    assert on_disk["node_urls"] == [fault_server.base_url]
    assert on_disk["planner_model"] == "a/b"  # an allowed choice is the user's to make
    assert app.workspace.settings.monthly_budget_usd == 25


def test_without_a_policy_nothing_is_marked(qtbot: QtBot, build_app: BuildApp) -> None:
    app = build_app(monthly_budget_usd=500)
    dialog = settings_dialog(app)
    assert dialog.node_note is None and dialog.cloud_page.planner_choice is None
    assert not dialog.node_urls.isReadOnly()
    assert dialog.cloud_page.budget_usd.maximum() == 100_000
    assert dialog.cloud_page.budget_usd.value() == 500
    assert notes(dialog) == []


def test_cloud_turned_off_by_it_leaves_only_local_planning(
        qtbot: QtBot, build_app: BuildApp) -> None:
    write_policy({"cloud_allowed": False})
    hand_edit_settings(mode="plan with cloud", monthly_budget_usd=20)
    app = build_app()
    combo = app.main_window.mode
    assert combo.currentText() == "Local only"
    items = combo.model()
    enabled = [bool(items.flags(items.index(row, 0)) & Qt.ItemFlag.ItemIsEnabled)
               for row in range(combo.count())]
    assert enabled == [mode == "local only" for mode in MODES]
    assert "cloud planning is off" in combo.toolTip()

    page = settings_dialog(app).cloud_page
    assert page.cloud_off_note.isVisibleTo(page)
    assert "turned cloud planning off" in page.cloud_off_note.text()
    assert not page.budget_usd.isEnabled() and not page.planner_model.isEnabled()

    # A disabled item chosen anyway (a keyboard quirk, a script): the core keeps it local.
    combo.setCurrentIndex(MODES.index("plan with cloud"))
    qtbot.waitUntil(lambda: paths.settings_file().exists() and saved()["mode"] == "local only",
                    timeout=5000)
    assert app.workspace.settings.mode == "local only"


def test_a_broken_policy_file_is_explained_in_settings(qtbot: QtBot,
                                                       build_app: BuildApp) -> None:
    path = write_policy({"budget_ceiling_usd": "25 dollars"})
    app = build_app()
    dialog = settings_dialog(app)
    problem = dialog.policy_problem.text()
    assert dialog.policy_problem.isVisibleTo(dialog)
    assert problem.startswith(f"The computer's policy file {path} is not valid")
    assert "budget_ceiling_usd must be a number" in problem and "cloud planning is off" in problem
    assert dialog.cloud_page.cloud_off_note.text() == problem
