"""Windows only: the extraction child's Job Object (`app/core/documents/job_object.py`)
stops a memory hog and a PDF bomb, and lets the child start no other process.

Windows has no RLIMIT_AS; without the job these tests fail: the hog gets its memory,
the child starts its process, and the bomb either inflates or runs into the timeout.
They run on the release workflow's Windows runner, and are skipped everywhere else.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from app.core import errors
from app.core.documents.extract import Limits, extract
from tests.fixtures import documents

pytestmark = pytest.mark.skipif(sys.platform != "win32", reason="Windows Job Objects")

MIB = 1 << 20


def in_limited_child(code: str, memory_bytes: int = 256 * MIB) -> str:
    """Runs `code` in a fresh interpreter after the extraction child's own limits."""
    script = ("from app.core.documents import extract_child, job_object\n"
              f"extract_child.limit_resources({memory_bytes}, 30)\n" + code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_child_puts_itself_in_a_job_with_its_memory_limit() -> None:
    assert in_limited_child("print(job_object.memory_limit())") == str(256 * MIB)


def test_a_memory_hog_in_the_child_is_refused_its_memory() -> None:
    # 1 GiB, four times the limit: any Windows runner has that to give without the job.
    out = in_limited_child(
        "try:\n"
        "    hog = bytearray(1 << 30)\n"
        "    print('allowed', len(hog))\n"
        "except MemoryError:\n"
        "    print('refused')\n")
    assert out == "refused"


def test_the_child_can_start_no_process() -> None:
    out = in_limited_child(
        "import subprocess, sys\n"
        "try:\n"
        "    subprocess.run([sys.executable, '-c', 'pass'], check=True)\n"
        "    print('started')\n"
        "except (OSError, subprocess.CalledProcessError):\n"  # not created, or killed at once
        "    print('refused')\n")
    assert out == "refused"


def test_a_pdf_bomb_is_stopped_by_the_childs_memory_limit(tmp_path: Path) -> None:
    bomb = documents.pdf_flate_bomb(tmp_path)  # 4 GiB once inflated
    with pytest.raises(errors.DocumentRejected) as caught:
        asyncio.run(extract(bomb, limits=Limits(memory_bytes=512 * MIB, timeout_s=60)))
    # The same words as on POSIX; "too_slow" would mean the limit never bit.
    assert caught.value.code in ("crashed", "too_much_memory")
    assert "memory allowance" in caught.value.title or "more memory" in caught.value.title


def test_the_limit_structure_has_the_sdks_layout() -> None:
    from app.core.documents import job_object

    # winnt.h: 144 bytes on 64-bit Windows, 112 on 32-bit; a wrong field would shift
    # ProcessMemoryLimit and SetInformationJobObject would reject the size.
    expected = 144 if sys.maxsize > 2**32 else 112
    assert job_object.ctypes.sizeof(job_object.JOBOBJECT_EXTENDED_LIMIT_INFORMATION) == expected
