"""The whole release in one script: freeze → smoke-run the frozen app → sign its
executables → compile installer.iss with the version passed in (the compiler signs the
setup, its uninstaller and its temporary copies) → verify every signature.

    python packaging/build.py --out dist                      # sign with what is configured
    python packaging/build.py --test-certificate --out DIR    # CI: a throw-away certificate

Signing uses the signer the environment configures (see signing.py); with none, it is
skipped with a notice and the installer is built unsigned, so a fork still builds.
`--test-certificate` makes a throw-away certificate and leaves its root (the .crt to
trust when verifying) beside the signed setup in DIR.

On Windows this is the release. Elsewhere the app is frozen for this system and the
installer, compiled under wine, carries that build: it proves the script, the installer
and the signatures, not a Windows app.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import time
from pathlib import Path

from freeze import executable, freeze, project_version, smoke_run, version_numbers
from inno import compile_installer
from signing import (
    TEST_ROOT_NAME,
    Signer,
    configured_signer,
    make_test_certificate,
    sign,
    skip_notice,
    verify,
)


def windows_executables(app_dir: Path) -> list[Path]:
    """The app's own programs (the launchers in the folder's top level) that are Windows
    executables; the libraries in _internal come signed by their makers or not at all."""
    found = []
    for path in sorted(app_dir.iterdir()):
        if path.is_file():
            with open(path, "rb") as f:
                if f.read(2) == b"MZ":
                    found.append(path)
    return found


def build(out: Path, *, version: str, test_certificate: bool,
          app_dir: Path | None = None) -> Path:
    """Build the signed (or, with no signer, unsigned) installer into `out`; returns it."""
    out.mkdir(parents=True, exist_ok=True)
    work = out / "build"
    started = time.monotonic()

    def step(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {text}", flush=True)

    if app_dir is None:
        step(f"freezing Switchboard {version}")
        app_dir = freeze(work / "dist", version=version, work_dir=work / "pyinstaller")
    step(f"smoke-running {executable(app_dir)}")
    smoke_run(app_dir, version=version)

    signer: Signer | None
    if test_certificate:
        signer = make_test_certificate(work / "test-certificate")
        shutil.copy2(signer.root, out / TEST_ROOT_NAME)
        step(f"signing with a throw-away test certificate (trust {out / TEST_ROOT_NAME})")
    else:
        signer = configured_signer()
        if signer is None:
            print(skip_notice(), flush=True)

    programs = windows_executables(app_dir)
    if signer is not None:
        if not programs:
            step(f"no Windows executables to sign in this {sys.platform} build")
        for program in programs:
            step(f"signing {program.name}")
            sign(signer, program)

    step("compiling installer.iss")
    setup = compile_installer(
        version=version, numeric_version=".".join(map(str, version_numbers(version))),
        app_dir=app_dir, exe_name=executable(app_dir).name, out_dir=out, signer=signer)

    if signer is not None:
        root = Path(signer.root) if signer.root else None
        for signed in (*programs, setup):
            step(f"verifying {signed.name}")
            verify(signed, root=root)
    digest = hashlib.sha256(setup.read_bytes()).hexdigest()
    step(f"done: {setup} ({setup.stat().st_size / 2**20:.1f} MiB, sha256 {digest})"
         f"{'' if signer else ' — UNSIGNED'}")
    return setup


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("dist"), help="where the setup goes")
    p.add_argument("--version", default=None,
                   help="the version to stamp (default: pyproject.toml's)")
    p.add_argument("--test-certificate", action="store_true",
                   help="sign with a throw-away certificate made now (CI, forks)")
    p.add_argument("--app-dir", type=Path, default=None,
                   help="package this already-frozen app folder instead of freezing")
    args = p.parse_args(argv)
    try:
        build(args.out.resolve(), version=args.version or project_version(),
              test_certificate=args.test_certificate,
              app_dir=args.app_dir.resolve() if args.app_dir else None)
    except Exception as e:  # noqa: BLE001 — one line for the log, the cause above it
        print(f"build failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
