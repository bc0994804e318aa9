"""GPU inventory: the test and support override, CUDA_VISIBLE_DEVICES as CUDA reads it,
and a real (fake) `nvidia-smi` executable on PATH, since this machine has no GPU."""

from __future__ import annotations

import logging
import shutil
import stat
import sys
import types
from pathlib import Path

import pytest

from app.core.runtime import gpus
from app.core.runtime.gpus import Gpu, inventory, parse_gpu_list

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fake nvidia-smi is a sh script")

UUID_A = "GPU-aaaaaaaa-1111-2222-3333-444444444444"
UUID_B = "GPU-bbbbbbbb-1111-2222-3333-444444444444"
UUID_C = "GPU-bbbbcccc-1111-2222-3333-444444444444"
THREE_GPUS = (f"0, {UUID_A}, NVIDIA GeForce RTX 4090, 24564, 23012\n"
              f"1, {UUID_B}, NVIDIA RTX A4000, 16376, 16100\n"
              f"2, {UUID_C}, NVIDIA GeForce RTX 3060, 12288, 11800\n")


def fake_nvidia_smi(folder: Path, body: str) -> Path:
    """An executable `nvidia-smi` in `folder` that runs the sh `body`."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


@pytest.fixture
def smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds only our folder, and NVML is unavailable (as without a driver), so the
    inventory goes to nvidia-smi even on a machine that has GPUs."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setattr(gpus, "_nvml", lambda: None)
    monkeypatch.delenv("SWITCHBOARD_GPUS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return folder


def printing(folder: Path, csv: str) -> None:
    # printf is a shell builtin: PATH holds nothing but the fake.
    fake_nvidia_smi(folder, f"printf '%s' '{csv}'")


# --- SWITCHBOARD_GPUS ---------------------------------------------------------------

def test_env_injects_gpus_with_all_memory_free() -> None:
    found = inventory({"SWITCHBOARD_GPUS": "24564, 12288"})
    assert [(g.index, g.total_mib, g.free_mib) for g in found] == [(0, 24564, 24564),
                                                                   (1, 12288, 12288)]


@pytest.mark.parametrize("text", ["", "none", " None "])
def test_env_can_say_no_gpu(text: str) -> None:
    assert inventory({"SWITCHBOARD_GPUS": text}) == []


def test_env_wins_over_the_driver_and_ignores_cuda_visible_devices(smi: Path) -> None:
    printing(smi, THREE_GPUS)
    found = inventory({"SWITCHBOARD_GPUS": "8192", "CUDA_VISIBLE_DEVICES": "1"})
    assert [g.total_mib for g in found] == [8192]


def test_a_broken_env_value_means_no_gpu_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert inventory({"SWITCHBOARD_GPUS": "24GB"}) == []
    assert "SWITCHBOARD_GPUS" in caplog.text


@pytest.mark.parametrize("text", ["24GB", "0", "-5", "8192,,8192"])
def test_parse_gpu_list_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_gpu_list(text)


# --- nvidia-smi -------------------------------------------------------------------------

def test_nvidia_smi_lists_every_gpu_with_its_free_memory(smi: Path) -> None:
    printing(smi, THREE_GPUS)
    assert inventory({}) == [Gpu(0, "NVIDIA GeForce RTX 4090", 24564, 23012),
                             Gpu(1, "NVIDIA RTX A4000", 16376, 16100),
                             Gpu(2, "NVIDIA GeForce RTX 3060", 12288, 11800)]


def test_nvidia_smi_is_asked_for_exactly_what_is_parsed(smi: Path, tmp_path: Path) -> None:
    args = tmp_path / "args"
    fake_nvidia_smi(smi, f'echo "$@" > {args}\nprintf "%s" "{THREE_GPUS}"')
    inventory({})
    assert args.read_text().split() == [
        "--query-gpu=index,uuid,name,memory.total,memory.free", "--format=csv,noheader,nounits"]


@pytest.mark.parametrize(("visible", "expected"), [
    ("2,0", ["NVIDIA GeForce RTX 3060", "NVIDIA GeForce RTX 4090"]),  # CUDA's order
    ("1", ["NVIDIA RTX A4000"]),
    (" 0 , 2 ", ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3060"]),
    ("", []),
    ("-1", []),
    ("0,7,1", ["NVIDIA GeForce RTX 4090"]),  # an unknown index ends the list, as in CUDA
    ("1,-1,0", ["NVIDIA RTX A4000"]),
    ("1,1", ["NVIDIA RTX A4000"]),
    (UUID_C, ["NVIDIA GeForce RTX 3060"]),
    (f"{UUID_B},0", ["NVIDIA RTX A4000", "NVIDIA GeForce RTX 4090"]),
    ("GPU-aaaa", ["NVIDIA GeForce RTX 4090"]),  # a unique UUID prefix, as CUDA allows
    ("GPU-bbbb", []),  # ambiguous: matches two GPUs
    ("GPU-ffff,0", []),
])
def test_cuda_visible_devices_filters_and_renumbers(smi: Path, visible: str,
                                                    expected: list[str]) -> None:
    printing(smi, THREE_GPUS)
    found = inventory({"CUDA_VISIBLE_DEVICES": visible})
    assert [g.name for g in found] == expected
    assert [g.index for g in found] == list(range(len(expected)))


def test_a_gpu_without_memory_figures_is_skipped(smi: Path) -> None:
    printing(smi, f"0, {UUID_A}, NVIDIA GB10, [N/A], [N/A]\n"
                  f"1, {UUID_B}, NVIDIA RTX A4000, 16376, 16100\n")
    assert [g.name for g in inventory({})] == ["NVIDIA RTX A4000"]


def test_nvidia_smi_that_cannot_reach_the_driver_means_no_gpu(
        smi: Path, caplog: pytest.LogCaptureFixture) -> None:
    fake_nvidia_smi(smi, "echo \"NVIDIA-SMI has failed because it couldn't communicate "
                         "with the NVIDIA driver.\"\nexit 9")
    with caplog.at_level(logging.WARNING):
        assert inventory({}) == []
    assert "couldn't communicate" in caplog.text


def test_nvidia_smi_that_hangs_is_given_up_on(smi: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpus, "NVIDIA_SMI_TIMEOUT_S", 0.3)
    fake_nvidia_smi(smi, f"exec {shutil.which('sleep')} 30")
    assert inventory({}) == []


def test_no_nvidia_smi_means_no_gpu(smi: Path) -> None:
    assert inventory({}) == []


def test_nvidia_smi_that_is_not_executable_means_no_gpu(smi: Path) -> None:
    (smi / "nvidia-smi").write_bytes(b"\x7fELF garbage")
    (smi / "nvidia-smi").chmod(0o755)
    assert inventory({}) == []


# --- NVML -------------------------------------------------------------------------------

class _Memory:
    def __init__(self, total: int, free: int) -> None:
        self.total, self.free = total, free


def fake_pynvml(*, fail_init: bool = False) -> types.ModuleType:
    """A stand-in for nvidia-ml-py's module: NVML is a C library behind it, and this
    machine has no driver for the real one to talk to."""
    mib = 1024 * 1024
    devices = [(UUID_A.encode(), b"NVIDIA GeForce RTX 4090", _Memory(24564 * mib, 20000 * mib)),
               (UUID_B, "NVIDIA RTX A4000", _Memory(16376 * mib, 16000 * mib))]
    module = types.ModuleType("pynvml")

    def init() -> None:
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    module.nvmlInit = init  # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = lambda: len(devices)  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = lambda i: devices[i]  # type: ignore[attr-defined]
    module.nvmlDeviceGetUUID = lambda h: h[0]  # type: ignore[attr-defined]
    module.nvmlDeviceGetName = lambda h: h[1]  # type: ignore[attr-defined]
    module.nvmlDeviceGetMemoryInfo = lambda h: h[2]  # type: ignore[attr-defined]
    return module


def test_nvml_is_preferred_and_honours_cuda_visible_devices(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi to fall back on
    assert inventory({}) == [Gpu(0, "NVIDIA GeForce RTX 4090", 24564, 20000),
                             Gpu(1, "NVIDIA RTX A4000", 16376, 16000)]
    assert inventory({"CUDA_VISIBLE_DEVICES": UUID_B}) == [Gpu(0, "NVIDIA RTX A4000",
                                                               16376, 16000)]


def test_failing_nvml_falls_back_to_nvidia_smi(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_init=True))
    monkeypatch.setenv("PATH", str(tmp_path))
    printing(tmp_path, THREE_GPUS)
    assert len(inventory({})) == 3


def test_real_nvml_without_a_driver_does_not_raise() -> None:
    found = gpus._nvml()
    if found:
        pytest.skip("this machine has NVIDIA GPUs")
    assert found is None or found == []
