"""app.core must never import Qt: the GUI is a thin layer over it (ARCHITECTURE rule 1)."""

import pkgutil
import subprocess
import sys

import app.core


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
