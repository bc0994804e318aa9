"""Which NVIDIA GPUs the embedded runtime may use, and how much memory each has free.

Sources, first that answers wins: the `SWITCHBOARD_GPUS` environment variable (tests and
support: "24564,24564" is two GPUs of that many MiB), NVML through `nvidia-ml-py`, then
`nvidia-smi`. `CUDA_VISIBLE_DEVICES` is honoured as CUDA honours it, so the list is what
llama.cpp will see, numbered 0..n-1. Never raises: a broken driver means no GPUs.

Ordering caveat: NVML and nvidia-smi number GPUs in PCI bus order; CUDA numbers them
fastest first unless `CUDA_DEVICE_ORDER=PCI_BUS_ID`. On a machine with two different GPU
models the two orders can differ, so whoever starts the runtime should set
`CUDA_DEVICE_ORDER=PCI_BUS_ID` in its environment to make this list and llama.cpp agree.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

ENV_GPUS = "SWITCHBOARD_GPUS"
NVIDIA_SMI_TIMEOUT_S = 5.0
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Gpu:
    index: int  # CUDA's index as llama.cpp sees it (after CUDA_VISIBLE_DEVICES)
    name: str
    total_mib: int
    free_mib: int


@dataclass(frozen=True)
class _Device:
    """A GPU as the driver numbers it, before CUDA_VISIBLE_DEVICES is applied."""

    index: int
    uuid: str
    name: str
    total_mib: int
    free_mib: int


def inventory(environ: Mapping[str, str] | None = None) -> list[Gpu]:
    """The GPUs llama.cpp would use, in CUDA's order; [] when there are none or no driver."""
    env = os.environ if environ is None else environ
    if ENV_GPUS in env:
        try:
            return parse_gpu_list(env[ENV_GPUS])
        except ValueError as e:
            log.warning("ignoring %s=%r: %s", ENV_GPUS, env[ENV_GPUS], e)
            return []
    devices = _nvml()
    if devices is None:
        devices = _nvidia_smi()
    if devices is None:
        return []
    return _visible(devices, env.get("CUDA_VISIBLE_DEVICES"))


def parse_gpu_list(text: str) -> list[Gpu]:
    """GPUs from "24564,12288" (total MiB each, all free); "" or "none" is no GPU.

    Raises ValueError on anything else, so a typo in `--gpus` is reported, not ignored.
    """
    text = text.strip()
    if text.lower() in ("", "none"):
        return []
    sizes = []
    for part in text.split(","):
        try:
            size = int(part.strip())
        except ValueError:
            raise ValueError(f"not a GPU memory size in MiB: {part.strip()!r}") from None
        if size <= 0:
            raise ValueError(f"a GPU memory size must be positive: {size}")
        sizes.append(size)
    return [Gpu(i, f"GPU {i} ({size} MiB, simulated)", size, size)
            for i, size in enumerate(sizes)]


def _visible(devices: list[_Device], cuda_visible: str | None) -> list[Gpu]:
    """Apply CUDA_VISIBLE_DEVICES: unset shows all, "" or "-1" none; otherwise a comma
    list of indices or (prefixes of) UUIDs, renumbered 0..n-1 in the listed order.

    As in CUDA, an entry that names no device (or repeats one) ends the list: the
    entries before it stay visible, those after it are ignored.
    """
    if cuda_visible is None:
        chosen = list(devices)
    else:
        chosen = []
        for entry in (e.strip() for e in cuda_visible.split(",")):
            device = _lookup(devices, entry)
            if device is None or device in chosen:
                break
            chosen.append(device)
    return [Gpu(i, d.name, d.total_mib, d.free_mib) for i, d in enumerate(chosen)]


def _lookup(devices: list[_Device], entry: str) -> _Device | None:
    if not entry:
        return None
    if entry.lstrip("-").isdigit():
        index = int(entry)
        return next((d for d in devices if d.index == index), None)
    # CUDA accepts any unique prefix of a UUID ("GPU-8f3c" for "GPU-8f3c1e…").
    matches = [d for d in devices if d.uuid.lower().startswith(entry.lower())]
    return matches[0] if len(matches) == 1 else None


def _nvml() -> list[_Device] | None:
    """GPUs from NVML, or None when NVML is missing or fails (no driver, no library)."""
    try:
        import pynvml  # lazily: the package is small, but loading libnvidia-ml is not free
    except ImportError:
        log.info("nvidia-ml-py is not installed; trying nvidia-smi")
        return None
    try:
        pynvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound, _DriverNotLoaded, …
        log.info("NVML unavailable (%s); trying nvidia-smi", e)
        return None
    try:
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            devices.append(_Device(i, _text(pynvml.nvmlDeviceGetUUID(handle)),
                                   _text(pynvml.nvmlDeviceGetName(handle)),
                                   int(memory.total) // _MIB, int(memory.free) // _MIB))
        return devices
    except Exception as e:  # a GPU that fell off the bus, a driver/library mismatch, …
        log.warning("NVML failed while listing GPUs (%s); trying nvidia-smi", e)
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception as e:
            log.debug("nvmlShutdown failed: %s", e)


def _text(value: str | bytes) -> str:
    # nvidia-ml-py returned bytes before 11.515 and str since; accept both.
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _nvidia_smi() -> list[_Device] | None:
    """GPUs from `nvidia-smi`, or None when it is missing, fails or prints nonsense."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        log.info("nvidia-smi not found: no NVIDIA GPUs")
        return None
    try:
        result = subprocess.run(
            [exe, "--query-gpu=index,uuid,name,memory.total,memory.free",
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False,
            # A tray app must not flash a console window on Windows.
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("nvidia-smi did not answer (%s): no GPUs", e)
        return None
    if result.returncode != 0:
        log.warning("nvidia-smi failed (exit %d): %s", result.returncode,
                    (result.stdout + result.stderr).strip()[:300])
        return None
    devices = []
    for line in result.stdout.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        try:
            # The name is everything between the UUID and the two sizes, in case it
            # ever holds a comma.
            devices.append(_Device(int(fields[0]), fields[1], ", ".join(fields[2:-2]),
                                   int(fields[-2]), int(fields[-1])))
        except (ValueError, IndexError):
            # e.g. "[N/A]" memory on a GPU without its own (unified memory)
            log.warning("ignoring a GPU nvidia-smi describes as %r", line.strip())
    return devices
