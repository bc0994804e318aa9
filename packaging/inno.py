"""Compiling `installer.iss` with Inno Setup's own compiler (ISCC): natively on Windows,
under wine elsewhere, with the version, the frozen app and the signer passed in.

Where ISCC is found: `$ISCC`, then `.tools/innosetup` (the npm package `innosetup`, which
carries Inno Setup's whole bin/ folder; packaging/dev-setup.sh puts it there), then the
usual install folders on Windows. ISCC is run directly: the npm package's own wrapper
exits 0 when a compile fails.

Under wine, ISCC cannot wait for a native (Linux) signing process, so each file it signs
goes through a batch file that starts the signer with `start /unix` and waits for the
signer's "done" marker beside the file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from signing import Signer

ROOT = Path(__file__).resolve().parents[1]
ISS = "installer.iss"  # relative: under wine an absolute Unix path reads as a switch
SIGNING_SCRIPT = Path(__file__).resolve().with_name("signing.py")
SIGN_WAIT_SECONDS = 300
_DONE = ".signed"  # the marker the signer leaves beside a file it has finished with


class InnoError(RuntimeError):
    """ISCC is missing, or the compile failed; the message carries its output."""


@dataclass(frozen=True)
class Wine:
    """How to run a Windows program here: nothing on Windows, wine elsewhere."""

    prefix: Path | None = None  # WINEPREFIX; None: wine's default (~/.wine)

    @property
    def needed(self) -> bool:
        return sys.platform != "win32"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.needed:
            env.setdefault("WINEDEBUG", "-all")
            # No Mono or Gecko install prompts in a fresh prefix, and no Linux menu entries
            # for the shortcuts a test installs.
            env.setdefault("WINEDLLOVERRIDES", "mscoree,mshtml=;winemenubuilder.exe=d")
            if self.prefix is not None:
                env["WINEPREFIX"] = str(self.prefix)
        return env

    def command(self, exe: Path | str, *args: str) -> list[str]:
        if not self.needed:
            return [str(exe), *args]
        wine = shutil.which("wine")
        if wine is None:
            raise InnoError("wine is needed to run Inno Setup here (Debian: dpkg "
                            "--add-architecture i386; apt install wine wine32:i386)")
        return [wine, str(exe), *args]

    def show_dot_files(self) -> None:
        """Wine marks Unix dot files (python-docx's `_rels/.rels`) hidden, and ISCC's
        wildcards skip hidden files: the installer would lack them. Turn that off."""
        if self.needed:
            subprocess.run(self.command("reg", "add", r"HKCU\Software\Wine", "/v",
                                        "ShowDotFiles", "/d", "Y", "/f"),
                           env=self.env(), capture_output=True, check=True, timeout=120)

    def path(self, path: Path) -> str:
        """`path` as the Windows program sees it (wine maps / to drive Z:)."""
        path = path.resolve()
        return str(path) if not self.needed else "Z:" + str(path).replace("/", "\\")


def find_iscc() -> Path:
    candidates = [os.environ.get("ISCC", ""),
                  str(ROOT / ".tools/innosetup/node_modules/innosetup/bin/ISCC.exe")]
    if sys.platform == "win32":
        for base in (os.environ.get("PROGRAMFILES(X86)", ""), os.environ.get("PROGRAMFILES", ""),
                     os.environ.get("LOCALAPPDATA", "") + r"\Programs"):
            candidates.append(base + r"\Inno Setup 6\ISCC.exe")
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise InnoError("Inno Setup's compiler (ISCC.exe) was not found: set ISCC, or run "
                    "packaging/dev-setup.sh (it puts the npm package innosetup in .tools/)")


def compile_installer(*, version: str, numeric_version: str, app_dir: Path, exe_name: str,
                      out_dir: Path, signer: Signer | None, wine: Wine | None = None) -> Path:
    """Compile installer.iss; returns the setup .exe. With a signer, ISCC signs the setup,
    its uninstaller and its temporary copies through it (SignTool in the script)."""
    wine = wine or Wine()
    wine.show_dot_files()
    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["/Q", f"/DAppVersion={version}", f"/DNumericVersion={numeric_version}",
            f"/DAppDir={wine.path(app_dir)}", f"/DAppExeName={exe_name}",
            f"/O{wine.path(out_dir)}"]
    with tempfile.TemporaryDirectory(prefix="iscc-") as tmp:
        if signer is not None:
            args += ["/DSign", f"/Sswitchboard={_sign_command(signer, Path(tmp), wine)}"]
        done = subprocess.run(wine.command(find_iscc(), *args, ISS), cwd=ROOT, env=wine.env(),
                              capture_output=True, text=True, errors="replace",
                              timeout=1800, check=False)
        signing_log = Path(tmp, "signing.log")
        output = (done.stdout + done.stderr).strip() + (
            "\nSigning:\n" + signing_log.read_text(errors="replace")
            if signing_log.exists() else "")
    setup = out_dir / f"SwitchboardSetup-{version}.exe"
    if done.returncode != 0 or not setup.is_file():
        raise InnoError(f"ISCC failed (exit {done.returncode}):\n{output[-4000:]}")
    return setup


def _sign_command(signer: Signer, tmp: Path, wine: Wine) -> str:
    """The command ISCC runs for each file it signs ($f: the file, quoted)."""
    config = signer.save(tmp / "signer.json")
    if not wine.needed:
        return f'"{sys.executable}" "{SIGNING_SCRIPT}" sign --config "{config}" $f'
    signer_script = tmp / "sign-native.sh"
    # The native side: the file's Windows path to a Unix one, sign, leave the marker.
    signer_script.write_text(
        "#!/bin/sh\n"
        # The batch hands the file over in SWITCHBOARD_SIGN_FILE: wine's `start /unix`
        # mangles quoted arguments.
        'file="$(winepath -u "$SWITCHBOARD_SIGN_FILE")"\n'
        f'echo "signing $file" >> "{tmp / "signing.log"}"\n'
        f'if "{sys.executable}" "{SIGNING_SCRIPT}" sign --config "{config}" "$file" '
        f'>> "{tmp / "signing.log"}" 2>&1; then echo ok > "$file{_DONE}"; '
        f'else echo failed > "$file{_DONE}"; fi\n')
    signer_script.chmod(0o755)
    batch = tmp / "sign.bat"
    # `start /unix` returns at once; the batch waits for the marker (ping: a 1 s sleep
    # that wine's cmd has), then fails the compile if signing failed.
    batch.write_text("\r\n".join([
        "@echo off",
        f'set "done=%~1{_DONE}"',
        'if exist "%done%" del "%done%"',
        'set "SWITCHBOARD_SIGN_FILE=%~1"',
        f"start /unix {signer_script}",
        "set /a waited=0",
        ":wait",
        'if exist "%done%" goto finished',
        "set /a waited+=1",
        f"if %waited% gtr {SIGN_WAIT_SECONDS} exit /b 1",
        "ping -n 2 127.0.0.1 >nul",
        "goto wait",
        ":finished",
        'set /p result=<"%done%"',
        'del "%done%"',
        'if not "%result%"=="ok" exit /b 1',
        "exit /b 0",
        ""]))
    # ISCC runs this line itself; a quoted batch path is not found there, so the path
    # must have no spaces (a temporary folder's has none).
    if " " in str(batch):
        raise InnoError(f"the temporary folder {tmp} has a space in its path; set TMPDIR")
    return f"cmd /c {wine.path(batch)} $f"
