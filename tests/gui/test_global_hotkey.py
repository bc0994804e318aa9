"""The quick-ask shortcut for anywhere: the key text as Windows and X11 name it, the
combinations refused and why, Windows' WM_HOTKEY seen and a taken combination said so
(against a stand-in for user32), a plain "not available" where it isn't, and, on a real
X server (Xvfb), the key grabbed, pressed (Num Lock off and on), and refused to a second
program."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from ctypes import wintypes
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.ui.global_hotkey import (
    DESKTOP_SHORTCUT_COMMAND,
    ERROR_HOTKEY_ALREADY_REGISTERED,
    HOTKEY_ID,
    WM_HOTKEY,
    Combination,
    GlobalHotkey,
    User32,
    WindowsGrab,
    not_available,
    parse,
    windows_hotkey,
    x11_hotkey,
)
from tests.fixtures.desktop import desktop
from tests.fixtures.waiting import wait_for

ROOT = Path(__file__).parents[2]
MOD_ALT, MOD_CONTROL, MOD_SHIFT, MOD_WIN, MOD_NOREPEAT = 0x1, 0x2, 0x4, 0x8, 0x4000


def combination(text: str) -> Combination:
    parsed = parse(text)
    assert isinstance(parsed, Combination), parsed
    return parsed


@pytest.mark.parametrize(("text", "modifiers", "virtual_key"), [
    ("Ctrl+Alt+Space", MOD_CONTROL | MOD_ALT, 0x20),
    ("ctrl+alt+q", MOD_CONTROL | MOD_ALT, 0x51),  # VK_Q, whatever the case typed
    ("Meta+Shift+F5", MOD_WIN | MOD_SHIFT, 0x74),
    ("Alt+7", MOD_ALT, 0x37),
    ("Ctrl+Alt+PgDown", MOD_CONTROL | MOD_ALT, 0x22),
    ("F12", 0, 0x7B),  # an F-key may stand alone
])
def test_windows_names_of_a_combination(qtbot: QtBot, text: str, modifiers: int,
                                        virtual_key: int) -> None:
    assert windows_hotkey(combination(text)) == (modifiers | MOD_NOREPEAT, virtual_key)


@pytest.mark.parametrize(("text", "mask", "keysym"), [
    ("Ctrl+Alt+Space", 0x04 | 0x08, 0x20),
    ("Ctrl+Alt+Q", 0x04 | 0x08, 0x71),  # XK_q: the key, not the capital it types
    ("Meta+F1", 0x40, 0xFFBE),
    ("Shift+Alt+Home", 0x01 | 0x08, 0xFF50),
])
def test_x11_names_of_a_combination(qtbot: QtBot, text: str, mask: int, keysym: int) -> None:
    assert x11_hotkey(combination(text)) == (mask, keysym)


@pytest.mark.parametrize(("text", "why"), [
    ("Ctrl+K, Ctrl+Q", "one key combination, not several"),
    ("Ctrl+Foo", "not a key combination Switchboard understands"),
    ("Ctrl+Alt", "can't be a shortcut for anywhere"),  # no key with the modifiers
    ("Q", "would take that key from typing in every program"),
    ("Shift+Space", "would take that key from typing in every program"),
    ("Ctrl+Alt+,", "can't be a shortcut for anywhere"),  # where "," is depends on layout
    ("Ctrl+Alt+Num+5", "can't be a shortcut for anywhere"),
])
def test_combinations_that_cannot_be_a_shortcut_say_why(qtbot: QtBot, text: str,
                                                        why: str) -> None:
    said = parse(text)
    assert isinstance(said, str) and why in said


def test_where_there_is_none_it_says_so_and_what_to_do(qtbot: QtBot) -> None:
    hotkey = GlobalHotkey()
    why = hotkey.register("Ctrl+Alt+Space")  # the tests' offscreen platform
    assert why is not None and "isn't available on this desktop" in why
    assert DESKTOP_SHORTCUT_COMMAND in why and hotkey.combination is None
    assert "Wayland" in not_available("wayland") and "macOS" in not_available("cocoa")
    assert hotkey.register("") is None  # off is not a failure
    assert "several" in (hotkey.register("Ctrl+K, Ctrl+Q") or "")  # the key text first


class StandInUser32(User32):
    def __init__(self, error: int = 0) -> None:
        self.error = error
        self.registered: list[tuple[int, int]] = []

    def register(self, modifiers: int, virtual_key: int) -> int:
        if not self.error:
            self.registered.append((modifiers, virtual_key))
        return self.error

    def unregister(self) -> None:
        self.registered.clear()


def message(kind: int, wparam: int) -> tuple[wintypes.MSG, int]:
    msg = wintypes.MSG(message=kind, wParam=wparam)
    return msg, ctypes.addressof(msg)


def test_windows_registers_and_sees_wm_hotkey(qtbot: QtBot) -> None:
    pressed: list[bool] = []
    user32 = StandInUser32()
    grab = WindowsGrab(lambda: pressed.append(True), user32)
    assert grab.grab(combination("Ctrl+Alt+Space")) is None
    assert user32.registered == [(MOD_CONTROL | MOD_ALT | MOD_NOREPEAT, 0x20)]
    other, address = message(WM_HOTKEY, HOTKEY_ID + 1)  # another program's id
    assert grab.nativeEventFilter(b"windows_dispatcher_MSG", address) == (False, 0)
    keyup, address = message(0x0101, HOTKEY_ID)  # WM_KEYUP
    assert grab.nativeEventFilter(b"windows_dispatcher_MSG", address) == (False, 0)
    assert pressed == []
    ours, address = message(WM_HOTKEY, HOTKEY_ID)
    assert grab.nativeEventFilter(b"windows_dispatcher_MSG", address) == (True, 0)
    assert pressed == [True]
    grab.release()
    assert user32.registered == []


def test_windows_says_when_another_program_has_the_combination(qtbot: QtBot) -> None:
    grab = WindowsGrab(lambda: None, StandInUser32(ERROR_HOTKEY_ALREADY_REGISTERED))
    assert grab.grab(combination("Ctrl+Alt+Space")) == (
        "Another program already uses Ctrl+Alt+Space: choose another shortcut in Settings.")
    grab = WindowsGrab(lambda: None, StandInUser32(87))
    assert "did not accept Ctrl+Alt+Space" in (grab.grab(combination("Ctrl+Alt+Space")) or "")


# On a real X server -------------------------------------------------------------------

PROGRAM = """
import sys
from PySide6.QtGui import QGuiApplication
from app.ui.global_hotkey import GlobalHotkey
app = QGuiApplication(sys.argv)
hotkey = GlobalHotkey()
pressed = []


def activated():
    pressed.append(1)
    print("activated", len(pressed), flush=True)
    if len(pressed) == 2:
        app.quit()


hotkey.activated.connect(activated)
print("registered:", hotkey.register(sys.argv[1]), flush=True)
if hotkey.combination is not None:
    app.exec()
hotkey.unregister()
"""


class Program:
    """A small program with a shortcut, on the X server, its lines read as they come."""

    def __init__(self, env: dict[str, str], shortcut: str) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, "-c", PROGRAM, shortcut], cwd=ROOT,
                                        env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.start()

    def _read(self, stream: object) -> None:
        self.lines.extend(line.strip() for line in stream)  # type: ignore[attr-defined]

    def said(self, start: str) -> str:
        wait_for(lambda: any(line.startswith(start) for line in self.lines), f"'{start}…'",
                 limit_s=30)
        return next(line for line in self.lines if line.startswith(start))

    def end(self) -> str:
        """Its stderr, once it has ended."""
        try:
            _, err = self.process.communicate(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._reader.join()
        return err


@pytest.fixture
def x_server() -> Iterator[dict[str, str]]:
    if sys.platform != "linux" or not (shutil.which("Xvfb") and shutil.which("xdotool")):
        pytest.skip("needs Xvfb and xdotool")
    with desktop() as screen:
        yield screen.env


def test_on_x11_the_shortcut_works_from_anywhere_and_is_not_taken_twice(
        qtbot: QtBot, x_server: dict[str, str]) -> None:
    first = Program(x_server, "Ctrl+Alt+Space")
    try:
        assert first.said("registered:") == "registered: None"
        second = Program(x_server, "Ctrl+Alt+Space")
        assert second.said("registered:") == ("registered: Another program already uses "
                                              "Ctrl+Alt+Space: choose another shortcut in "
                                              "Settings.")
        # The refusal came back to the program, not to Qt's log as an X error.
        assert "XCB error" not in second.end()
        # No window of the first program has the keyboard: only a grab sees the keys.
        press = ["xdotool", "key", "ctrl+alt+space"]
        subprocess.run(press, env=x_server, check=True, timeout=30)
        first.said("activated 1")
        # With Num Lock on the state has one more bit; it is the same shortcut.
        subprocess.run(["xdotool", "key", "Num_Lock"], env=x_server, check=True, timeout=30)
        subprocess.run(press, env=x_server, check=True, timeout=30)
        first.said("activated 2")
        assert first.end() == "" and first.process.returncode == 0
    finally:
        if first.process.poll() is None:
            first.process.kill()
            first.process.wait()
