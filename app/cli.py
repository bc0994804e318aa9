"""The command-line verbs for IT, scripts and tests: `ask`, `doctor`, `gpu-plan` and `budget`.
Same core as the tray app, no window, no Qt."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from app.core import paths, secrets
from app.core.errors import SwitchboardError
from app.core.llm.office_node import OfficeNode
from app.core.llm.openai_client import Delta
from app.core.runtime import gpus as gpu_inventory
from app.core.runtime.planner import plan, plan_report
from app.core.settings import Settings

EXIT_ERROR = 2


def _settings(node: str | None, model: str | None) -> Settings:
    settings, _problems = Settings.load()
    changes = {k: v for k, v in (("node_url", node), ("model", model)) if v is not None}
    return settings.changed(**changes) if changes else settings


def ask(prompt: str, node: str | None = None, model: str | None = None,
        out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Stream the answer to `out`; a fault goes to `err` with exit code 2."""

    async def run() -> None:
        office = OfficeNode(_settings(node, model), secrets.get_secret(secrets.NODE_TOKEN))
        try:
            async for event in office.stream_chat([{"role": "user", "content": prompt}]):
                if isinstance(event, Delta):
                    out.write(event.text)
                    out.flush()
        finally:
            await office.aclose()

    try:
        asyncio.run(run())
    except SwitchboardError as e:
        if e.partial:
            out.write("\n")
        print(f"switchboard: {e.user_text()}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    out.write("\n")
    return 0


def doctor(as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """Each tier's state; exit 0 when everything needed for chatting works, else 1."""
    report: dict[str, Any] = {}
    settings, problems = Settings.load()
    report["settings"] = {"file": str(paths.settings_file()), "problems": problems}

    data = paths.data_dir()
    try:
        with tempfile.NamedTemporaryFile(dir=data):
            pass
        report["data_dir"] = {"path": str(data), "writable": True}
    except OSError as e:
        report["data_dir"] = {"path": str(data), "writable": False, "error": e.strerror}

    report["keyring"] = {"backend": secrets.backend_name(),
                         "secure": secrets.secure_backend() is not None,
                         "token_from_environment": bool(os.environ.get("SWITCHBOARD_NODE_TOKEN"))}

    node: dict[str, Any] = {"url": settings.node_url, "configured": bool(settings.node_url)}
    if settings.node_url:
        async def check() -> None:
            office = OfficeNode(settings, secrets.get_secret(secrets.NODE_TOKEN))
            try:
                health = await office.health()
            finally:
                await office.aclose()
            node.update(reachable=health.ok, models=health.models,
                        latency_ms=round(health.latency_ms, 1) if health.latency_ms else None,
                        error=health.error.user_text() if health.error else None)
        asyncio.run(check())
    report["office_node"] = node

    healthy = report["data_dir"]["writable"] and node.get("reachable", False)
    report["ok"] = healthy
    if as_json:
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        _print_report(report, out)
    return 0 if healthy else 1


def _print_report(report: dict[str, Any], out: TextIO) -> None:
    def line(ok: bool, text: str) -> None:
        out.write(f"{'ok  ' if ok else 'FAIL'}  {text}\n")

    node = report["office_node"]
    if not node["configured"]:
        line(False, "office node: not set up (Settings, or `--node` for ask)")
    elif node.get("reachable"):
        line(True, f"office node: {node['url']} answers in {node['latency_ms']} ms; "
                   f"models: {', '.join(node['models']) or 'none'}")
    else:
        line(False, f"office node: {node['url']}: {node['error']}")
    kr = report["keyring"]
    line(kr["secure"], f"key store: {kr['backend']}")
    dd = report["data_dir"]
    line(dd["writable"], f"data folder: {dd['path']}"
                         + ("" if dd["writable"] else f" is not writable ({dd.get('error')})"))
    for problem in report["settings"]["problems"]:
        line(False, f"settings: {problem}")


def gpu_plan(model_path: str | Path, gpus: str | None = None, n_ctx: int | None = None,
             as_json: bool = False, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Print how the model would be split across the GPUs (this computer's, or `gpus` as
    "MIB,MIB,..."); exit 2 when the model is refused or an argument is wrong."""
    # Imported here: gguf (and numpy) are not needed by the other verbs.
    from app.core.runtime.gguf_inspect import inspect_model

    try:
        devices = (gpu_inventory.parse_gpu_list(gpus) if gpus is not None
                   else gpu_inventory.inventory())
    except ValueError as e:
        print(f"switchboard: --gpus: {e}", file=err)
        return EXIT_ERROR
    if n_ctx is not None and n_ctx < 1:
        print(f"switchboard: --ctx must be a positive number of tokens, not {n_ctx}", file=err)
        return EXIT_ERROR
    try:
        model = inspect_model(Path(model_path))
    except SwitchboardError as e:
        print(f"switchboard: {e.user_text()}", file=err)
        return EXIT_ERROR
    result = plan(model, devices, n_ctx=n_ctx)
    if as_json:
        report = {**result.to_json(), "gpus": [asdict(g) for g in devices],
                  "model": {"name": model.name, "quantisation": model.quantisation,
                            "n_layers": model.n_layers, "n_ctx_train": model.n_ctx_train,
                            "file_size": model.file_size}}
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        out.write(plan_report(result, model, devices))
    return 0


def budget(as_json: bool = False, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """This month's cloud planning spend, reservations, cap and what is left; exit 2 when the
    ledger can't be read."""
    # Imported here, like gguf for gpu-plan: the other verbs don't need the ledger.
    import dataclasses

    from app.core import budget as ledger_module

    settings, _problems = Settings.load()
    # The user's monthly budget is the cap known without the network; IT's ceiling and the
    # key's remaining credit lower it when the app reserves (budget.cap).
    monthly_usd = getattr(settings, "monthly_budget_usd", None)
    cap = ledger_module.usd_to_micro_usd(monthly_usd) if monthly_usd is not None else None
    try:
        with ledger_module.Ledger() as ledger:
            # With no cap of its own, a summary reports the cap of the month's last call;
            # here the cap is the setting's, or "not set".
            summary = dataclasses.replace(ledger.month_summary(), cap_micro_usd=cap)
            path = ledger.path
    except SwitchboardError as e:
        print(f"switchboard: {e.user_text()}", file=err)
        return EXIT_ERROR
    if as_json:
        json.dump({**summary.to_json(), "ledger": str(path)}, out, indent=2)
        out.write("\n")
        return 0
    usd = ledger_module.format_usd
    out.write(f"Cloud planning, {summary.month} (UTC)\n"
              f"  spent:      {usd(summary.spent_micro_usd)}\n"
              f"  reserved:   {usd(summary.reserved_micro_usd)}"
              " (calls in progress, charged at their worst case)\n")
    if summary.flagged_count:
        out.write(f"  unsettled:  {usd(summary.flagged_micro_usd)} ({summary.flagged_count} "
                  "call(s) cut off before their cost arrived; charged at their worst case)\n")
    remaining = summary.remaining_micro_usd
    out.write(f"  cap:        {'not set' if cap is None else usd(cap)}\n"
              f"  remaining:  {'not set' if remaining is None else usd(remaining)}\n")
    return 0
