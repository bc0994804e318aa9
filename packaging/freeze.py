"""Freezing Switchboard with PyInstaller (`switchboard.spec`) into one folder holding the
windowed app and its console twin for the command line, and smoke-running the result.
Used by the release script (`build.py`) and the frozen-app tests; also runnable on its
own:

    python packaging/freeze.py --out dist            # freeze, smoke-run, print size and time

From a script in this folder: `from freeze import freeze, smoke_run, executable,
cli_executable` (the folder isn't a package: `packaging` is also the name of a PyPI
package).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "switchboard.spec"
APP_NAME = "Switchboard"
# The console executable beside it, for the command-line verbs (a windowed .exe prints
# nowhere). Its own name, not a different case of APP_NAME: Windows names ignore case.
CLI_NAME = "switchboard-cli"
VERSION_ENV = "SWITCHBOARD_VERSION"  # the spec reads the version to stamp from here
# The Windows version resources of the two executables, in the work dir.
VERSION_FILE = "switchboard-version.txt"
CLI_VERSION_FILE = "switchboard-cli-version.txt"
SELFTEST_OK = "switchboard selftest: ok"
_OUTPUT_TAIL = 6_000


class FreezeError(RuntimeError):
    """PyInstaller failed, or the frozen app failed its smoke run; the message carries the
    tail of their output."""


def project_version() -> str:
    """The version in pyproject.toml: what a build stamps unless it passes its own."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def version_numbers(version: str) -> tuple[int, int, int, int]:
    """The four numbers of a Windows version resource: "1.2.3rc1" -> (1, 2, 3, 0)."""
    match = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?", version.strip())
    if not match:
        raise ValueError(f"not a version: {version!r} (expected numbers, such as 1.2.3)")
    major, minor, patch, build = (int(n or 0) for n in match.groups())
    if max(major, minor, patch, build) > 0xFFFF:
        raise ValueError(f"version {version!r}: each number must be at most 65535")
    return major, minor, patch, build


def windows_version_info(version: str, *, exe_name: str = APP_NAME) -> str:
    """The version resource for Switchboard.exe (or, with `exe_name=CLI_NAME`,
    switchboard-cli.exe), in the text form PyInstaller's `version=` reads (the classes
    live in PyInstaller.utils.win32.versioninfo)."""
    numbers = version_numbers(version)
    description = APP_NAME if exe_name == APP_NAME else f"{APP_NAME} command line"
    strings = {
        "CompanyName": APP_NAME,
        "FileDescription": description,
        "FileVersion": version,
        "InternalName": exe_name,
        "OriginalFilename": f"{exe_name}.exe",
        "ProductName": APP_NAME,
        "ProductVersion": version,
    }
    pairs = ",\n          ".join(f"StringStruct({k!r}, {v!r})" for k, v in strings.items())
    return f"""VSVersionInfo(
  ffi=FixedFileInfo(filevers={numbers}, prodvers={numbers}, mask=0x3f, flags=0x0,
                    OS=0x40004, fileType=0x1, subtype=0x0, date=(0, 0)),
  kids=[
    StringFileInfo([
      StringTable('040904B0', [
          {pairs}])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])
  ]
)
"""


def executable(app_dir: Path) -> Path:
    """The frozen app's (windowed) executable in its one-folder build."""
    return app_dir / _exe_name(APP_NAME)


def cli_executable(app_dir: Path) -> Path:
    """The frozen app's console executable, beside `executable()`: the same program, for
    the command-line verbs (`doctor`, `ask`, `key`, `--version`) in a terminal."""
    return app_dir / _exe_name(CLI_NAME)


def _exe_name(name: str) -> str:
    return f"{name}.exe" if sys.platform == "win32" else name


def freeze(dist_dir: Path, *, version: str, work_dir: Path | None = None) -> Path:
    """Freeze the app with `switchboard.spec` into `dist_dir`; the one-folder app's
    directory (holding `executable()` and `cli_executable()`). `version` is stamped into
    the bundle (what `--version` prints) and the Windows version resources; PyInstaller's
    work files go to `work_dir` (a temporary folder if None)."""
    version_numbers(version)  # refuse a bad version before minutes of work
    dist_dir = Path(dist_dir).resolve()
    with tempfile.TemporaryDirectory(prefix="switchboard-freeze-") as temp:
        work = Path(work_dir).resolve() if work_dir is not None else Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
                   "--distpath", str(dist_dir), "--workpath", str(work), str(SPEC)]
        result = subprocess.run(command, cwd=ROOT, env={**os.environ, VERSION_ENV: version},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace")
    app_dir = dist_dir / APP_NAME
    if result.returncode != 0 or not all(
            exe.is_file() for exe in (executable(app_dir), cli_executable(app_dir))):
        raise FreezeError(f"PyInstaller failed (exit code {result.returncode}):\n"
                          f"{result.stdout[-_OUTPUT_TAIL:]}")
    return app_dir


def smoke_run(app_dir: Path, *, version: str | None = None, timeout_s: float = 180.0) -> None:
    """Run the frozen app's `--selftest` offscreen in a throw-away home, then the console
    executable's `--version` (which must print `version`, when given); raises FreezeError
    with their output unless both pass."""
    exe, cli = executable(app_dir), cli_executable(app_dir)
    with tempfile.TemporaryDirectory(prefix="switchboard-smoke-") as home:
        env = {**os.environ, "SWITCHBOARD_HOME": home, "QT_QPA_PLATFORM": "offscreen"}
        result = _run([str(exe), "--selftest"], env=env, cwd=home, timeout_s=timeout_s)
        if result.returncode != 0 or SELFTEST_OK not in result.stdout:
            raise FreezeError(f"{exe} --selftest failed (exit code {result.returncode}):\n"
                              f"{result.stdout}{result.stderr}"[-_OUTPUT_TAIL:])
        result = _run([str(cli), "--version"], env=env, cwd=home, timeout_s=timeout_s)
        expected = f"switchboard {version}" if version else "switchboard "
        if result.returncode != 0 or not result.stdout.startswith(expected):
            raise FreezeError(f"{cli} --version did not print {expected!r} (exit code "
                              f"{result.returncode}):\n"
                              f"{result.stdout}{result.stderr}"[-_OUTPUT_TAIL:])


def _run(command: list[str], *, env: dict[str, str], cwd: str,
         timeout_s: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace",
                              timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise FreezeError(f"{' '.join(command)} did not finish within {timeout_s:g} s:\n"
                          f"{_text(e.stdout)}{_text(e.stderr)}"[-_OUTPUT_TAIL:]) from None
    except OSError as e:
        raise FreezeError(f"{command[0]} could not be started: {e}") from None


def folder_size(folder: Path) -> int:
    """Bytes in all the files under `folder` (links not followed)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file()
               and not p.is_symlink())


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output or ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Freeze Switchboard into one folder and "
                                            "smoke-run it.")
    p.add_argument("--out", type=Path, required=True, help="folder for the frozen app")
    p.add_argument("--version", default=None,
                   help="version to stamp (default: pyproject.toml's)")
    p.add_argument("--work", type=Path, default=None, help="PyInstaller's work folder "
                                                           "(default: a temporary one)")
    p.add_argument("--no-smoke", action="store_true", help="skip the smoke run (--selftest, "
                                                         "and the console's --version)")
    args = p.parse_args(argv)
    started = time.monotonic()
    try:
        version = args.version or project_version()
        app_dir = freeze(args.out, version=version, work_dir=args.work)
        froze_s = time.monotonic() - started
        print(f"froze {app_dir} in {froze_s:.0f} s: {folder_size(app_dir) / 2**20:.0f} MiB")
        if not args.no_smoke:
            smoke_run(app_dir, version=version)
            print(f"smoke run passed in {time.monotonic() - started - froze_s:.0f} s")
    except FreezeError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
