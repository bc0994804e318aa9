"""Review a plan before it runs: its steps, each editable (double-click) or deleted, then
Run or Don't run. Shown when Settings → Cloud planning → "Show each plan before it runs"
is on."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.routing.plan import Plan

STEP_ID = Qt.ItemDataRole.UserRole


class PlanReviewDialog(QDialog):
    """The plan's steps in a list; `plan()` is the plan as the user left it."""

    def __init__(self, plan: Plan, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.original = plan
        self.setWindowTitle("Switchboard — the plan, before it runs")
        self.setMinimumWidth(520)
        goal = QLabel(f"<b>{plan.goal}</b><br>{plan.made}. Double-click a step to change "
                      "it; delete the steps you don't want.")
        goal.setWordWrap(True)
        self.steps = QListWidget()
        self.steps.setWordWrap(True)
        self.steps.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed)
        for step in plan.steps:
            item = QListWidgetItem(step.instruction)
            item.setData(STEP_ID, step.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.steps.addItem(item)
        self.delete_button = QPushButton("Delete step")
        self.delete_button.clicked.connect(self.delete_selected)
        buttons = QDialogButtonBox()
        self.run_button = buttons.addButton("Run the plan",
                                            QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton("Don't run it", QDialogButtonBox.ButtonRole.RejectRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(goal)
        layout.addWidget(self.steps, 1)
        layout.addWidget(self.delete_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(buttons)

    def delete_selected(self) -> None:
        row = self.steps.currentRow()
        if row >= 0 and self.steps.count() > 1:  # a plan keeps at least one step
            self.steps.takeItem(row)

    def plan(self) -> Plan:
        """The plan with the steps deleted taken out and the edited ones changed."""
        kept = {str(self.steps.item(i).data(STEP_ID)): self.steps.item(i).text().strip()
                for i in range(self.steps.count())}
        plan = self.original
        for step in self.original.steps:
            if step.id not in kept:
                plan = plan.without(step.id)
        steps = tuple(replace(s, instruction=kept[s.id] or s.instruction) for s in plan.steps)
        return replace(plan, steps=steps)
