"""A planned task in the window: the plan from the (stand-in) cloud appears with what it
may cost and then what it cost, each step streams into a line of its own that opens on a
click, the answer comes last; the plan can be reviewed and edited before it runs; a step
cut off is retried from the banner; pasted material never reaches the cloud."""

from __future__ import annotations

import json

from PySide6.QtCore import QMimeData, QPoint, Qt
from pytestqt.qtbot import QtBot

from app.core import paths
from app.core.history import Message
from app.ui.application import SwitchboardApp
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.openrouter_server import OpenRouterServer
from tests.gui.conftest import BuildApp
from tests.gui.test_app import click_action, messages, type_and_send

REQUEST = "Plan our office move: what each team must do, and draft the note to staff."


def planning_app(build_app: BuildApp, node: FaultServer, **settings: object
                 ) -> SwitchboardApp:
    return build_app(node_urls=[node.base_url], monthly_budget_usd=5,
                     planner_model="stand-in/planner", planner_max_tokens=400,
                     mode="plan with cloud", **settings)


def steps(app: SwitchboardApp) -> list[Message]:
    return [m for m in messages(app) if m.kind == "step"]


def answered(app: SwitchboardApp, status: str = "complete") -> bool:
    """The task's answer (not a step) ended so, and the window is idle again."""
    shown = messages(app)
    return bool(shown) and shown[-1].kind == "" and shown[-1].role == "assistant" \
        and shown[-1].status == status and not app.controller.busy


def test_a_planned_task_shows_its_plan_steps_and_answer(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer,
        cloud: OpenRouterServer) -> None:
    fault_server.set_scenario("ok", chunks=["Done", " here."])
    app = planning_app(build_app, fault_server)
    window = app.main_window
    assert window.mode.currentText() == "Plan with cloud"
    saved = json.loads(paths.settings_file().read_text())["settings"]
    assert saved["mode"] == "plan with cloud"
    type_and_send(qtbot, app, REQUEST)
    qtbot.waitUntil(lambda: answered(app), timeout=10_000)
    shown = messages(app)
    assert [(m.role, m.kind) for m in shown] == [
        ("user", ""), ("system", "plan"), *[("assistant", "step")] * 3, ("assistant", "")]
    note = shown[1]
    assert note.content.startswith("**Plan:** Carry out the request in three steps.")
    assert "Planned in the cloud because you chose Plan with cloud; it cost $" in note.content
    assert len(cloud.chat_requests()) == 1
    assert shown[-1].content == "Done here."  # assembled on the (stand-in) office node

    # A step is one line until it is clicked open.
    view = window.chat_view
    model = view.chat_model
    row = model.row_of(steps(app)[0].id)
    assert row is not None
    assert model.shown_at(row).content == f"▸ {steps(app)[0].title}"
    rect = view.visualRect(model.index(row, 0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(rect.left() + 30, rect.center().y()))
    assert model.shown_at(row).content == f"▾ {steps(app)[0].title}\n\nDone here."
    assert "Ran on " in view.chat_delegate.status_text(model.message_at(row))


def test_the_plan_is_shown_before_it_runs_when_asked(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer,
        cloud: OpenRouterServer) -> None:
    app = planning_app(build_app, fault_server, review_plans=True)
    type_and_send(qtbot, app, REQUEST)
    window = app.main_window
    qtbot.waitUntil(lambda: window.plan_review is not None, timeout=10_000)
    dialog = window.plan_review
    assert dialog is not None and dialog.steps.count() == 3
    dialog.steps.setCurrentRow(1)
    dialog.delete_selected()  # s2 goes
    dialog.steps.item(0).setText("List only the facts about the new office.")
    dialog.accept()
    qtbot.waitUntil(lambda: answered(app), timeout=10_000)
    assert [s.title for s in steps(app)] == [
        "List only the facts about the new office.",
        "Draft the message that the request asks for."]


def test_a_step_cut_off_is_retried_from_its_bubble(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer,
        cloud: OpenRouterServer) -> None:
    fault_server.set_scenario("close_mid_stream", chunks=["Part ", "of it"])
    app = planning_app(build_app, fault_server)
    window = app.main_window
    type_and_send(qtbot, app, REQUEST)
    qtbot.waitUntil(lambda: answered(app, "error") and not app.controller.busy,
                    timeout=10_000)
    assert not window.error_banner.isVisible()  # said once, in the bubbles
    fault_server.set_scenario("ok", chunks=["Whole."])
    cut = next(s for s in steps(app) if s.status in ("error", "interrupted"))
    click_action(qtbot, app, cut.id, "retry-plan")
    qtbot.waitUntil(lambda: answered(app), timeout=10_000)
    qtbot.waitUntil(lambda: len(steps(app)) == 3
                    and all(s.status == "complete" for s in steps(app)))
    assert len(cloud.chat_requests()) == 1


def test_pasted_material_reaches_the_planner_only_as_a_placeholder(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer,
        cloud: OpenRouterServer) -> None:
    app = planning_app(build_app, fault_server)
    composer = app.main_window.composer
    email = ("Dear HR, I am writing in confidence about my line manager, who has "
             "repeatedly commented on my health in team meetings.")
    qtbot.keyClicks(composer, "Plan how HR handles the complaint below: who investigates, "
                              "the interviews, the timeline and the letters to both people. ")
    mime = QMimeData()
    mime.setText(email)
    composer.insertFromMimeData(mime)  # as Ctrl+V does
    qtbot.keyClick(composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: answered(app), timeout=10_000)
    (asked,) = cloud.chat_requests()
    sent = asked.body.decode()
    assert "line manager" not in sent and "in confidence" not in sent
    assert f"pasted text #1, {len(email.strip())} characters" in sent
    user = messages(app)[0]
    assert json.loads(user.pasted) == [email.strip()]
