"""The command-line verbs, run as IT and scripts run them: real processes, a real
llama.cpp office node, exit codes and streams."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from app.core.settings import Settings
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.llama_server import LlamaServer
from tests.fixtures.policy_files import write_policy

ROOT = Path(__file__).parents[2]


def switchboard(*args: str, token: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    if token is not None:
        env["SWITCHBOARD_NODE_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ask_streams_the_answer_to_stdout(office_node: LlamaServer) -> None:
    Settings().changed(max_tokens=20).save()
    result = switchboard("ask", "Say hello", "--node", office_node.base_url,
                         token=office_node.api_key)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) >= 10  # twenty tokens of the tiny model's text
    assert result.stderr == ""


def test_ask_with_a_wrong_token_exits_2_with_the_reason(office_node: LlamaServer) -> None:
    result = switchboard("ask", "hi", "--node", office_node.base_url, token="wrong-token")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "refused your access token" in result.stderr
    assert "wrong-token" not in result.stderr  # a secret never reaches a message


def test_ask_keeps_the_partial_answer_when_the_node_drops(fault_server: FaultServer) -> None:
    fault_server.set_scenario("close_mid_stream", chunks=["Half ", "an answer"])
    result = switchboard("ask", "hi", "--node", fault_server.base_url)
    assert result.returncode == 2
    assert result.stdout == "Half an answer\n"
    assert "broke while it was answering" in result.stderr


def test_ask_refuses_a_node_its_policy_does_not_allow(office_node: LlamaServer) -> None:
    write_policy({"office_node_urls": ["https://ai1.office.example/v1"]})
    result = switchboard("ask", "hi", "--node", office_node.base_url,
                         token=office_node.api_key)
    assert result.returncode == 2
    assert "IT's policy on this computer does not allow that" in result.stderr
    assert "https://ai1.office.example/v1" in result.stderr
    assert result.stdout == ""  # nothing was asked of the node IT doesn't allow


def test_ask_with_no_node_set_up_says_so() -> None:
    result = switchboard("ask", "hi")
    assert result.returncode == 2
    assert "No office node is set up" in result.stderr


def test_doctor_json_reports_each_part(office_node: LlamaServer) -> None:
    Settings().changed(node_urls=[office_node.base_url]).save()
    result = switchboard("doctor", "--json", token=office_node.api_key)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    node = report["office_node"]
    assert node["reachable"] is True and node["models"] == [office_node.model]
    assert node["latency_ms"] > 0
    assert report["data_dir"]["writable"] is True
    assert report["keyring"]["token_from_environment"] is True


def test_doctor_says_what_is_wrong_when_the_node_is_down() -> None:
    Settings().changed(node_urls=[f"http://127.0.0.1:{closed_port()}/v1"]).save()
    result = switchboard("doctor")
    assert result.returncode == 1
    assert "FAIL  office node" in result.stdout and "can't be reached" in result.stdout


def test_selftest_builds_the_gui_and_exits_0() -> None:
    result = switchboard("--selftest")
    assert result.returncode == 0, result.stderr
    assert "selftest: ok" in result.stdout


def test_selftest_reports_a_broken_install_on_stderr(tmp_path: Path) -> None:
    # An install whose icons are missing: the frozen-app lookup finds none.
    broken = tmp_path / "frozen"
    (broken / "resources").mkdir(parents=True)
    code = ("import sys; sys._MEIPASS = sys.argv[1]; from app.__main__ import main; "
            "sys.exit(main(['--selftest']))")
    result = subprocess.run([sys.executable, "-c", code, str(broken)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "selftest failed" in result.stderr and "icon" in result.stderr


def test_summarize_writes_a_summary_with_page_references(office_node: LlamaServer,
                                                         tmp_path: Path) -> None:
    from tests.fixtures.documents import pdf_with_pages

    pdf = pdf_with_pages(tmp_path, pages=2)
    out = tmp_path / "summary.md"
    result = switchboard("summarize", str(pdf), "--node", office_node.base_url,
                         "--out", str(out), token=office_node.api_key, timeout=120)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.startswith("**Summary of known.pdf** (PDF, 2 pages)")
    sources = text.rsplit("*Sources: ", 1)[1]  # random text: which pages varies, not where
    cited = {int(n) for n in re.findall(r"\d+", sources)}
    assert cited and cited <= {1, 2}
    assert "2/2 pages" in result.stderr  # progress went to stderr


def test_summarize_refuses_an_unsupported_file_with_exit_2(tmp_path: Path) -> None:
    odd = tmp_path / "notes.xyz"
    odd.write_text("hello")
    result = switchboard("summarize", str(odd), "--node", "http://127.0.0.1:9/v1")
    assert result.returncode == 2
    assert "PDF" in result.stderr and result.stdout == ""


def test_report_shows_where_the_months_calls_ran(office_node: LlamaServer) -> None:
    Settings().changed(max_tokens=16).save()
    for _ in range(2):
        asked = switchboard("ask", "Say hello", "--node", office_node.base_url,
                            token=office_node.api_key)
        assert asked.returncode == 0, asked.stderr
    result = switchboard("report", "--json")
    assert result.returncode == 0, result.stderr
    month = json.loads(result.stdout)
    assert month["calls"] == 2 and month["local_share"] == 1.0
    assert month["tokens_by_tier"]["office_node"] > 0 == month["tokens_by_tier"]["cloud"]
    assert month["cloud_cost_micro_usd"] == 0 < month["baseline_micro_usd"]
    assert month["savings_micro_usd"] == month["baseline_micro_usd"]
    assert month["by_workflow"]["chat"]["calls"] == 2

    rows = switchboard("report", "--csv").stdout.splitlines()
    assert rows[0].startswith("at,workflow,purpose,route,reason") and len(rows) == 3
    assert "command line answers locally" in rows[1]
    assert "Say hello" not in "\n".join(rows)  # counts and names only, never text

    text = switchboard("report").stdout
    assert "run locally: 100% of tokens" in text and "chat: 2 calls" in text
    earlier = json.loads(switchboard("report", "--month", "2020-01", "--json").stdout)
    assert earlier["calls"] == 0


def test_report_refuses_a_month_written_wrong() -> None:
    result = switchboard("report", "--month", "11/2026")
    assert result.returncode == 2
    assert "YYYY-MM" in result.stderr and result.stdout == ""


def test_route_writes_a_json_line_a_prompt() -> None:
    prompts = ["What is the project deadline?",
               "Plan the office move: list what IT, facilities and HR each need to do, "
               "build a week-by-week schedule, and draft the announcement to staff.", ""]
    result = subprocess.run([sys.executable, "-m", "app", "route", "--assume-cloud-ready"],
                            cwd=ROOT, input="\n".join(prompts) + "\n", capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["prompt"], d["plan"]) for d in lines] == [(prompts[0], False),
                                                         (prompts[1], True)]
    assert all(isinstance(d["reason"], str) and d["reason"] for d in lines)
    # Without a budget or a key the cloud is not ready: nothing is planned there.
    unready = subprocess.run([sys.executable, "-m", "app", "route"], cwd=ROOT,
                             input=prompts[1] + "\n", capture_output=True, text=True,
                             timeout=60)
    decided = json.loads(unready.stdout)
    assert decided["plan"] is False and "no monthly budget" in decided["reason"]


def test_ask_piped_into_head_ends_quietly(fault_server: FaultServer) -> None:
    # A long, paced answer: the reader goes away long before it ends.
    fault_server.set_scenario("ok", chunks=["word "] * 4000, delay_s=0.001)
    process = subprocess.Popen([sys.executable, "-m", "app", "ask", "hi", "--node",
                                fault_server.base_url], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    head = process.stdout.read(300)  # as `| head -c 300` does
    process.stdout.close()
    process.wait(timeout=60)
    err = process.stderr.read()
    process.stderr.close()
    assert head == b"word " * 60
    assert err == b""  # no traceback, no asyncio noise
    assert process.returncode == -signal.SIGPIPE  # the shell's usual 141


def test_ask_interrupted_exits_130_without_a_traceback(fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=["word "] * 4000, delay_s=0.005)
    process = subprocess.Popen([sys.executable, "-m", "app", "ask", "hi", "--node",
                                fault_server.base_url], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(50)  # it is answering
    process.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert b"Traceback" not in err and b"Task" not in err


def test_a_verb_leaves_sigpipe_ignored_for_its_connections() -> None:
    # With SIGPIPE at its default, a node closing the connection while a request is being
    # written would end the command (or a test run calling main) silently with 141.
    from app.__main__ import main

    assert main(["budget", "--json"]) == 0
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
