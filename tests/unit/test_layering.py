"""app.core must never import Qt: the GUI is a thin layer over it (ARCHITECTURE rule 1);
and the GUI reaches the core only through its front door: no store, key store or network
client of its own."""

import ast
import pathlib
import pkgutil
import subprocess
import sys

import app.core
import app.ui


def test_importing_all_of_core_loads_no_qt() -> None:
    modules = [m.name for m in pkgutil.walk_packages(app.core.__path__, "app.core.")]
    assert "app.core.llm.openai_client" in modules  # the walk found the package's modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import app.cli\n"
        "qt = [m for m in sys.modules if m.startswith(('PySide6', 'shiboken6'))]\n"
        "print(qt)\n"
        "sys.exit(1 if qt else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# What the window may take from the core: the front door (Workspace, the cloud account),
# and the plain things they hand back (messages, events, errors, settings, money's words).
# A store, the key store or a network client reached from app/ui is a back door.
UI_MAY_IMPORT = {
    "app.core": {"crash", "logs", "paths"},
    "app.core.budget": {"MonthSummary", "cap"},
    "app.core.money": {"format_usd", "micro_usd"},
    "app.core.chat": None,  # the events a chat sends, and their footer
    "app.core.cloud_account": {"BudgetOverview", "check_key", "key_store_state",
                               "remove_key", "node_token_saved", "save_key"},
    "app.core.documents.extract": {"extract"},  # --selftest reads a document
    "app.core.documents.progress": {"READING", "stage_of", "without_time"},  # in words
    "app.core.errors": None,
    "app.core.history": {"Chat", "Document", "Message", "MessageStatus", "Preset",
                         "SearchHit"},  # records, not the store
    "app.core.llm.backend": {"Health", "NodeHealth"},
    "app.core.llm.openrouter": {"KeyInfo"},
    "app.core.policy": {"Limit", "policy_file"},
    "app.core.routing.plan": {"Plan"},
    "app.core.routing.report": {"MonthReport"},
    "app.core.routing.router": {"Mode", "Override"},
    "app.core.routing.tiers": {"Tier", "Workflow"},
    "app.core.runtime.downloads": {"RECOMMENDED_MODELS", "RecommendedModel", "download_model"},
    "app.core.runtime.gguf_inspect": {"inspect_model"},
    "app.core.runtime.gpu_split": {"plan_split", "plan_summary", "split_report"},
    "app.core.runtime.gpus": {"inventory"},
    "app.core.runtime.serve": {"PORT_LINE", "TOKEN_ENV"},  # --selftest starts a runtime
    "app.core.runtime.supervisor": {"RuntimeStatus", "State", "serve_command"},
    "app.core.setup_check": {"needs_setup"},
    "app.core.tier_status": {"Availability", "TierState", "is_tier_fault", "tier_state"},
    "app.core.settings": {"BACKENDS", "MODES", "RunOn", "Settings", "describe"},
    "app.core.workspace": {"Usage", "Workspace", "test_connection"},
}
UI_MUST_NOT_TOUCH = {"history", "ledger", "_ledger", "_record", "secrets", "keyring"}


def back_doors(source: str, name: str) -> list[str]:
    """What a module of app/ui imports or touches beyond the core's front door."""
    wrong = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            wrong += [f"{name}: import {a.name}" for a in node.names
                      if a.name.startswith(("app.core", "keyring", "httpx", "sqlite3"))]
        elif isinstance(node, ast.ImportFrom) and node.module and (
                node.module.startswith("app.core") or node.module in ("keyring", "httpx")):
            allowed = UI_MAY_IMPORT.get(node.module, set())
            wrong += [f"{name}: from {node.module} import {a.name}" for a in node.names
                      if allowed is not None and a.name not in allowed]
        elif isinstance(node, ast.Attribute) and node.attr in UI_MUST_NOT_TOUCH:
            wrong.append(f"{name}:{node.lineno}: .{node.attr}")
    return wrong


def test_the_window_reaches_the_core_only_through_its_front_door() -> None:
    modules = sorted(pathlib.Path(app.ui.__path__[0]).glob("*.py"))
    assert len(modules) > 10
    assert [door for path in modules
            for door in back_doors(path.read_text(encoding="utf-8"), path.name)] == []


def test_the_front_door_check_sees_a_back_door() -> None:
    source = ("from app.core.budget import Ledger, cap\nimport keyring\n"
              "def f(w):\n    return w.history.chats()\n")
    assert back_doors(source, "m.py") == ["m.py: from app.core.budget import Ledger",
                                          "m.py: import keyring", "m.py:4: .history"]
