"""A shortcut that opens quick ask from anywhere, whichever program has the keyboard (a
"global hotkey"), from the setting `quick_ask_hotkey` in Qt's portable key text.

What works where:

- Windows: `RegisterHotKey`. Windows posts WM_HOTKEY to the GUI thread, where a native
  event filter sees it. A combination another program (or Windows) holds is refused,
  and `register` says so.
- Linux and the BSDs on an X11 (Xorg) desktop: a passive grab of the key on the root
  window (`xcb_grab_key` on Qt's own X connection, through ctypes), with Caps Lock and
  Num Lock on or off. A combination another program grabbed is refused, and said so.
- Wayland, macOS, and anything else (the tests' offscreen platform): not available.
  Wayland lets no program watch the keyboard outside its own windows; macOS would need
  Carbon's RegisterEventHotKey with a C callback, more than ctypes should carry. There
  `register` says so, and that the desktop's own keyboard settings can run
  `switchboard --quick-ask`.

A shortcut is one combination: Ctrl, Alt, Shift or Meta (the Windows or Super key) with
a letter, digit, F-key, Space or a named key (arrows, Home, Insert, …). Without Ctrl, Alt
or Meta only an F-key is taken: anything else would take a key from typing everywhere.
Punctuation and keypad keys are refused: where they are depends on the keyboard layout.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from ctypes import wintypes
from dataclasses import dataclass
from typing import Protocol

from PySide6.QtCore import (
    QAbstractNativeEventFilter,
    QByteArray,
    QCoreApplication,
    QObject,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QGuiApplication, QKeySequence

Key = Qt.Key
Mod = Qt.KeyboardModifier

DESKTOP_SHORTCUT_COMMAND = "switchboard --quick-ask"
EventType = QByteArray | bytes | bytearray | memoryview  # a native event's kind, as Qt names it

# What each key is called by Windows (virtual-key code) and by X11 (keysym). Only keys
# that are in the same place on every layout.
KEYS: dict[Key, tuple[int, int]] = {
    **{Key(Key.Key_A.value + i): (0x41 + i, 0x61 + i) for i in range(26)},  # keysym: a–z
    **{Key(Key.Key_0.value + i): (0x30 + i, 0x30 + i) for i in range(10)},
    **{Key(Key.Key_F1.value + i): (0x70 + i, 0xFFBE + i) for i in range(24)},
    Key.Key_Space: (0x20, 0x20),
    Key.Key_Return: (0x0D, 0xFF0D),
    Key.Key_Backspace: (0x08, 0xFF08),
    Key.Key_Escape: (0x1B, 0xFF1B),
    Key.Key_Insert: (0x2D, 0xFF63),
    Key.Key_Delete: (0x2E, 0xFFFF),
    Key.Key_Home: (0x24, 0xFF50),
    Key.Key_End: (0x23, 0xFF57),
    Key.Key_PageUp: (0x21, 0xFF55),
    Key.Key_PageDown: (0x22, 0xFF56),
    Key.Key_Left: (0x25, 0xFF51),
    Key.Key_Up: (0x26, 0xFF52),
    Key.Key_Right: (0x27, 0xFF53),
    Key.Key_Down: (0x28, 0xFF54),
    Key.Key_Pause: (0x13, 0xFF13),
    Key.Key_Print: (0x2C, 0xFF61),
}
F_KEYS = frozenset(Key(Key.Key_F1.value + i) for i in range(24))

# Qt's modifier: (Windows MOD_*, X11 mask). Meta is the Windows key, or Super (Mod4).
MODIFIERS: dict[Mod, tuple[int, int]] = {
    Mod.AltModifier: (0x0001, 0x08),
    Mod.ControlModifier: (0x0002, 0x04),
    Mod.ShiftModifier: (0x0004, 0x01),
    Mod.MetaModifier: (0x0008, 0x40),
}
HOLDING = Mod.ControlModifier | Mod.AltModifier | Mod.MetaModifier
MOD_NOREPEAT = 0x4000  # Windows: holding the keys down opens quick ask once, not on repeat


@dataclass(frozen=True, slots=True)
class Combination:
    key: Key
    modifiers: Mod
    text: str  # in this platform's words: "Ctrl+Alt+Space"


def parse(sequence_text: str) -> Combination | str:
    """The one key combination `sequence_text` (Qt's portable text) names, or why it
    can't be a shortcut for anywhere, in plain words."""
    sequence = QKeySequence.fromString(sequence_text.strip(),
                                       QKeySequence.SequenceFormat.PortableText)
    if sequence.count() > 1:
        return "A shortcut for anywhere is one key combination, not several in a row."
    # (The stubs miss QKeySequence's [], which Qt for Python has.)
    combination = sequence[0] if sequence.count() == 1 else None  # type: ignore[index]
    if combination is None or combination.key() == Key.Key_unknown:
        return f"“{sequence_text}” is not a key combination Switchboard understands."
    key, modifiers = combination.key(), combination.keyboardModifiers()
    text = sequence.toString(QKeySequence.SequenceFormat.NativeText)
    # KEYS holds no punctuation, and the keypad (a modifier to Qt) is refused with it.
    if key not in KEYS or modifiers & ~(HOLDING | Mod.ShiftModifier):
        return (f"{text} can't be a shortcut for anywhere: use a letter, a digit, an F-key, "
                "Space or a named key such as Home, with Ctrl, Alt or Meta.")
    if not modifiers & HOLDING and key not in F_KEYS:
        return (f"{text} would take that key from typing in every program: add Ctrl, Alt "
                "or Meta to it.")
    return Combination(key, modifiers, text)


def windows_hotkey(combination: Combination) -> tuple[int, int]:
    """RegisterHotKey's fsModifiers and virtual-key code for `combination`."""
    modifiers = MOD_NOREPEAT
    for qt, (windows, _) in MODIFIERS.items():
        if combination.modifiers & qt:
            modifiers |= windows
    return modifiers, KEYS[combination.key][0]


def x11_hotkey(combination: Combination) -> tuple[int, int]:
    """The X11 modifier mask and keysym for `combination`."""
    mask = 0
    for qt, (_, x11) in MODIFIERS.items():
        if combination.modifiers & qt:
            mask |= x11
    return mask, KEYS[combination.key][1]


def not_available(platform: str) -> str:
    """Why there is no shortcut for anywhere on this desktop, and what to do instead."""
    where = {"wayland": "Wayland desktops", "cocoa": "macOS"}.get(platform, "this desktop")
    why = (" (they let only the desktop itself watch the keyboard)"
           if platform == "wayland" else "")
    return (f"A shortcut for anywhere isn't available on {where}{why}. Add one in the "
            f"desktop's own keyboard settings that runs: {DESKTOP_SHORTCUT_COMMAND}")


class _Grab(Protocol):
    def grab(self, combination: Combination) -> str | None: ...
    def release(self) -> None: ...


class GlobalHotkey(QObject):
    """The quick-ask shortcut, on this desktop's terms (see the module's docstring).

    Signals:
        activated(): the shortcut was pressed, in whatever program had the keyboard.
    """

    activated = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.combination: Combination | None = None  # the one in place now
        self._grab: _Grab | None = None

    def register(self, sequence_text: str) -> str | None:
        """Use `sequence_text` ("" for none) instead of the shortcut before, which is let
        go either way. None when it is in place (or off); else why not, in plain words.
        On the GUI thread: Windows sends the key to the thread that registered it."""
        self.unregister()
        if not sequence_text.strip():
            return None
        combination = parse(sequence_text)
        if isinstance(combination, str):
            return combination
        grab = _grab_for(QGuiApplication.platformName(), self._pressed)
        if isinstance(grab, str):
            return grab
        why = grab.grab(combination)
        if why is None:
            self._grab, self.combination = grab, combination
        return why

    def unregister(self) -> None:
        if self._grab is not None:
            self._grab.release()
        self._grab = self.combination = None

    def _pressed(self) -> None:
        # Called from inside the platform's event dispatch: opening a window waits until
        # that is over.
        QTimer.singleShot(0, self, self.activated.emit)


def _grab_for(platform: str, pressed: Callable[[], None]) -> _Grab | str:
    if sys.platform == "win32" and platform == "windows":
        return WindowsGrab(pressed)
    if platform == "xcb":
        try:
            return X11Grab(pressed)
        except (OSError, AttributeError, RuntimeError):
            return not_available(platform)
    return not_available(platform)


# Windows ---------------------------------------------------------------------------------

WM_HOTKEY = 0x0312
HOTKEY_ID = 0x5B51  # any id below 0xC000, unique within Switchboard
ERROR_HOTKEY_ALREADY_REGISTERED = 1409


class User32:
    """RegisterHotKey and UnregisterHotKey for the calling thread (no window: WM_HOTKEY
    is posted to the thread's queue, so registering must happen on the GUI thread)."""

    def __init__(self) -> None:
        if sys.platform == "win32":
            self.dll = ctypes.WinDLL("user32", use_last_error=True)

    def register(self, modifiers: int, virtual_key: int) -> int:
        """0 when registered, else Windows' error code."""
        if sys.platform == "win32":
            if self.dll.RegisterHotKey(None, HOTKEY_ID, modifiers, virtual_key):
                return 0
            return ctypes.get_last_error() or -1
        raise OSError("RegisterHotKey is Windows only")

    def unregister(self) -> None:
        if sys.platform == "win32":
            self.dll.UnregisterHotKey(None, HOTKEY_ID)


class WindowsGrab(QAbstractNativeEventFilter):
    def __init__(self, pressed: Callable[[], None], user32: User32 | None = None) -> None:
        super().__init__()
        self._pressed = pressed
        self._user32 = user32 or User32()

    def grab(self, combination: Combination) -> str | None:
        error = self._user32.register(*windows_hotkey(combination))
        if error == ERROR_HOTKEY_ALREADY_REGISTERED:
            return (f"Another program already uses {combination.text}: choose another "
                    "shortcut in Settings.")
        if error:
            return f"Windows did not accept {combination.text} as a shortcut (error {error})."
        _app().installNativeEventFilter(self)
        return None

    def release(self) -> None:
        _app().removeNativeEventFilter(self)
        self._user32.unregister()

    def nativeEventFilter(self, event_type: EventType, message: int  # noqa: N802
                          ) -> tuple[bool, int]:
        # Thread messages come as the dispatcher's; a window's (none here) as generic.
        if _name(event_type) in (b"windows_dispatcher_MSG", b"windows_generic_MSG"):
            msg = wintypes.MSG.from_address(int(message))
            if msg.message == WM_HOTKEY and msg.wParam == HOTKEY_ID:
                self._pressed()
                return True, 0
        return False, 0


# X11 -------------------------------------------------------------------------------------

XCB_KEY_PRESS = 2
XCB_GRAB_MODE_ASYNC = 1
BAD_ACCESS = 10
LOCK_MASK, NUM_LOCK_MASK = 0x02, 0x10  # Mod2 is Num Lock on practically every X server
# X matches modifiers exactly: the same shortcut is grabbed with each lock on and off.
LOCKS = (0, LOCK_MASK, NUM_LOCK_MASK, LOCK_MASK | NUM_LOCK_MASK)
MATCHED = sum(x11 for _, x11 in MODIFIERS.values())  # the rest (locks, AltGr) is ignored


class _Cookie(ctypes.Structure):
    _fields_ = [("sequence", ctypes.c_uint)]


class _Error(ctypes.Structure):
    _fields_ = [("response_type", ctypes.c_uint8), ("error_code", ctypes.c_uint8)]


class _KeyPress(ctypes.Structure):
    """xcb_key_press_event_t, as far as the state field."""

    _fields_ = [("response_type", ctypes.c_uint8), ("detail", ctypes.c_uint8),
                ("sequence", ctypes.c_uint16), ("time", ctypes.c_uint32),
                ("root", ctypes.c_uint32), ("event", ctypes.c_uint32),
                ("child", ctypes.c_uint32), ("root_x", ctypes.c_int16),
                ("root_y", ctypes.c_int16), ("event_x", ctypes.c_int16),
                ("event_y", ctypes.c_int16), ("state", ctypes.c_uint16)]


class X11Grab(QAbstractNativeEventFilter):
    def __init__(self, pressed: Callable[[], None]) -> None:
        super().__init__()
        self._pressed = pressed
        native = _app().nativeInterface()  # QNativeInterface.QX11Application under xcb
        self._connection = int(native.connection())  # type: ignore[attr-defined]
        display = int(native.display())  # type: ignore[attr-defined]
        if not self._connection or not display:
            raise RuntimeError("no X connection")
        self._xcb = ctypes.CDLL("libxcb.so.1")
        self._xcb.xcb_grab_key_checked.restype = _Cookie
        self._xcb.xcb_grab_key_checked.argtypes = [
            ctypes.c_void_p, ctypes.c_uint8, ctypes.c_uint32, ctypes.c_uint16,
            ctypes.c_uint8, ctypes.c_uint8, ctypes.c_uint8]
        self._xcb.xcb_ungrab_key.argtypes = [ctypes.c_void_p, ctypes.c_uint8,
                                             ctypes.c_uint32, ctypes.c_uint16]
        self._xcb.xcb_request_check.restype = ctypes.POINTER(_Error)
        self._xcb.xcb_request_check.argtypes = [ctypes.c_void_p, _Cookie]
        self._xcb.xcb_flush.argtypes = [ctypes.c_void_p]
        xlib = ctypes.CDLL("libX11.so.6")
        xlib.XKeysymToKeycode.restype = ctypes.c_uint8
        xlib.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        xlib.XDefaultRootWindow.restype = ctypes.c_ulong
        xlib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        self._keycode_of = lambda keysym: int(xlib.XKeysymToKeycode(display, keysym))
        self._root = int(xlib.XDefaultRootWindow(display))
        self._free = ctypes.CDLL(None).free
        self._keycode = 0
        self._mask = 0

    def grab(self, combination: Combination) -> str | None:
        mask, keysym = x11_hotkey(combination)
        keycode = self._keycode_of(keysym)
        if not keycode:
            return f"This keyboard has no key for {combination.text}."
        self._keycode, self._mask = keycode, mask
        refused = 0
        for locks in LOCKS:
            # Checked: an error comes back here, not to Qt (which would log it as a fault).
            error = self._xcb.xcb_request_check(self._connection, self._xcb.xcb_grab_key_checked(
                self._connection, False, self._root, mask | locks, keycode,
                XCB_GRAB_MODE_ASYNC, XCB_GRAB_MODE_ASYNC))
            if error:
                refused = refused or error.contents.error_code
                self._free(error)
        if refused:
            self._ungrab()
            if refused == BAD_ACCESS:
                return (f"Another program already uses {combination.text}: choose another "
                        "shortcut in Settings.")
            return f"The desktop did not accept {combination.text} as a shortcut (X error " \
                   f"{refused})."
        _app().installNativeEventFilter(self)
        return None

    def release(self) -> None:
        _app().removeNativeEventFilter(self)
        self._ungrab()

    def _ungrab(self) -> None:
        # Only this program's grabs are let go: another's of the same keys stay.
        for locks in LOCKS:
            self._xcb.xcb_ungrab_key(self._connection, self._keycode, self._root,
                                     self._mask | locks)
        self._xcb.xcb_flush(self._connection)

    def nativeEventFilter(self, event_type: EventType, message: int  # noqa: N802
                          ) -> tuple[bool, int]:
        if _name(event_type) == b"xcb_generic_event_t":
            event = _KeyPress.from_address(int(message))
            if event.response_type & 0x7F == XCB_KEY_PRESS and event.detail == self._keycode \
                    and event.state & MATCHED == self._mask:
                self._pressed()
        # Not kept from Qt: it takes the key's time as the user's latest, which lets quick
        # ask take the focus past the window manager's focus-stealing prevention.
        return False, 0


def _name(event_type: EventType) -> bytes:
    return bytes(event_type.data() if isinstance(event_type, QByteArray) else event_type)


def _app() -> QGuiApplication:
    app = QCoreApplication.instance()
    assert isinstance(app, QGuiApplication), "a global shortcut needs the GUI application"
    return app
