"""The Cloud planning part of Settings: the user's OpenRouter key (pasted, tested, removed;
kept only in the OS key store), the planner model and the monthly budget, and the budget
itself: this month's cap, spend by day, and earlier months. What IT's machine policy
fixes or bounds here is shown as such (with `widgets.it_note` and `widgets.choice_box`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.budget import cap as budget_cap
from app.core.cloud_account import BudgetOverview, check_key, key_store_state, remove_key
from app.core.errors import KeyStoreLocked, KeyStoreUnavailable, SwitchboardError
from app.core.llm.openrouter import KeyInfo
from app.core.money import format_usd, micro_usd
from app.core.policy import Limit, policy_file
from app.core.settings import Settings, describe
from app.ui.bridge import Bridge
from app.ui.spend_chart import SpendChart
from app.ui.theme import show_tone
from app.ui.widgets import add_setting_row, choice_box, it_note, policy_tooltip

KEY_PLACEHOLDER = "Paste your OpenRouter key (sk-or-…); it is kept in the system key store"
KEY_SAVED = "A key is saved — leave empty to keep it"


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def month_in_words(month: str) -> str:
    """"2025-03" → "March 2025" (not strftime: that follows a locale Qt may have set)."""
    year, number = month.split("-")
    return f"{_MONTHS[int(number) - 1]} {year}"


def key_info_text(info: KeyInfo) -> str:
    label = info.label or "(no label)"
    if info.limit_micro_usd is None:
        limit = "no limit"
    else:
        limit = f"limit {format_usd(info.limit_micro_usd)}"
    remaining = ("" if info.remaining_micro_usd is None
                 else f", {format_usd(info.remaining_micro_usd)} remaining")
    free = " (free tier)" if info.is_free_tier else ""
    return f"✔ Key “{label}”{free}: {limit}{remaining}."


# -- the page ----------------------------------------------------------------------------


class CloudPage(QWidget):
    """The key, the planner and the budget. Nothing is written until the dialog's Save,
    except Remove, which removes the saved key at once.

    `overview` reads the budget (`Workspace.budget_overview`: on the core thread);
    `limits` are IT's (from `Workspace.limits`), read from the policy file `source`;
    `cloud_off` says, in words, why the policy has turned cloud planning off (None: it
    has not)."""

    def __init__(self, bridge: Bridge, settings: Settings,
                 overview: Callable[[], BudgetOverview], parent: QWidget | None = None, *,
                 limits: Mapping[str, Limit] | None = None, source: Path | None = None,
                 cloud_off: str | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._read_overview = overview
        self._overview: BudgetOverview | None = None
        limits = limits or {}
        source = source or policy_file()
        self.ceiling_usd: float | None = None

        # The key and the planner.
        self.key = QLineEdit()
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText(KEY_PLACEHOLDER)
        self.key.setEnabled(False)  # until the key store has answered
        self.test_button = QPushButton("Test")
        self.test_button.setEnabled(False)
        self.test_button.clicked.connect(self.test_key)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setEnabled(False)
        self.remove_button.setToolTip("Remove the saved key from the system key store now")
        self.remove_button.clicked.connect(self.remove_key)
        self.key_result = QLabel()
        self.key_result.setWordWrap(True)
        self.key_result.setTextFormat(Qt.TextFormat.PlainText)  # the server's words aren't HTML
        key_row = QHBoxLayout()
        key_row.addWidget(self.test_button)
        key_row.addWidget(self.remove_button)
        key_row.addStretch(1)

        self.planner_model = QLineEdit(settings.planner_model)
        self.planner_model.setPlaceholderText("An OpenRouter model id, e.g. "
                                              + describe("planner_model")["default"])
        # IT's list of planner models: a choice of those instead of a free id.
        self.planner_choice: QComboBox | None = None
        model_limit = limits.get("planner_model")
        if model_limit is not None:
            self.planner_choice = choice_box(model_limit, settings.planner_model, source)
        self.planner_max_tokens = QSpinBox()
        spec = describe("planner_max_tokens")
        self.planner_max_tokens.setRange(int(spec["min"]), int(spec["max"]))
        self.planner_max_tokens.setValue(settings.planner_max_tokens)
        self.planner_max_tokens.setSuffix(" tokens")
        self.planner_max_tokens.setToolTip(spec["label"])
        self.budget_usd = QDoubleSpinBox()
        spec = describe("monthly_budget_usd")
        self.budget_usd.setRange(spec["min"], spec["max"])
        self.budget_usd.setDecimals(2)
        self.budget_usd.setPrefix("$")
        self.budget_usd.setSpecialValueText("off")
        self.budget_usd.setToolTip(spec["label"])
        budget_limit = limits.get("monthly_budget_usd")
        if budget_limit is not None and budget_limit.maximum is not None:
            self.ceiling_usd = budget_limit.maximum
            self.budget_usd.setMaximum(min(spec["max"], budget_limit.maximum))
            self.budget_usd.setToolTip(policy_tooltip(budget_limit, source))
        self.budget_usd.setValue(settings.monthly_budget_usd)
        self.budget_usd.valueChanged.connect(self._show_overview)

        planner = QGroupBox("Cloud planner (OpenRouter)")
        form = QFormLayout(planner)
        form.addRow("OpenRouter key:", self.key)
        form.addRow("", key_row)
        form.addRow("", self.key_result)
        add_setting_row(form, "Planner model:", self.planner_model, self.planner_choice,
                        model_limit, source)
        form.addRow("Longest plan:", self.planner_max_tokens)
        self.review_plans = QCheckBox(describe("review_plans")["label"])
        self.review_plans.setChecked(settings.review_plans)
        form.addRow("", self.review_plans)
        form.addRow("Monthly budget:", self.budget_usd)
        if budget_limit is not None:
            form.addRow("", it_note(budget_limit, source))

        # Cloud planning turned off by IT (or by a policy file that can't be read): say so
        # at the top; the planner's settings can't do anything, so they can't be changed.
        # The key can still be tested and removed: it is the user's own.
        self.cloud_off_note = QLabel(cloud_off or "")
        self.cloud_off_note.setWordWrap(True)
        self.cloud_off_note.setTextFormat(Qt.TextFormat.PlainText)
        show_tone(self.cloud_off_note, "error")
        self.cloud_off_note.setToolTip(f"The computer's policy file {source}")
        self.cloud_off_note.setVisible(cloud_off is not None)
        if cloud_off is not None:
            for widget in (self.planner_model, self.planner_choice, self.planner_max_tokens,
                           self.budget_usd):
                if widget is not None:
                    widget.setEnabled(False)

        # The budget.
        self.figures: dict[str, QLabel] = {}
        figures = QGridLayout()
        for i, (name, label) in enumerate((("cap", "Cap"), ("spent", "Spent"),
                                           ("reserved", "Reserved"),
                                           ("remaining", "Remaining"))):
            value = QLabel("…")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.figures[name] = value
            figures.addWidget(QLabel(label + ":"), i // 2, (i % 2) * 2)
            figures.addWidget(value, i // 2, (i % 2) * 2 + 1)
        figures.setColumnStretch(1, 1)
        figures.setColumnStretch(3, 1)
        self.budget_note = QLabel()
        self.budget_note.setWordWrap(True)
        self.budget_note.setTextFormat(Qt.TextFormat.PlainText)
        self.budget_note.hide()
        self.chart = SpendChart()
        self.months_table = QTableWidget(0, 5)
        self.months_table.setHorizontalHeaderLabels(
            ["Month", "Spent", "Reserved", "Calls", "Cap"])
        self.months_table.verticalHeader().hide()
        header = self.months_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.months_table.setWordWrap(False)
        self.months_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.months_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.no_earlier = QLabel("No earlier months.")

        self.budget_box = QGroupBox("Budget this month (UTC)")
        budget_layout = QVBoxLayout(self.budget_box)
        budget_layout.addLayout(figures)
        budget_layout.addWidget(self.budget_note)
        budget_layout.addWidget(self.chart)
        budget_layout.addWidget(QLabel("Earlier months:"))
        budget_layout.addWidget(self.months_table)
        budget_layout.addWidget(self.no_earlier)

        layout = QVBoxLayout(self)
        layout.addWidget(self.cloud_off_note)
        layout.addWidget(planner)
        layout.addWidget(self.budget_box)
        layout.addStretch(1)

        self._key_saved = False
        self.bridge.run(key_store_state(), on_done=self._on_store_state,
                        on_error=self._on_store_error)
        self.refresh_budget()

    # -- values for the dialog's Save ---------------------------------------------------

    def values(self) -> dict[str, object]:
        model = (self.planner_choice.currentText() if self.planner_choice is not None
                 else self.planner_model.text())
        return {"monthly_budget_usd": self.budget_usd.value(),
                "planner_model": model,
                "planner_max_tokens": self.planner_max_tokens.value(),
                "review_plans": self.review_plans.isChecked()}

    def edited_key(self) -> str | None:
        """A newly pasted key to keep, or None to leave the saved one."""
        if not self.key.isEnabled():
            return None
        return self.key.text().strip() or None

    # -- the key -------------------------------------------------------------------------

    def _on_store_state(self, state: str) -> None:
        if state == "refused":
            self._store_refused(KeyStoreUnavailable())
            return
        self._key_saved = state == "saved"
        self.key.setEnabled(True)
        self.test_button.setEnabled(True)
        self._show_key_saved()

    def _on_store_error(self, error: BaseException) -> None:
        # A locked or unanswering store: say so; the key can be pasted again once it opens.
        self.key.setEnabled(True)
        self.test_button.setEnabled(True)
        show_tone(self.key_result, "error")
        self.key_result.setText(_text(error))

    def _store_refused(self, error: KeyStoreUnavailable) -> None:
        """No key store (or a locked one): the field is off, and the words say what the
        user can do about it on this computer."""
        self.key.clear()
        for widget in (self.key, self.test_button, self.remove_button):
            widget.setEnabled(False)
        self.key.setPlaceholderText("Cloud planning is off")
        show_tone(self.key_result, "error")
        self.key_result.setText(f"{error.title} {error.hint}")

    def _show_key_saved(self) -> None:
        self.key.setPlaceholderText(KEY_SAVED if self._key_saved else KEY_PLACEHOLDER)
        self.remove_button.setEnabled(self._key_saved)

    def test_key(self) -> None:
        pasted = self.key.text().strip() or None
        if pasted is None and not self._key_saved:
            self._show_result("Paste a key first.", error=True)
            return
        self.test_button.setEnabled(False)
        self._show_result("Testing…")
        self.bridge.run(check_key(pasted), on_done=self._on_tested, on_error=self._on_test_error)

    def _on_tested(self, info: KeyInfo | None) -> None:
        self.test_button.setEnabled(True)
        if info is None:
            self._show_result("No key is saved; paste one first.", error=True)
        else:
            self._show_result(key_info_text(info))

    def _on_test_error(self, error: BaseException) -> None:
        self.test_button.setEnabled(True)
        if isinstance(error, KeyStoreLocked):
            self._on_store_error(error)  # it may open again: the field stays on
            return
        if isinstance(error, KeyStoreUnavailable):
            self._store_refused(error)
            return
        self._show_result(f"✘ {_text(error)}", error=True)

    def remove_key(self) -> None:
        self.remove_button.setEnabled(False)
        self.bridge.run(remove_key(), on_done=self._on_removed,
                        on_error=self._on_remove_error)

    def _on_removed(self, _: object = None) -> None:
        self._key_saved = False
        self.key.clear()
        self._show_key_saved()
        self._show_result("The key was removed from the system key store.")

    def _on_remove_error(self, error: BaseException) -> None:
        self.remove_button.setEnabled(self._key_saved)
        self._show_result(f"✘ {_text(error)}", error=True)

    def _show_result(self, text: str, *, error: bool = False) -> None:
        show_tone(self.key_result, "error" if error else None)
        self.key_result.setText(text)

    # -- the budget ----------------------------------------------------------------------

    def refresh_budget(self) -> None:
        self.bridge.call(self._read_overview, on_done=self._on_overview,
                         on_error=self._on_overview_error)

    def _on_overview(self, overview: BudgetOverview) -> None:
        self._overview = overview
        self._show_overview()

    def _on_overview_error(self, error: BaseException) -> None:
        show_tone(self.budget_note, "error")
        self.budget_note.setText(_text(error))
        self.budget_note.show()

    def cap_micro_usd(self) -> int:
        """The cap as this page's budget field stands, within IT's ceiling (the key's
        credit is not known here without asking OpenRouter)."""
        ceiling = None if self.ceiling_usd is None else micro_usd(self.ceiling_usd, spend=False)
        return budget_cap(micro_usd(self.budget_usd.value(), spend=False), ceiling, None)

    def _show_overview(self) -> None:
        overview = self._overview
        if overview is None:
            return
        summary, cap = overview.this_month, self.cap_micro_usd()
        self.figures["cap"].setText(format_usd(cap) if cap else "off")
        self.figures["spent"].setText(format_usd(summary.spent_micro_usd))
        reserved = format_usd(summary.reserved_micro_usd + summary.flagged_micro_usd)
        if summary.flagged_count:
            reserved += f" ({summary.flagged_count} call(s) still to reconcile)"
        self.figures["reserved"].setText(reserved)
        self.figures["remaining"].setText(
            format_usd(max(0, cap - summary.charged_micro_usd)) if cap else "—")
        self.chart.set_days(overview.days, overview.today)

        table = self.months_table
        table.setRowCount(len(overview.earlier))
        for row, s in enumerate(overview.earlier):
            cells = (month_in_words(s.month), format_usd(s.spent_micro_usd),
                     format_usd(s.reserved_micro_usd + s.flagged_micro_usd), str(s.calls),
                     "—" if s.cap_micro_usd is None else format_usd(s.cap_micro_usd))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(row, column, item)
        shown = min(len(overview.earlier), 6)  # then it scrolls
        table.setFixedHeight(table.horizontalHeader().height() + 2 * table.frameWidth()
                             + sum(table.rowHeight(row) for row in range(shown)))
        table.setVisible(bool(overview.earlier))
        self.no_earlier.setVisible(not overview.earlier)


def _text(error: BaseException) -> str:
    return error.user_text() if isinstance(error, SwitchboardError) else str(error)
