"""A PDF's page texts through PDFium's C API over ctypes: the dozen calls extraction makes.

It loads the PDFium that pypdfium2 ships (the same library, version and build) but not
pypdfium2's Python layer, whose generated bindings for the whole API took ~50 ms of each
extraction child's ~110 ms start-up, paid again for every document and every reader of a
long one; the library itself loads in ~3 ms. Used only in the extraction child.

    with Document(file, size) as pdf:
        texts = [pdf.page_text(index) for index in range(len(pdf))]
"""

from __future__ import annotations

import ctypes
import os
import sys
from importlib import util

TYPE_CHECKING = False  # typing is read by type checkers only: the child starts faster
if TYPE_CHECKING:
    from typing import IO, Any

ERR_PASSWORD = 4  # FPDF_ERR_PASSWORD, from FPDF_GetLastError
_LIBRARY_NAMES = {"win32": "pdfium.dll", "darwin": "libpdfium.dylib"}

# int (*m_GetBlock)(void* param, unsigned long position, unsigned char* buf, unsigned long)
_GET_BLOCK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong,
                              ctypes.c_void_p, ctypes.c_ulong)


class PdfiumError(Exception):
    """PDFium could not open the document or one of its pages; `code` is its
    FPDF_GetLastError (ERR_PASSWORD for a password-protected file)."""

    def __init__(self, what: str, code: int = 0) -> None:
        super().__init__(f"{what} (PDFium error {code})")
        self.code = code


class _FileAccess(ctypes.Structure):  # FPDF_FILEACCESS
    _fields_ = [("m_FileLen", ctypes.c_ulong), ("m_GetBlock", _GET_BLOCK),
                ("m_Param", ctypes.c_void_p)]


class _RectF(ctypes.Structure):  # FS_RECTF
    _fields_ = [(name, ctypes.c_float) for name in ("left", "top", "right", "bottom")]


class _LibraryConfig(ctypes.Structure):  # FPDF_LIBRARY_CONFIG, version 2 (as pypdfium2)
    _fields_ = [("version", ctypes.c_int), ("m_pUserFontPaths", ctypes.c_void_p),
                ("m_pIsolate", ctypes.c_void_p), ("m_v8EmbedderSlot", ctypes.c_uint)]


_library: Any = None


def library() -> Any:
    """PDFium, loaded and initialised once, with the signatures used here declared."""
    global _library
    if _library is not None:
        return _library
    lib = ctypes.CDLL(_library_path())
    handle, text, rect = ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(_RectF)
    for name, restype, argtypes in (
            ("FPDF_InitLibraryWithConfig", None, [ctypes.POINTER(_LibraryConfig)]),
            ("FPDF_LoadCustomDocument", handle,
             [ctypes.POINTER(_FileAccess), ctypes.c_char_p]),
            ("FPDF_GetLastError", ctypes.c_ulong, []),
            ("FPDF_GetPageCount", ctypes.c_int, [handle]),
            ("FPDF_CloseDocument", None, [handle]),
            ("FPDF_LoadPage", handle, [handle, ctypes.c_int]),
            ("FPDF_GetPageBoundingBox", ctypes.c_int, [handle, rect]),
            ("FPDF_ClosePage", None, [handle]),
            ("FPDFText_LoadPage", text, [handle]),
            ("FPDFText_CountChars", ctypes.c_int, [text]),
            ("FPDFText_GetBoundedText", ctypes.c_int,
             [text, ctypes.c_double, ctypes.c_double, ctypes.c_double, ctypes.c_double,
              ctypes.c_void_p, ctypes.c_int]),
            ("FPDFText_ClosePage", None, [text])):
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    lib.FPDF_InitLibraryWithConfig(ctypes.byref(_LibraryConfig(2, None, None, 0)))
    _library = lib
    return lib


def _library_path() -> str:
    """pypdfium2's PDFium binary, found without importing its bindings; where that
    fails (an unusual install or freezer), the bindings' own loader finds it."""
    name = _LIBRARY_NAMES.get(sys.platform, "libpdfium.so")
    spec = util.find_spec("pypdfium2_raw")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    import pypdfium2_raw.bindings as bindings  # slow, but finds it wherever pypdfium2 can

    return str(bindings._libs["pdfium"]._name)


class Document:
    """An open PDF, read from `file` (`size` bytes, kept open by the caller) through
    PDFium's file-access callback, so only the parts PDFium asks for are read."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self._lib = lib = library()

        def get_block(_param: Any, position: int, buffer: int | None, length: int) -> int:
            try:
                file.seek(position)
                target = (ctypes.c_ubyte * length).from_address(buffer or 0)
                return int(file.readinto(target) == length)  # type: ignore[attr-defined]
            except (OSError, ValueError):
                return 0  # PDFium treats the file as damaged

        # Kept on self: PDFium calls back into it until the document is closed.
        self._get_block = _GET_BLOCK(get_block)
        self._access = _FileAccess(size, self._get_block, None)
        self._handle = lib.FPDF_LoadCustomDocument(ctypes.byref(self._access), None)
        if not self._handle:
            raise PdfiumError("can't open the document", lib.FPDF_GetLastError())

    def __len__(self) -> int:
        return int(self._lib.FPDF_GetPageCount(self._handle))

    def page_text(self, index: int) -> str:
        """The text of page `index` (from 0) within its visible box (media and crop box),
        as PDFium lays it out."""
        lib = self._lib
        page = lib.FPDF_LoadPage(self._handle, index)
        if not page:
            raise PdfiumError(f"can't load page {index + 1}", lib.FPDF_GetLastError())
        try:
            box = _RectF()
            if not lib.FPDF_GetPageBoundingBox(page, ctypes.byref(box)):
                raise PdfiumError(f"page {index + 1} has no bounding box")
            textpage = lib.FPDFText_LoadPage(page)
            if not textpage:
                raise PdfiumError(f"can't lay out the text of page {index + 1}")
            try:
                return self._bounded_text(textpage, (box.left, box.top, box.right, box.bottom))
            finally:
                lib.FPDFText_ClosePage(textpage)
        finally:
            lib.FPDF_ClosePage(page)

    def _bounded_text(self, textpage: int, bounds: tuple[float, float, float, float]) -> str:
        # PDFium lays out the bounded text afresh on every call, so it is asked once, into
        # a buffer big enough for any page: each character gives at most two UTF-16 units
        # and a line break ("\r\n") before it. Only when that could have been cut short
        # is it asked for the length first.
        lib = self._lib
        units = 4 * max(0, lib.FPDFText_CountChars(textpage)) + 16
        buffer = (ctypes.c_ushort * units)()
        written = lib.FPDFText_GetBoundedText(textpage, *bounds, buffer, units)
        if written >= units:
            units = lib.FPDFText_GetBoundedText(textpage, *bounds, None, 0) + 1
            buffer = (ctypes.c_ushort * units)()
            written = lib.FPDFText_GetBoundedText(textpage, *bounds, buffer, units)
        if written > 0 and buffer[written - 1] == 0:
            written -= 1  # the NUL PDFium ends the text with where there is room
        if written <= 0:
            return ""
        return bytes(memoryview(buffer)[:written]).decode("utf-16-le", errors="ignore")

    def close(self) -> None:
        if self._handle:
            self._lib.FPDF_CloseDocument(self._handle)
            self._handle = None

    def __enter__(self) -> Document:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
