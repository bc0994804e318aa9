"""`switchboard gpu-plan`, run as IT runs it: a real process, exit codes and streams."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def switchboard(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SWITCHBOARD_GPUS"}
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_json_plan_for_two_24gb_gpus(tiny_model_path: Path) -> None:
    result = switchboard("gpu-plan", str(tiny_model_path), "--gpus", "24564,24564", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["fits"] is True
    assert report["n_gpu_layers"] == report["n_layers"] + 1 == 3
    assert report["n_ctx"] == 2048
    assert len(report["tensor_split"]) == 2 and sum(report["tensor_split"]) == 1
    assert len(report["per_gpu_mib"]) == 2
    assert report["warnings"] == []
    assert report["flash_attn"] is True and report["split_mode"] == "layer"
    assert [g["total_mib"] for g in report["gpus"]] == [24564, 24564]
    assert report["model"]["name"] == "switchboard-tiny"


def test_human_plan_has_a_row_per_gpu_and_the_warnings(tiny_model_path: Path) -> None:
    result = switchboard("gpu-plan", str(tiny_model_path), "--gpus", "none")
    assert result.returncode == 0, result.stderr
    assert "n_gpu_layers 0" in result.stdout
    assert "note: No NVIDIA GPU was found" in result.stdout
    result = switchboard("gpu-plan", str(tiny_model_path), "--gpus", "8192,4096",
                         "--ctx", "1024")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "simulated" in line]
    assert len(rows) == 2
    assert "context 1024 tokens" in result.stdout


def test_a_file_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "notes.gguf"
    fake.write_text("these are meeting notes, not a model")
    result = switchboard("gpu-plan", str(fake), "--gpus", "24564")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "can't be used as a model" in result.stderr


def test_a_bad_gpu_list_is_refused(tiny_model_path: Path) -> None:
    result = switchboard("gpu-plan", str(tiny_model_path), "--gpus", "24GB")
    assert result.returncode == 2
    assert "--gpus" in result.stderr
