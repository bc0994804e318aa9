"""Watching an X screen from the benchmark's own process, through libX11 (ctypes): when a
tray icon is embedded in trayer's panel, when a top-level window is viewable, and when a
window's event loop answers (`_NET_WM_PING`, which Qt answers from the GUI thread).

Polling this way costs a few X round trips a poll and no process starts (`xwininfo`
and `xdotool` would take a core's worth of forks from the app being timed)."""

from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import POINTER, byref, c_char_p, c_int, c_long, c_uint, c_ulong, c_void_p

CLIENT_MESSAGE = 33
STRUCTURE_NOTIFY_MASK = 1 << 17
IS_VIEWABLE = 2


class _Attributes(ctypes.Structure):
    _fields_ = [("x", c_int), ("y", c_int), ("width", c_int), ("height", c_int),
                ("border_width", c_int), ("depth", c_int), ("visual", c_void_p),
                ("root", c_ulong), ("c_class", c_int), ("bit_gravity", c_int),
                ("win_gravity", c_int), ("backing_store", c_int), ("backing_planes", c_ulong),
                ("backing_pixel", c_ulong), ("save_under", c_int), ("colormap", c_ulong),
                ("map_installed", c_int), ("map_state", c_int), ("all_event_masks", c_long),
                ("your_event_mask", c_long), ("do_not_propagate_mask", c_long),
                ("override_redirect", c_int), ("screen", c_void_p)]


class _ClientMessage(ctypes.Structure):
    _fields_ = [("type", c_int), ("serial", c_ulong), ("send_event", c_int),
                ("display", c_void_p), ("window", c_ulong), ("message_type", c_ulong),
                ("format", c_int), ("data", c_long * 5)]


class _Event(ctypes.Union):
    _fields_ = [("type", c_int), ("client", _ClientMessage), ("pad", c_long * 24)]


_ERROR_HANDLER = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p)


@_ERROR_HANDLER
def _ignore_errors(_display: int, _error: int) -> int:
    # A window can vanish between listing it and asking its name; libX11's default
    # handler would end this process for that.
    return 0


def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    lib.XOpenDisplay.restype = c_void_p
    lib.XOpenDisplay.argtypes = [c_char_p]
    lib.XDefaultRootWindow.restype = c_ulong
    lib.XDefaultRootWindow.argtypes = [c_void_p]
    lib.XQueryTree.argtypes = [c_void_p, c_ulong, POINTER(c_ulong), POINTER(c_ulong),
                               POINTER(POINTER(c_ulong)), POINTER(c_uint)]
    lib.XGetWindowProperty.argtypes = [
        c_void_p, c_ulong, c_ulong, c_long, c_long, c_int, c_ulong, POINTER(c_ulong),
        POINTER(c_int), POINTER(c_ulong), POINTER(c_ulong), POINTER(POINTER(ctypes.c_ubyte))]
    lib.XFree.argtypes = [c_void_p]
    lib.XGetWindowAttributes.argtypes = [c_void_p, c_ulong, POINTER(_Attributes)]
    lib.XInternAtom.restype = c_ulong
    lib.XInternAtom.argtypes = [c_void_p, c_char_p, c_int]
    lib.XSelectInput.argtypes = [c_void_p, c_ulong, c_long]
    lib.XSendEvent.argtypes = [c_void_p, c_ulong, c_int, c_long, POINTER(_Event)]
    lib.XPending.argtypes = [c_void_p]
    lib.XNextEvent.argtypes = [c_void_p, POINTER(_Event)]
    lib.XFlush.argtypes = [c_void_p]
    lib.XSync.argtypes = [c_void_p, c_int]
    lib.XCloseDisplay.argtypes = [c_void_p]
    lib.XSetErrorHandler(_ignore_errors)
    return lib


class Screen:
    """One connection to an X display."""

    def __init__(self, display: str) -> None:
        self.x = _lib()
        self.display = self.x.XOpenDisplay(display.encode())
        if not self.display:
            raise RuntimeError(f"cannot open X display {display}")
        self.root = self.x.XDefaultRootWindow(self.display)
        self._names: dict[int, str] = {}
        self._panel = 0
        self.wm_protocols = self.x.XInternAtom(self.display, b"WM_PROTOCOLS", 0)
        self.net_wm_ping = self.x.XInternAtom(self.display, b"_NET_WM_PING", 0)
        self.net_wm_name = self.x.XInternAtom(self.display, b"_NET_WM_NAME", 0)
        self.wm_name = self.x.XInternAtom(self.display, b"WM_NAME", 0)
        # Qt sends pongs to the root window for StructureNotify or SubstructureRedirect
        # (the window manager's, which must stay free).
        self.x.XSelectInput(self.display, self.root, STRUCTURE_NOTIFY_MASK)
        self._pinged = 0

    def forget(self) -> None:
        """Forget the names seen: the X server hands a new client the ids of one gone."""
        self._names.clear()
        self._panel = 0

    def close(self) -> None:
        self.x.XCloseDisplay(self.display)

    def children(self, window: int) -> list[int]:
        root, parent, count = c_ulong(), c_ulong(), c_uint()
        found = POINTER(c_ulong)()
        if not self.x.XQueryTree(self.display, window, byref(root), byref(parent),
                                 byref(found), byref(count)):
            return []
        try:
            return [found[i] for i in range(count.value)]
        finally:
            if found:
                self.x.XFree(found)

    def name(self, window: int) -> str:
        if window in self._names:
            return self._names[window]
        # _NET_WM_NAME (UTF-8) first: Qt names a tray icon's window only there.
        name = self._text(window, self.net_wm_name) or self._text(window, self.wm_name)
        if name:  # not named yet: ask again next time
            self._names[window] = name
        return name

    def _text(self, window: int, atom: int) -> str:
        kind, form, items, left = c_ulong(), c_int(), c_ulong(), c_ulong()
        data = POINTER(ctypes.c_ubyte)()
        if self.x.XGetWindowProperty(self.display, window, atom, 0, 256, 0, 0, byref(kind),
                                     byref(form), byref(items), byref(left), byref(data)):
            return ""
        try:
            if not data or form.value != 8:
                return ""
            return bytes(data[:items.value]).decode(errors="replace")
        finally:
            if data:
                self.x.XFree(data)

    def viewable(self, window: int, min_size: int = 2) -> bool:
        attributes = _Attributes()
        if not self.x.XGetWindowAttributes(self.display, window, byref(attributes)):
            return False
        return attributes.map_state == IS_VIEWABLE and attributes.width >= min_size \
            and attributes.height >= min_size

    def tray_icon(self, name: str) -> int:
        """The icon window called `name` embedded (and viewable) in trayer's panel; 0 if
        there is none yet."""
        if not self._panel:
            self._panel = next((w for w in self.children(self.root)
                                if self.name(w) == "panel"), 0)
        for socket in self.children(self._panel):
            for icon in self.children(socket):
                if self.name(icon) == name and self.viewable(icon):
                    return icon
        return 0

    def top_level(self, title: str) -> int:
        """A viewable top-level window titled `title` (no window manager: the root's
        children); 0 if there is none yet."""
        for window in self.children(self.root):
            if self.name(window) == title and self.viewable(window, min_size=50):
                return window
        return 0

    def ping(self, window: int) -> None:
        """Send `_NET_WM_PING`; `ponged()` says when the window's client answered."""
        self._pinged += 1
        event = _Event()
        event.client.type = CLIENT_MESSAGE
        event.client.window = window
        event.client.message_type = self.wm_protocols
        event.client.format = 32
        event.client.data[0] = self.net_wm_ping
        event.client.data[1] = self._pinged  # the "timestamp", echoed back
        event.client.data[2] = window
        self.x.XSendEvent(self.display, window, 0, 0, byref(event))
        self.x.XFlush(self.display)

    def ponged(self) -> bool:
        """Whether an answer to any ping has arrived (drains the event queue)."""
        answered = False
        event = _Event()
        while self.x.XPending(self.display):
            self.x.XNextEvent(self.display, byref(event))
            if event.type == CLIENT_MESSAGE and event.client.data[0] == self.net_wm_ping:
                answered = True
        return answered
