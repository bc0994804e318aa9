"""The signed installer, for real: `packaging/build.py --test-certificate` compiles
installer.iss with Inno Setup's own compiler under wine and signs it; osslsigncode
verifies it (and refuses a copy with one byte changed); setups are installed and
uninstalled silently in fresh wine prefixes, and the files, shortcuts, registry, the
machine policy and the kept user data are checked.

The release built here carries the app frozen for Linux (PyInstaller does not
cross-compile), so what runs *inside* an installed Windows Switchboard is a small stand-in
(tests/fixtures/windows_standin.c, built with mingw-w64) that acts as the installer
relies on: it runs until asked to quit, and `--quit` asks the running one and waits."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.policy import Policy, load_policy
from tests.fixtures.desktop import desktop, wait_for
from tests.packaging.conftest import ROOT, VERSION, Release, inno, signing

pytestmark = [pytest.mark.frozen, pytest.mark.timeout(1500)]

APP_ID = "{84333A8E-12DC-4E5B-A708-119351F4687D}_is1"
UNINSTALL_KEY = rf"Software\Microsoft\Windows\CurrentVersion\Uninstall\{APP_ID}"
STANDIN_SOURCE = ROOT / "tests" / "fixtures" / "windows_standin.c"


# -- the release script's own output ---------------------------------------------------

def test_the_release_script_makes_a_signed_setup_that_verifies(release: Release) -> None:
    assert release.setup.is_file() and release.root_certificate.is_file()
    for step in ("freezing Switchboard 7.8.9", "smoke-running", "compiling installer.iss",
                 f"verifying {release.setup.name}"):
        assert step in release.log
    report = signing.verify(release.setup, root=release.root_certificate)
    assert "Signature verification: ok" in report
    assert "Switchboard test code signing" in report
    assert "Timestamp" in report  # timestamped (by osslsigncode's own test TSA)


def test_a_setup_with_one_byte_changed_fails_verification(release: Release,
                                                          tmp_path: Path) -> None:
    tampered = tmp_path / release.setup.name
    shutil.copy2(release.setup, tampered)
    with open(tampered, "r+b") as f:  # a byte of the compressed app, mid-file
        f.seek(tampered.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(signing.SigningError, match="verifying"):
        signing.verify(tampered, root=release.root_certificate)


def test_the_signature_is_checked_against_the_root_that_issued_it(release: Release,
                                                                  tmp_path: Path) -> None:
    stranger = signing.make_test_certificate(tmp_path / "other")
    with pytest.raises(signing.SigningError):
        signing.verify(release.setup, root=Path(stranger.root))


def test_without_a_signer_the_build_says_so_and_stays_unsigned(
        tmp_path: Path, wine_template: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import build

    for name in (signing.COMMAND_ENV, signing.PFX_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WINEPREFIX", str(wine_template))
    # The Windows stand-in can't run its selftest here; everything else is the real build.
    monkeypatch.setattr(build, "smoke_run", lambda app_dir, version: None)
    setup = build.build(tmp_path / "out", version="0.0.1", test_certificate=False,
                        app_dir=_tiny_app(tmp_path / "app", "0.0.1"))
    printed = capsys.readouterr().out
    assert "NOTICE: not signing: no certificate is configured" in printed
    assert "UNSIGNED" in printed
    assert setup.is_file()
    with pytest.raises(signing.SigningError):
        signing.verify(setup)


# -- installing under wine --------------------------------------------------------------

@dataclass
class WineMachine:
    """A fresh wine prefix: a Windows computer with one user, to install into."""

    prefix: Path
    env: dict[str, str]

    def run(self, exe: Path | str, *args: str, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["wine", str(exe), *args], env=self.env, capture_output=True,
                              text=True, errors="replace", timeout=timeout)

    def wait(self) -> None:
        """Until every Windows process here has ended (an uninstaller runs on as a copy
        of itself after the one we started returns)."""
        subprocess.run(["wineserver", "-w"], env=self.env, timeout=300, check=True)

    @property
    def user_dir(self) -> Path:
        [user] = [p for p in (self.prefix / "drive_c" / "users").iterdir()
                  if p.name not in ("Public", "Default") and not p.is_symlink()]
        return user

    @property
    def local_appdata(self) -> Path:
        return self.user_dir / "AppData" / "Local"

    @property
    def per_user_app(self) -> Path:
        return self.local_appdata / "Programs" / "Switchboard"

    @property
    def all_users_app(self) -> Path:
        return self.prefix / "drive_c" / "Program Files" / "Switchboard"

    @property
    def start_menu(self) -> Path:
        return self.user_dir / "AppData/Roaming/Microsoft/Windows/Start Menu/Programs"

    @property
    def desktop(self) -> Path:
        return self.user_dir / "Desktop"

    def install(self, setup: Path, *args: str) -> tuple[int, str]:
        log = self.prefix.parent / f"setup-{time.monotonic_ns()}.log"
        done = self.run(setup, "/VERYSILENT", "/SUPPRESSMSGBOXES", f"/LOG={_win(log)}", *args)
        self.wait()
        return done.returncode, log.read_text(encoding="utf-8-sig", errors="replace") \
            if log.exists() else done.stdout + done.stderr

    def uninstall(self, app: Path, *args: str) -> None:
        done = self.run(app / "unins000.exe", "/VERYSILENT", "/SUPPRESSMSGBOXES", *args)
        assert done.returncode == 0, done.stderr
        self.wait()

    def registry(self, root: str, key: str, value: str) -> str | None:
        # /reg:64: the installer writes the 64-bit view; wine's reg reads the 32-bit one.
        done = self.run("reg", "query", f"{root}\\{key}", "/v", value, "/reg:64", timeout=60)
        match = re.search(rf"{re.escape(value)}\s+REG_\w+\s+(.*)", done.stdout)
        return match.group(1).strip() if match else None


def _win(path: Path) -> str:
    return inno.Wine().path(path)


@pytest.fixture
def machine(wine_template: Path, tmp_path: Path) -> Iterator[WineMachine]:
    prefix = tmp_path / "prefix"
    subprocess.run(["cp", "-a", str(wine_template), str(prefix)], check=True, timeout=300)
    home = tmp_path / "home"
    home.mkdir()
    users = prefix / "drive_c" / "users"
    for link in users.glob("*/*"):  # Desktop, Documents… point at the template's home
        if link.is_symlink():
            link.unlink()
            link.symlink_to(home)
    with desktop() as screen:
        env = {**inno.Wine(prefix).env(), **screen.env, "HOME": str(home),
               "SWITCHBOARD_STANDIN_LOG": _win(tmp_path / "standin.log")}
        machine = WineMachine(prefix, env)
        try:
            yield machine
        finally:
            subprocess.run(["wineserver", "-k"], env=env, timeout=60, check=False)
            shutil.rmtree(prefix, ignore_errors=True)  # 1.3 GB each: don't keep them


def _standin_log(machine: WineMachine) -> list[str]:
    path = Path(machine.prefix.parent / "standin.log")
    return path.read_text(encoding="utf-8", errors="replace").split() if path.exists() else []


def _tiny_app(folder: Path, version: str) -> Path:
    """A Windows Switchboard stand-in, as a one-folder app: the launcher and _internal."""
    (folder / "_internal").mkdir(parents=True)
    (folder / "_internal" / f"only-in-{version}.txt").write_text(version)
    subprocess.run(["x86_64-w64-mingw32-gcc", "-municode", "-O2", "-s",
                    f'-DSTANDIN_VERSION=L"{version}"', "-o", str(folder / "Switchboard.exe"),
                    str(STANDIN_SOURCE)], check=True, timeout=120)
    return folder


@dataclass(frozen=True)
class Setups:
    root: Path
    by_version: dict[str, Path]


@pytest.fixture(scope="session")
def standin_setups(tmp_path_factory: pytest.TempPathFactory, wine_template: Path) -> Setups:
    """Two signed releases of the stand-in, 1.0.0 and 1.0.1, compiled from installer.iss."""
    base = tmp_path_factory.mktemp("standin")
    signer = signing.make_test_certificate(base / "certificate")
    setups = {}
    for version in ("1.0.0", "1.0.1"):
        app = _tiny_app(base / version / "Switchboard", version)
        signing.sign(signer, app / "Switchboard.exe")
        setups[version] = inno.compile_installer(
            version=version, numeric_version=f"{version}.0", app_dir=app,
            exe_name="Switchboard.exe", out_dir=base / version, signer=signer,
            wine=inno.Wine(wine_template))
    return Setups(Path(signer.root), setups)


def test_the_release_installs_for_one_user_and_uninstalls(release: Release,
                                                          machine: WineMachine) -> None:
    code, log = machine.install(release.setup)
    assert code == 0, log
    app = machine.per_user_app
    installed = {p.relative_to(app).as_posix() for p in app.rglob("*") if p.is_file()}
    frozen = {p.relative_to(release.app_dir).as_posix()
              for p in release.app_dir.rglob("*") if p.is_file()}
    assert {"unins000.exe", "unins000.dat"} <= installed - frozen <= {
        "unins000.exe", "unins000.dat", "unins000.msg"}
    assert frozen <= installed
    # SignedUninstaller: the uninstaller Windows keeps is signed too.
    assert "Signature verification: ok" in signing.verify(app / "unins000.exe",
                                                          root=release.root_certificate)
    assert machine.registry("HKCU", UNINSTALL_KEY, "DisplayVersion") == VERSION
    assert (machine.start_menu / "Switchboard.lnk").is_file()

    machine.uninstall(app)
    assert not app.exists()
    assert machine.registry("HKCU", UNINSTALL_KEY, "DisplayVersion") is None
    assert not (machine.start_menu / "Switchboard.lnk").exists()


def test_shortcuts_and_sign_in_start_are_the_users_choice(standin_setups: Setups,
                                                          machine: WineMachine) -> None:
    startup = machine.start_menu / "StartUp" / "Switchboard.lnk"  # wine's spelling
    code, log = machine.install(standin_setups.by_version["1.0.0"])
    assert code == 0, log
    assert (machine.start_menu / "Switchboard.lnk").is_file()
    assert not (machine.desktop / "Switchboard.lnk").exists()  # both unticked by default
    assert not startup.exists()
    assert "asked-to-quit" not in _standin_log(machine)  # nothing to close on a first install
    assert "Signature verification: ok" in signing.verify(
        machine.per_user_app / "Switchboard.exe", root=standin_setups.root)

    code, log = machine.install(standin_setups.by_version["1.0.0"],
                                "/TASKS=desktopicon,startatlogin")
    assert code == 0, log
    assert (machine.desktop / "Switchboard.lnk").is_file()
    assert startup.is_file()
    machine.uninstall(machine.per_user_app)
    assert not (machine.desktop / "Switchboard.lnk").exists() and not startup.exists()


def test_an_upgrade_closes_the_running_app_first_and_replaces_its_files(
        standin_setups: Setups, machine: WineMachine) -> None:
    code, log = machine.install(standin_setups.by_version["1.0.0"])
    assert code == 0, log
    app = machine.per_user_app
    running = subprocess.Popen(["wine", str(app / "Switchboard.exe")], env=machine.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: "running" in _standin_log(machine) or None, 60,
                 "the installed app to start")
        code, log = machine.install(standin_setups.by_version["1.0.1"])
        assert code == 0, log
        assert running.wait(timeout=60) == 0
    finally:
        if running.poll() is None:
            running.kill()
    events = " ".join(_standin_log(machine))
    # Setup asked the old version to quit (--quit waits for it), then replaced the files.
    assert "1.0.0 running 1.0.0 asked-to-quit 1.0.0 quit" in events
    version = machine.run(app / "Switchboard.exe", "--version")
    assert version.stdout.strip() == "switchboard 1.0.1"
    assert machine.registry("HKCU", UNINSTALL_KEY, "DisplayVersion") == "1.0.1"
    # The old version's libraries are gone, not left beside the new ones.
    assert sorted(p.name for p in (app / "_internal").iterdir()) == ["only-in-1.0.1.txt"]


def test_uninstalling_keeps_the_users_chats_unless_asked(standin_setups: Setups,
                                                         machine: WineMachine) -> None:
    data = machine.local_appdata / "Switchboard"
    setup = standin_setups.by_version["1.0.0"]

    code, log = machine.install(setup)
    assert code == 0, log
    (data / "data").mkdir(parents=True)
    (data / "data" / "history.sqlite3").write_bytes(b"chats")
    (data / "settings.json").write_text("{}")
    machine.uninstall(machine.per_user_app)
    assert not machine.per_user_app.exists()
    assert (data / "data" / "history.sqlite3").read_bytes() == b"chats"  # kept

    code, log = machine.install(setup)
    assert code == 0, log
    machine.uninstall(machine.per_user_app, "/REMOVEUSERDATA")
    assert not machine.per_user_app.exists()
    assert not data.exists()


def test_an_it_install_for_all_users_writes_the_policy_the_app_reads(
        standin_setups: Setups, machine: WineMachine) -> None:
    code, log = machine.install(
        standin_setups.by_version["1.0.0"], "/ALLUSERS",
        "/NODEURLS=https://ai1.office.example/v1;https://ai2.office.example/v1",
        "/ALLOWCLOUD=no", "/BUDGETCEILING=25.50",
        "/PLANNERMODELS=anthropic/claude-sonnet-4.5;openai/gpt-5")
    assert code == 0, log
    assert (machine.all_users_app / "Switchboard.exe").is_file()
    assert not machine.per_user_app.exists()
    assert machine.registry("HKLM", UNINSTALL_KEY, "DisplayVersion") == "1.0.0"
    policy_path = machine.prefix / "drive_c" / "ProgramData" / "Switchboard" / "policy.json"
    policy, problems = load_policy(policy_path)
    assert problems == []
    assert policy == Policy(
        office_node_urls=("https://ai1.office.example/v1", "https://ai2.office.example/v1"),
        cloud_allowed=False, budget_ceiling_usd=25.5,
        allowed_planner_models=("anthropic/claude-sonnet-4.5", "openai/gpt-5"))
    assert json.loads(policy_path.read_text(encoding="utf-8-sig"))["version"] == 1

    # An upgrade without policy parameters leaves IT's policy as it was.
    code, log = machine.install(standin_setups.by_version["1.0.1"], "/ALLUSERS")
    assert code == 0, log
    assert load_policy(policy_path) == (policy, [])


@pytest.mark.parametrize(("args", "words"), [
    (("/BUDGETCEILING=25",), "install with /ALLUSERS"),
    (("/ALLUSERS", "/BUDGETCEILING=lots"), "/BUDGETCEILING must be an amount"),
    (("/ALLUSERS", "/ALLOWCLOUD=maybe"), "/ALLOWCLOUD must be yes or no"),
    (("/ALLUSERS", "/NODEURLS=ftp://ai.office.example"), "is not an http:// or https://"),
])
def test_bad_policy_parameters_are_refused_before_anything_is_installed(
        standin_setups: Setups, machine: WineMachine, args: tuple[str, ...],
        words: str) -> None:
    code, log = machine.install(standin_setups.by_version["1.0.0"], *args)
    assert code != 0
    assert words in log
    assert not machine.per_user_app.exists() and not machine.all_users_app.exists()
    assert not (machine.prefix / "drive_c" / "ProgramData" / "Switchboard").exists()


def test_a_configured_sign_command_signs_in_place(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """SWITCHBOARD_SIGN_COMMAND (the release's Azure Trusted Signing route) with $f."""
    certificate = signing.make_test_certificate(tmp_path / "certificate")
    exe = _tiny_app(tmp_path / "app", "1.0.0") / "Switchboard.exe"
    monkeypatch.setenv(signing.COMMAND_ENV, (
        "sh -c 'osslsigncode sign -certs \"$0\" -key \"$1\" -in \"$2\" -out \"$2.tmp\" "
        f"&& mv \"$2.tmp\" \"$2\"' {certificate.cert} {certificate.key} $f"))
    signer = signing.configured_signer()
    assert signer is not None and signer.kind == "command"
    with pytest.raises(signing.SigningError):
        signing.verify(exe, root=Path(certificate.root))  # not signed yet
    signing.sign(signer, exe)
    assert "Signature verification: ok" in signing.verify(exe, root=Path(certificate.root))


def test_a_sign_command_without_the_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(signing.COMMAND_ENV, "signtool sign /fd SHA256")
    with pytest.raises(signing.SigningError, match=r"\$f"):
        signing.configured_signer()
