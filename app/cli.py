"""The command-line verbs for IT, scripts and tests: `ask`, `doctor`, `gpu-plan`, `budget`
and `key`. Same core as the tray app, no window, no Qt."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from app.core import paths, secrets
from app.core.cloud_account import openrouter_url
from app.core.errors import KeyStoreLocked, KeyStoreUnavailable, PolicyForbids, SwitchboardError
from app.core.history import History
from app.core.policy import Bounded, PolicyFile, bound, read_policy
from app.core.runtime import gpus as gpu_inventory
from app.core.runtime.gpu_split import plan_split, split_report
from app.core.settings import RunOn, Settings
from app.core.workspace import Workspace, test_connection

EXIT_ERROR = 2


def _settings(nodes: list[str] | None, model: str | None) -> Settings:
    """The saved settings with the command line's choices, bounded by IT's policy as the
    app bounds them; a `--node` the policy doesn't allow is refused, not swapped."""
    settings, _problems = Settings.load()
    changes: dict[str, Any] = {k: v for k, v in (("node_urls", nodes), ("model", model))
                               if v is not None}
    if nodes:
        changes["backend"] = RunOn.OFFICE_NODE  # `--node` names where to ask
    if changes:
        settings = settings.changed(**changes)
    policy = read_policy().policy
    bounded = bound(settings, policy).settings
    if nodes and bounded.node_urls != settings.node_urls:
        refused = [n for n in settings.node_urls if n not in bounded.node_urls]
        raise PolicyForbids(f"{', '.join(refused)} is not one of the office nodes IT "
                            f"allows: {', '.join(policy.office_node_urls)}")
    return bounded


def _workspace(nodes: list[str] | None = None, model: str | None = None,
               err: TextIO = sys.stderr) -> Workspace:
    """The user's workspace as the command line uses it (blocks on disk). What opening
    the history found (a damaged file kept aside) is said on `err`, as the app says it."""
    settings = _settings(nodes, model)
    source = read_policy()
    history = History(paths.history_db())
    for problem in history.problems:
        print(f"switchboard: {problem}", file=err)
    return Workspace(settings, history, [], source.policy, source)


def _run[T](work: Callable[[Workspace], Coroutine[Any, Any, T]], workspace: Workspace) -> T:
    async def run() -> T:
        try:
            return await work(workspace)
        finally:
            await workspace.close()

    return asyncio.run(run())


def ask(prompt: str, nodes: list[str] | None = None, model: str | None = None,
        out: TextIO = sys.stdout, err: TextIO = sys.stderr, *, plan: str | None = None,
        as_json: bool = False) -> int:
    """Stream the answer to `out`; a fault goes to `err` with exit code 2. Several
    `nodes` are a pool, preferred in that order when equally busy. With `plan` ("auto",
    "cloud" or "local") the request is planned and carried out step by step, each step
    told on `err` as it ends; `as_json` prints one object with the plan, the steps and
    the answer instead."""
    received = False

    def write(text: str) -> None:
        nonlocal received
        received = True
        if not as_json:
            out.write(text)
            out.flush()

    try:
        workspace = _workspace(nodes, model, err)
        if plan is None:
            _run(lambda w: w.ask(prompt, write), workspace)
        else:
            turn = _run(lambda w: w.ask_planned(prompt, plan, _planned_events(write, err)),
                        workspace)
            if as_json:
                json.dump(_planned_json(turn), out, indent=2)
                out.write("\n")
                return 0 if turn[-1].status == "complete" else EXIT_ERROR
            if turn[-1].status != "complete":
                if received:
                    out.write("\n")
                print(f"switchboard: {turn[-1].error}", file=err)
                return EXIT_ERROR
    except SwitchboardError as e:
        if received:
            out.write("\n")
        print(f"switchboard: {e.user_text()}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    out.write("\n")
    return 0


def _planned_events(write: Callable[[str], None], err: TextIO) -> Callable[[Any], None]:
    """The answer's text to `write`; the plan and each step, as they end, to `err`."""
    from app.core.chat import AnswerFinished, MessageAdded, TextAppended

    answer: set[int] = set()

    def emit(event: Any) -> None:
        if isinstance(event, MessageAdded) and event.message.role == "assistant" \
                and event.message.kind == "":
            answer.add(event.message.id)
        elif isinstance(event, TextAppended) and event.message_id in answer:
            write(event.text)
        elif isinstance(event, AnswerFinished) and event.message.kind == "plan":
            print(f"switchboard: {event.message.content}", file=err)
        elif isinstance(event, AnswerFinished) and event.message.kind == "step":
            step = event.message
            print(f"switchboard: step {json.loads(step.data)['step']} {step.status}"
                  f"{f' on {step.ran_on}' if step.ran_on else ''}: {step.title}", file=err)
        err.flush()

    return emit


def _planned_json(turn: list[Any]) -> dict[str, Any]:
    note = next((m for m in turn if m.kind == "plan"), None)
    made = note.content.rsplit("\n\n", 1)[-1].strip("*") if note else turn[1].content
    where = ("cloud" if note and note.route == "cloud plan" else "local" if note
             else "not planned")
    return {
        "plan": {"where": where, "why": made,
                 "steps": json.loads(note.data)["steps"] if note and note.data else []},
        "steps": [{"id": json.loads(m.data)["step"], "route": m.ran_on,
                   "status": m.status, "text": m.content}
                  for m in turn if m.kind == "step"],
        "answer": turn[-1].content,
        "status": turn[-1].status,
    }


def doctor(as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """Each tier's state; exit 0 when everything needed for chatting works, else 1."""
    report: dict[str, Any] = {}
    settings, problems = Settings.load()
    source = read_policy()
    bounded = bound(settings, source.policy)
    settings = bounded.settings  # the node checked is the one the app would use
    report["settings"] = {"file": str(paths.settings_file()), "problems": problems}
    report["policy"] = _policy_report(source, bounded)

    data = paths.data_dir()
    try:
        with tempfile.NamedTemporaryFile(dir=data) as probe:
            # An empty file fits on a full disk: write and sync a page, as saving does.
            probe.write(bytes(4096))
            probe.flush()
            os.fsync(probe.fileno())
        report["data_dir"] = {"path": str(data), "writable": True}
    except OSError as e:
        report["data_dir"] = {"path": str(data), "writable": False, "error": e.strerror}

    secure = secrets.secure_backend() is not None
    report["keyring"] = {"backend": secrets.backend_name(), "secure": secure,
                         "token_from_environment": bool(os.environ.get("SWITCHBOARD_NODE_TOKEN")),
                         "help": None if secure else KeyStoreUnavailable().hint}

    node: dict[str, Any] = {"url": settings.node_url, "configured": bool(settings.node_url)}
    if settings.node_urls:
        health = asyncio.run(test_connection(settings, None, source.policy))
        node.update(reachable=health.ok, models=health.models,
                    latency_ms=round(health.latency_ms, 1) if health.latency_ms else None,
                    error=health.error.user_text() if health.error else None)
        report["office_nodes"] = [
            {"name": n.name, "url": url, "answering": n.answering, "engine": n.engine,
             "context_tokens": n.context_tokens, "slots": n.slots, "busy": n.busy,
             "error": n.error or None}
            for url, n in zip(settings.node_urls, health.nodes, strict=True)]
    report["office_node"] = node

    healthy = report["data_dir"]["writable"] and node.get("reachable", False)
    report["ok"] = healthy
    if as_json:
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        _print_report(report, out)
    return 0 if healthy else 1


def _policy_report(source: PolicyFile, bounded: Bounded) -> dict[str, Any]:
    """The machine policy as IT checks it: the file, what is in force, what it bounds."""
    policy = source.policy
    return {"file": str(source.path), "found": source.found,
            "problems": list(source.problems), "notes": list(source.notes),
            "in_force": {"office_node_urls": list(policy.office_node_urls),
                         "cloud_allowed": policy.cloud_allowed,
                         "budget_ceiling_usd": policy.budget_ceiling_usd,
                         "allowed_planner_models": list(policy.allowed_planner_models)},
            "bounded_settings": sorted(bounded.limits),
            "changed_settings": list(bounded.changes)}


def _policy_line(policy: dict[str, Any]) -> str:
    if not policy["found"]:
        return f"policy: none at {policy['file']}; users' settings are not bounded"
    if policy["problems"]:
        return f"policy: {policy['file']} is not in force; cloud planning is off"
    rules = policy["in_force"]
    parts = [f"office nodes {', '.join(rules['office_node_urls']) or 'any'}",
             "cloud planning " + ("allowed" if rules["cloud_allowed"] else "off")]
    if rules["budget_ceiling_usd"] is not None:
        parts.append(f"budget ceiling ${rules['budget_ceiling_usd']:,.2f} a month")
    parts.append(f"planner models {', '.join(rules['allowed_planner_models']) or 'any'}")
    return f"policy: {policy['file']}: " + "; ".join(parts)


def _print_report(report: dict[str, Any], out: TextIO) -> None:
    def line(ok: bool, text: str) -> None:
        out.write(f"{'ok  ' if ok else 'FAIL'}  {text}\n")

    node = report["office_node"]
    if not node["configured"]:
        line(False, "office node: not set up (Settings, or `--node` for ask)")
    for each in report.get("office_nodes", []):
        if each["answering"]:
            what = ", ".join(str(f) for f in (
                each["engine"], f"{each['slots']} at once",
                f"{each['context_tokens']:,} tokens a request" if each["context_tokens"]
                else "", f"{each['busy']} busy") if f)
            line(True, f"office node: {each['url']} answers ({what})")
        else:
            line(False, f"office node: {each['url']}: {each['error']}")
    if node.get("reachable"):
        out.write(f"      models: {', '.join(node['models']) or 'none'}\n")
    kr = report["keyring"]
    line(kr["secure"], f"key store: {kr['backend']}")
    if kr["help"]:
        out.write(f"      {kr['help']}\n")
    dd = report["data_dir"]
    line(dd["writable"], f"data folder: {dd['path']}"
                         + ("" if dd["writable"] else f" is not writable ({dd.get('error')})"))
    for problem in report["settings"]["problems"]:
        line(False, f"settings: {problem}")
    policy = report["policy"]
    line(not policy["problems"], _policy_line(policy))
    for problem in policy["problems"]:
        line(False, f"policy: {problem}")
    for note in policy["notes"]:
        out.write(f"note  policy: {note}\n")
    for change in policy["changed_settings"]:
        out.write(f"note  settings: {change}\n")


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
    result = plan_split(model, devices, n_ctx=n_ctx)
    if as_json:
        report = {**result.to_json(), "gpus": [asdict(g) for g in devices],
                  "model": {"name": model.name, "quantisation": model.quantisation,
                            "n_layers": model.n_layers, "n_ctx_train": model.n_ctx_train,
                            "file_size": model.file_size}}
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        out.write(split_report(result, model, devices))
    return 0


def report(month: str | None = None, as_json: bool = False, as_csv: bool = False,
           out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """What a month's model calls came to (default: this month, UTC); exit 2 for a month
    written wrong or a record that can't be read."""
    from app.core.money import format_usd
    from app.core.routing.record import CallRecord
    from app.core.routing.report import month_report, this_month, write_csv

    month = month or this_month()
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        print(f"switchboard: --month is written YYYY-MM (for example 2026-11), not {month!r}",
              file=err)
        return EXIT_ERROR
    try:
        record = CallRecord()
        for problem in record.problems:  # a damaged record kept aside, a new one started
            print(f"switchboard: {problem}", file=err)
        try:
            calls = record.calls(month)
        finally:
            record.close()
    except SwitchboardError as e:
        print(f"switchboard: {e.user_text()}", file=err)
        return EXIT_ERROR
    if as_csv:
        write_csv(calls, out)
        return 0
    result = month_report(calls, month)
    if as_json:
        json.dump(result.to_json(), out, indent=2)
        out.write("\n")
        return 0
    total = result.total
    tiers = total.tokens_by_tier
    out.write(f"Model calls, {month} (UTC): {total.calls}\n"
              f"  tokens:     {total.tokens:,} (office nodes {tiers['office_node']:,}, "
              f"Local GPUs {tiers['local_gpus']:,}, cloud {tiers['cloud']:,})\n"
              f"  run locally: {total.local_share:.0%} of tokens\n"
              f"  cloud spend: {format_usd(total.cloud_cost_micro_usd)}"
              f" (cloud-only baseline {format_usd(total.baseline_micro_usd)})\n")
    if total.local_cost_micro_usd:
        out.write(f"  node cost:  {format_usd(total.local_cost_micro_usd)} (as IT prices "
                  "its nodes)\n")
    out.write(f"  saved:      {format_usd(total.savings_micro_usd)}\n"
              f"  fell back:  {total.fallback_rate:.0%} of calls\n")
    for workflow, each in result.by_workflow.items():
        if each.calls:
            out.write(f"  {workflow.replace('_', ' ')}: {each.calls} calls, "
                      f"{each.tokens:,} tokens, {each.local_share:.0%} local, "
                      f"saved {format_usd(each.savings_micro_usd)}\n")
    return 0


def route(stdin: TextIO, out: TextIO, *, assume_cloud_ready: bool = False) -> int:
    """Read prompts, one a line, and write where Auto would plan each, one JSON line a
    prompt: {"prompt", "plan", "reason"}. The cloud counts as ready as the settings and
    IT's policy say, or always with `assume_cloud_ready` (to measure the router alone)."""
    from app.core.routing.cloud_access import cloud_access
    from app.core.routing.router import CloudAccess, Mode, decide

    settings, _problems = Settings.load()
    policy = read_policy().policy
    cloud = CloudAccess(True) if assume_cloud_ready else cloud_access(
        bound(settings, policy).settings, policy)
    for line in stdin:
        prompt = line.rstrip("\r\n")
        if not prompt.strip():
            continue
        decision = decide(prompt, mode=Mode.AUTO, cloud=cloud)
        out.write(json.dumps({"prompt": prompt, "plan": decision.plan_in_cloud,
                              "reason": decision.reason}) + "\n")
    out.flush()
    return 0


def budget(as_json: bool = False, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """This month's cloud planning spend, reservations, cap and what is left; exit 2 when the
    ledger can't be read."""
    # Imported here, like gguf for gpu-plan: the other verbs don't need the ledger.
    import dataclasses

    from app.core import budget as ledger_module
    from app.core.cloud import user_cap
    from app.core.money import format_usd

    settings, _problems = Settings.load()
    policy = read_policy().policy
    # The cap known without the network: the user's budget bounded by IT's ceiling (the
    # key's remaining credit lowers it further when the app reserves, budget.cap).
    cap = user_cap(bound(settings, policy).settings, policy)
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
    usd = format_usd
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


# ---------------------------------------------------------------------------------------
# The cloud planner's key: `key set`, `key status`, `key remove`

MIN_KEY_CHARS = 20  # OpenRouter's keys are "sk-or-v1-" and 64 hex digits: 73
MAX_KEY_CHARS = 4096  # far above any real key; refused before any store sees it
# A bearer token's characters (RFC 6750 b64token). Anything else is a paste gone wrong
# ("Bearer sk-…", quotes, a second word) that OpenRouter would refuse anyway.
_KEY_SHAPE = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_SHOWN_TAIL = 4  # the most of a key ever printed: its last four characters


def _key_problem(key: str) -> str | None:
    """Why `key` can't be an OpenRouter key, in words that never quote it; None if it can."""
    looks = "OpenRouter keys look like sk-or-v1-… and are about 73 characters"
    if not key:
        return ("no key was given. Paste it when asked, or pipe it in on standard input "
                "(never on the command line, where other programs can see it).")
    if len(key) > MAX_KEY_CHARS:
        return (f"that key is {len(key)} characters long, more than the {MAX_KEY_CHARS} "
                f"Switchboard accepts ({looks}). Check that only the key was pasted; "
                "nothing was saved.")
    if len(key) < MIN_KEY_CHARS:
        return f"that is too short to be an OpenRouter key ({looks}); nothing was saved."
    if not _KEY_SHAPE.fullmatch(key):
        return ("that doesn't look like an OpenRouter key: it has spaces, quotes or other "
                f"characters a key never has ({looks}). Paste only the key; nothing was saved.")
    return None


def _key_tail(key: str) -> str:
    # A short secret (a token typed by hand) would lose too much to its last four.
    return f" (ends in …{key[-_SHOWN_TAIL:]})" if len(key) >= 4 * _SHOWN_TAIL else ""


def _require_key_store() -> None:
    """Raise KeyStoreUnavailable when the key store is not one of the secure ones:
    `get_secret` alone would answer "no key" and hide why."""
    if secrets.secure_backend() is None:
        raise KeyStoreUnavailable(secrets.backend_name())


def key_set(stdin: TextIO, out: TextIO, err: TextIO) -> int:
    """Store the OpenRouter key read from `stdin` (one line; a hidden prompt on a terminal)
    in the OS key store, and read it back; exit 2 when it is refused or not kept.

    The key is never taken from the command line: other users' `ps` shows argv."""
    try:
        if stdin.isatty():
            import getpass

            raw = getpass.getpass("OpenRouter key (typing is hidden): ", stream=err)
        else:
            # One character past the limit is enough to refuse an over-long paste without
            # reading all of whatever was piped in.
            raw = stdin.readline(MAX_KEY_CHARS + 2)
    except EOFError:
        raw = ""
    except KeyboardInterrupt:
        err.write("\n")
        return 130
    key = raw.strip()
    problem = _key_problem(key)
    if problem:
        print(f"switchboard: {problem}", file=err)
        return EXIT_ERROR
    refused = secrets.secure_backend() is None
    try:
        secrets.set_secret(secrets.OPENROUTER_KEY, key)
    except KeyStoreUnavailable as e:
        if refused or isinstance(e, KeyStoreLocked):
            print(f"switchboard: {e.user_text()}", file=err)
            return EXIT_ERROR
        return _key_not_kept(key, e.detail, err)
    except Exception as e:
        # A backend's own error type escapes keyring's hierarchy: Windows Credential Manager
        # refuses a blob over 2,560 bytes with a pywintypes.error. Its text may quote the
        # key, so only its type is shown.
        return _key_not_kept(key, type(e).__name__, err)
    out.write(f"OpenRouter key stored in the key store ({secrets.backend_name()})"
              f"{_key_tail(key)}.\nCheck it with `switchboard key status`.\n")
    return 0


def _key_not_kept(key: str, detail: str, err: TextIO) -> int:
    # Whatever the store holds now may be a cut-off key: remove it, so the planner never
    # sends half a key. Best effort: the store has just failed once.
    with contextlib.suppress(Exception):
        secrets.delete_secret(secrets.OPENROUTER_KEY)
    print(f"switchboard: the key store would not keep the key ({detail}). The key is "
          f"{len(key)} characters long, which may be more than this key store accepts; "
          "check that only the key was pasted. No key is stored; cloud planning is off.",
          file=err)
    return EXIT_ERROR


def key_status(out: TextIO, err: TextIO, *, base_url: str | None = None) -> int:
    """Whether an OpenRouter key is stored (never the key: at most its last four
    characters) and what OpenRouter says of it: label, limit and remaining credit.

    Exit 0 when a key is stored and OpenRouter answers, 1 when none is stored, 2 when the
    key store or OpenRouter fails. `base_url` defaults to `openrouter_url()`."""
    from app.core.llm.openrouter import KeyInfo, OpenRouter
    from app.core.money import format_usd

    try:
        _require_key_store()
        key = secrets.get_secret(secrets.OPENROUTER_KEY)
    except SwitchboardError as e:
        print(f"switchboard: {e.user_text()}", file=err)
        return EXIT_ERROR
    if not key:
        out.write("OpenRouter key: none stored; cloud planning is off.\n"
                  "Add one with `switchboard key set` (it reads the key from standard input).\n")
        return 1
    out.write(f"OpenRouter key: stored{_key_tail(key)}\n")
    out.flush()

    async def ask() -> KeyInfo:
        client = OpenRouter(key, base_url=base_url or openrouter_url())
        try:
            return await client.key_info()
        finally:
            await client.aclose()

    try:
        info = asyncio.run(ask())
    except SwitchboardError as e:
        print(f"switchboard: {e.user_text().replace(key, '[redacted]')}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130

    def usd(micro: int | None, none: str) -> str:
        return none if micro is None else format_usd(micro)

    out.write(f"  label:      {_shown_label(info.label, key)}\n"
              f"  limit:      {usd(info.limit_micro_usd, 'none (the key has no limit)')}\n"
              f"  remaining:  {usd(info.remaining_micro_usd, 'no limit')}\n"
              f"  this month: {usd(info.usage_monthly_micro_usd, 'not reported')}\n")
    if info.is_free_tier:
        out.write("  free tier: the account has never bought credit\n")
    return 0


def _shown_label(label: str, key: str) -> str:
    """The key's label, unless it is OpenRouter's default one: the key itself, cut to its
    first and last few characters ("sk-or-v1-0e6...f22"), more than the four we show."""
    head, dots, _tail = label.partition("...")
    if dots and head and key.startswith(head):
        return "not named (OpenRouter calls it by part of the key)"
    return label or "not named"


def key_remove(out: TextIO, err: TextIO) -> int:
    """Remove the OpenRouter key from the key store and check that it is gone; exit 2 when
    the key store is refused or fails."""
    try:
        _require_key_store()
        stored = secrets.get_secret(secrets.OPENROUTER_KEY) is not None
        secrets.delete_secret(secrets.OPENROUTER_KEY)
        if secrets.get_secret(secrets.OPENROUTER_KEY) is not None:
            raise KeyStoreUnavailable("the key store kept the key after removing it")
    except SwitchboardError as e:
        print(f"switchboard: {e.user_text()}", file=err)
        return EXIT_ERROR
    out.write("OpenRouter key removed; cloud planning is off.\n" if stored
              else "No OpenRouter key was stored; nothing to remove.\n")
    return 0


def summarize(file: str, out_path: str | None = None, nodes: list[str] | None = None,
              out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Summarise a file on the local tiers; progress on stderr; exit 2 with the reason for a
    refused file or a fault."""
    from app.core.documents.summarize import Progress

    def progress(p: Progress) -> None:
        what = "combining" if p.combining else f"{p.chunks_done}/{p.chunks_total} parts"
        err.write(f"\rswitchboard: {what}, {p.pages_done}/{p.pages_total} pages   ")
        err.flush()

    try:
        workspace = _workspace(nodes, None, err)
        text = _run(lambda w: w.summarize_file(Path(file), progress), workspace) + "\n"
    except SwitchboardError as e:
        print(f"\nswitchboard: {e.user_text()}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    err.write("\n")
    if out_path:
        paths.atomic_write_text(Path(out_path), text)
    else:
        out.write(text)
    return 0
