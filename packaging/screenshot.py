"""Draw the README's screenshots of the main window, light and dark: the real app, offscreen,
in a throw-away home, answering from a stand-in office node that serves a canned answer
(`tests/fixtures/fault_server.py`) and lists two models.

    .venv/bin/python packaging/screenshot.py   # writes resources/screenshots/*.png
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "screenshots"
ANSWER = [
    "Here is a short plan for the **quarterly report**:\n\n",
    "1. Pull the sales figures from the shared drive.\n",
    "2. Summarise each region in two sentences.\n",
    "3. Flag anything more than 10% off target.\n\n",
    "A quick way to load the figures:\n\n```python\nimport csv\n\n",
    'with open("sales-q3.csv", newline="") as f:\n    rows = list(csv.DictReader(f))\n',
    'print(len(rows), "rows")\n```\n\nShall I draft the summary for the first region?',
]
EARLIER = [("Supplier contract review", 40), ("Travel policy questions", 3),
           ("Board memo, first draft", 1)]  # (title, days ago)


def main() -> int:
    os.environ["SWITCHBOARD_HOME"] = tempfile.mkdtemp(prefix="switchboard-screenshot-")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT))
    import keyring
    from PySide6.QtWidgets import QApplication

    from app.core import secrets
    from app.core.routing.router import Override
    from app.core.settings import Settings
    from app.core.workspace import Workspace
    from app.ui.application import SwitchboardApp
    from app.ui.theme import apply_theme
    from tests.fixtures.fault_server import FaultServer
    from tests.fixtures.memory_keyring import MemoryKeyring

    keyring.set_keyring(MemoryKeyring())
    secrets.SECURE_BACKENDS.add("tests.fixtures.memory_keyring.MemoryKeyring")
    qapp = QApplication(sys.argv[:1])
    OUT.mkdir(parents=True, exist_ok=True)
    with FaultServer(models=["qwen2.5-32b-instruct", "llama-3.3-70b-instruct"]) as node:
        node.set_scenario("ok", chunks=ANSWER)
        Settings().changed(node_urls=[node.base_url], model="qwen2.5-32b-instruct").save()
        workspace = Workspace.open()
        history = workspace.history
        seeded = []
        for title, days in EARLIER:
            chat = history.create_chat(title)
            seeded.append(chat.id)
            history.add_message(chat.id, "user", title)
            history.add_message(chat.id, "assistant", "…")
            with sqlite3.connect(history.path) as db:
                db.execute("UPDATE chats SET updated_at=? WHERE id=?",
                           (time.time() - days * 86400, chat.id))
        workspace.save_preset("Formal British English", "Answer formally, in British English.")
        app = SwitchboardApp(workspace)
        app.start()
        window = app.main_window
        window.resize(1100, 700)
        app.show_main()
        _wait(qapp, lambda: window.model_box.count() == 2)
        window.new_chat()
        _wait(qapp, lambda: window.chat_id not in (None, *seeded))
        _wait(qapp, lambda: app.controller.tier.can_send)
        # "Just answer": the screenshot shows an answer, not a plan's steps.
        window.send("Help me plan the quarterly report", Override.ANSWER)
        _wait(qapp, lambda: not app.controller.busy
              and window.chat_view.chat_model.rowCount() >= 2)
        window.presets.reload()
        _wait(qapp, lambda: window.presets.count() > 3)
        for theme, name in (("light", "main-window.png"), ("dark", "main-window-dark.png")):
            apply_theme(theme)
            _wait(qapp, lambda: True)
            window.grab()  # the first paint after the switch renders the documents again
            _wait(qapp, lambda: True)
            window.grab().save(str(OUT / name))
        app.shutdown()
    return 0


def _wait(qapp: object, done: object, timeout_s: float = 20) -> None:
    from PySide6.QtWidgets import QApplication

    end = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        if time.monotonic() > end:
            raise TimeoutError("the window did not get there")
        QApplication.processEvents()
        time.sleep(0.02)
    for _ in range(20):  # let layouts and repaints settle
        QApplication.processEvents()


if __name__ == "__main__":
    sys.exit(main())
