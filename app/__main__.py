"""Entry point: `python -m app` or `switchboard` starts the tray app; verbs for IT and
scripts: `ask`, `doctor`, and `--selftest`."""

from __future__ import annotations

import sys

# Only `sys` at the top: the frozen app is also its own document reader child
# (`--extract-document`), started again for every document and every reader of a long
# PDF, and argparse, the version and the model runtime's arguments were ~30 ms of that.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def parser() -> argparse.ArgumentParser:
    import argparse

    from app.core.runtime.serve import add_arguments as add_serve_arguments

    p = argparse.ArgumentParser(prog="switchboard",
                                description="Switchboard: your office's AI, from the tray.")
    p.add_argument("--version", action=_version_action(), nargs=0,
                   help="show the version and exit")
    p.add_argument("--selftest", action="store_true",
                   help="build the GUI offscreen, check it, exit 0 if all is well")
    p.add_argument("--show", action="store_true", help="open the main window at start")
    p.add_argument("--quick-ask", action="store_true",
                   help="open quick ask (in the running Switchboard if there is one): for a "
                        "shortcut set in the desktop's keyboard settings")
    p.add_argument("--quit", action="store_true",
                   help="ask a running Switchboard to save its work and quit, and wait until "
                        "it has (the installer runs this before an upgrade)")
    # The embedded runtime's child process: started by the app itself, not by users.
    p.add_argument("--serve-model", metavar="MODEL.gguf", help=argparse.SUPPRESS)
    add_serve_arguments(p)
    verbs = p.add_subparsers(dest="verb")
    ask = verbs.add_parser("ask", help="ask the office node; the answer streams to stdout")
    ask.add_argument("prompt")
    ask.add_argument("--node", action="append", metavar="URL",
                     help="office node address (default: from Settings); give it more than "
                          "once for a pool, preferred in that order")
    ask.add_argument("--model", help="model name (default: from Settings)")
    ask.add_argument("--plan", choices=("auto", "cloud", "local"),
                     help="plan the request and carry it out step by step: as the router "
                          "decides (auto), planned in the cloud, or planned locally; the "
                          "steps are told on stderr")
    ask.add_argument("--json", action="store_true",
                     help="with --plan: one JSON object with the plan, the steps and the "
                          "answer")
    doctor = verbs.add_parser("doctor", help="check the office node, key store and data folder")
    doctor.add_argument("--json", action="store_true", help="machine-readable report")
    gpu_plan = verbs.add_parser("gpu-plan", help="show how a GGUF model would be split "
                                                  "across this computer's GPUs")
    gpu_plan.add_argument("model", metavar="MODEL.gguf")
    gpu_plan.add_argument("--gpus", metavar="MIB,MIB,...",
                          help="plan for these GPUs (memory in MiB) instead of this "
                               "computer's; 'none' for no GPU")
    gpu_plan.add_argument("--ctx", type=int, metavar="N", help="context length to plan for "
                                                                "(default: the largest that fits)")
    gpu_plan.add_argument("--json", action="store_true", help="machine-readable plan")
    summarize = verbs.add_parser("summarize", help="summarise a PDF, Word, text or HTML file "
                                 "on the office node or local GPUs (never the cloud)")
    summarize.add_argument("file")
    summarize.add_argument("--out", metavar="SUMMARY.md", help="write the summary here")
    summarize.add_argument("--node", action="append", metavar="URL",
                           help="office node address (default: from Settings); more than "
                                "once for a pool")
    report = verbs.add_parser("report", help="what a month's model calls came to: tokens "
                              "by tier, the share run locally, cloud spend and savings")
    report.add_argument("--month", metavar="YYYY-MM", help="the month (UTC; default: this "
                                                           "month)")
    report_format = report.add_mutually_exclusive_group()
    report_format.add_argument("--json", action="store_true", help="the month's figures")
    report_format.add_argument("--csv", action="store_true", help="one row a call")
    route = verbs.add_parser("route", help="read prompts, one a line, and write where Auto "
                             "would plan each (one JSON line a prompt)")
    route.add_argument("--assume-cloud-ready", action="store_true",
                       help="decide as if cloud planning were set up and allowed")
    budget = verbs.add_parser("budget",
                              help="this month's cloud planning spend, cap and what is left")
    budget.add_argument("--json", action="store_true", help="machine-readable report")
    key = verbs.add_parser("key", help="the cloud planner's OpenRouter key, kept in the "
                                       "system key store")
    key_verbs = key.add_subparsers(dest="key_verb", required=True)
    key_set = key_verbs.add_parser("set", help="store the key read from standard input "
                                               "(hidden when typed)")
    # Not an argument, a trap: a key on the command line is visible to everyone's `ps` and
    # lands in shell history. Refused without echoing it, as argparse's own error would.
    key_set.add_argument("key", nargs="?", action=_refuse_key_on_command_line(),
                         help=argparse.SUPPRESS)
    key_verbs.add_parser("status", help="whether a key is stored, and its label, limit "
                                        "and remaining credit from OpenRouter")
    key_verbs.add_parser("remove", help="remove the key; cloud planning is then off")
    return p


def _version_action() -> type[argparse.Action]:
    import argparse

    class ShowVersion(argparse.Action):
        """argparse's own version action needs the text when the parser is built, and
        reading the version costs every start; this reads it only for --version."""

        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                     values: object, option_string: str | None = None) -> None:
            from app import __version__

            print(f"switchboard {__version__}")
            parser.exit()

    return ShowVersion


def _refuse_key_on_command_line() -> type[argparse.Action]:
    import argparse

    class RefuseKeyOnCommandLine(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                     values: object, option_string: str | None = None) -> None:
            if values is not None:
                parser.error("the key is read from standard input, never from the command "
                             "line (where other programs can see it): run `switchboard key "
                             "set` and paste it, or pipe it in")

    return RefuseKeyOnCommandLine


def _arm_crash_report(argv: list[str]) -> None:
    if argv[:1] == ["--extract-document"]:
        return  # the document reader child: started often, kept lean; its parent reports
    if "--serve-model" in argv:
        import faulthandler

        faulthandler.enable()  # to its stderr: the model runtime's log
        return
    from app.core import crash

    verbs = {"ask", "doctor", "gpu-plan", "summarize", "budget", "key", "report", "route"}
    crash.arm("cli" if verbs & set(argv) else "app")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--extract-document"]:
        # A frozen build's document reader child (see app.core.documents.extract): the
        # rest of the arguments are the child's own.
        from app.core.documents import extract_child

        return extract_child.main(argv[1:])
    args = parser().parse_args(argv)
    if args.verb in ("ask", "summarize", "doctor", "report", "route"):
        from app.core import logs

        logs.setup()  # to the log file, as the app's: stderr is for the user's one line
    if args.serve_model:
        from app.core.runtime.serve import serve

        return serve(args.serve_model, args)
    if args.verb == "ask":
        from app.cli import ask as run_ask

        return run_ask(args.prompt, nodes=args.node, model=args.model, plan=args.plan,
                       as_json=args.json)
    if args.verb == "doctor":
        from app.cli import doctor as run_doctor

        return run_doctor(as_json=args.json)
    if args.verb == "gpu-plan":
        from app.cli import gpu_plan as run_gpu_plan

        return run_gpu_plan(args.model, gpus=args.gpus, n_ctx=args.ctx, as_json=args.json)
    if args.verb == "summarize":
        from app.cli import summarize as run_summarize

        return run_summarize(args.file, out_path=args.out, nodes=args.node)
    if args.verb == "report":
        from app.cli import report as run_report

        return run_report(args.month, as_json=args.json, as_csv=args.csv)
    if args.verb == "route":
        from app.cli import route as run_route

        return run_route(sys.stdin, sys.stdout, assume_cloud_ready=args.assume_cloud_ready)
    if args.verb == "budget":
        from app.cli import budget as run_budget

        return run_budget(as_json=args.json)
    if args.verb == "key":
        from app import cli

        if args.key_verb == "set":
            return cli.key_set(sys.stdin, sys.stdout, sys.stderr)
        if args.key_verb == "status":
            return cli.key_status(sys.stdout, sys.stderr)
        return cli.key_remove(sys.stdout, sys.stderr)
    if args.quit:
        from PySide6.QtCore import QCoreApplication

        from app.ui.single_instance import ask_running_instance_to_quit

        qapp = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])  # for the socket
        quit_ok = ask_running_instance_to_quit()
        del qapp
        return 0 if quit_ok else 1
    if args.selftest:
        from app.ui.selftest import selftest

        return selftest()
    from app.ui.start import run_tray_app

    return run_tray_app(show_window=args.show, quick_ask=args.quick_ask)


def entry() -> int:
    """The `switchboard` command: `main`, with a crash report armed from the start (see
    `app.core.crash`), ending quietly when its output pipe closes."""
    _arm_crash_report(sys.argv[1:])
    try:
        return main()
    except BrokenPipeError:
        # The reader went away (`switchboard ask … | head`): nothing more to say, and
        # nowhere to say it. End as other tools do, by SIGPIPE, with no traceback. Not by
        # leaving SIGPIPE at its default all along: then a node closing its connection
        # while a request is written would end the command silently too.
        import os
        import signal

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if hasattr(signal, "SIGPIPE"):  # not on Windows
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGPIPE)
        return 1


if __name__ == "__main__":
    sys.exit(entry())
