"""The format readers: PDF (PDFium, through pypdfium2), Word .docx (python-docx, after zip
and XML checks), text and Markdown (encoding detected) and HTML (text only).

They parse hostile input, so only the extraction child (`extract_child`) calls them,
under its memory and CPU limits; a refusal is a `Refusal` with a code and plain facts,
which the parent turns into words. The app's own process imports this module only for
`Caps`, so each parsing library is imported inside the reader that needs it: none of
them is ever loaded where the GUI runs.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any
from xml.parsers import expat

from app.core.documents.html_text import visible_blocks

PAGE_BREAK = "\f"  # a block that ends the page, in the blocks given to `paginate`
SOFT_PAGE_CHARS = 3_000  # a "page" of a DOCX, text or HTML file, so citations still work
# Control characters dropped (NUL, escape codes, …), keeping \t and \n; a lone \r is a
# line end.
_CLEAN = str.maketrans({"\r": "\n", **dict.fromkeys(
    chr(code) for code in (*range(0x00, 0x09), *range(0x0b, 0x20), 0x7f) if code != 0x0d)})
_SMALL_ENTRY = 1 << 20  # zip entries under 1 MiB may compress as well as they like
PREFER_CP1252_WITHIN = 0.1  # more "chaos" (charset-normalizer's mess ratio) than the best


class Refusal(Exception):
    """The file is refused; `code` is one of `errors.DocumentRejected`'s codes."""

    def __init__(self, code: str, **facts: Any) -> None:
        self.code = code
        self.facts = facts
        super().__init__(code, facts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Caps:
    """The limits the readers themselves enforce (the child enforces memory and CPU)."""

    max_pages: int
    max_chars: int
    max_zip_entries: int
    max_unpacked_bytes: int
    max_zip_ratio: float


@dataclass(slots=True)
class Pages:
    """Pages read, in order; `truncated` when a cap stopped reading early."""

    texts: list[str] = field(default_factory=list)
    truncated: bool = False


def read(kind: str, file: IO[bytes], caps: Caps) -> Pages:
    """The text of `file`, page by page; `kind` is what the parent's sniffing decided."""
    if kind == "pdf":
        return read_pdf(file, caps)
    if kind == "docx":
        return read_docx(file, caps)
    if kind in ("text", "markdown"):
        return read_text(file, caps)
    if kind == "html":
        return read_html(file, caps)
    raise Refusal("unsupported")


def clean(text: str) -> str:
    """Line ends made \\n; control characters (NUL, escape codes, …) dropped."""
    return text.replace("\r\n", "\n").translate(_CLEAN)


# ---------------------------------------------------------------------------- PDF


def read_pdf(file: IO[bytes], caps: Caps) -> Pages:
    """Each page's text as PDFium lays it out, up to the page and character caps; or a
    refusal: cut off, protected by a password, damaged or without pages. PDFium reads
    only the parts of `file` it needs."""
    import pypdfium2 as pdfium

    file.seek(0, 2)
    file.seek(-min(file.tell(), 1024), 2)
    if b"%%EOF" not in file.read():
        # PDFium would rebuild a cut-off file and quietly return part of it; a user
        # needs to know the download did not finish instead.
        raise Refusal("damaged", incomplete=True)
    file.seek(0)
    try:
        pdf = pdfium.PdfDocument(file)
    except pdfium.PdfiumError as error:
        if error.err_code == pdfium.raw.FPDF_ERR_PASSWORD:
            raise Refusal("password") from None
        raise Refusal("damaged") from None
    with pdf:
        count = len(pdf)
        if count == 0:
            raise Refusal("damaged")
        result = Pages(truncated=count > caps.max_pages)
        chars = 0
        for index in range(min(count, caps.max_pages)):
            page = pdf[index]
            textpage = page.get_textpage()
            text = clean(textpage.get_text_range())
            textpage.close()
            page.close()
            if chars + len(text) > caps.max_chars:
                result.texts.append(text[: caps.max_chars - chars])
                result.truncated = True
                break
            chars += len(text)
            result.texts.append(text)
    return result


# ---------------------------------------------------------------------------- DOCX

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"


def check_zip(archive: zipfile.ZipFile, caps: Caps) -> None:
    """Refuse a zip bomb from its directory alone, before anything is unpacked: too many
    entries, too much in all, or one entry that grows too much. (`zipfile` also never
    unpacks an entry past its declared size, so a directory that lies gives a CRC error.)"""
    entries = archive.infolist()
    if len(entries) > caps.max_zip_entries:
        raise Refusal("zip_bomb", entries=len(entries), limit=caps.max_zip_entries)
    unpacked = sum(entry.file_size for entry in entries)
    if unpacked > caps.max_unpacked_bytes:
        raise Refusal("zip_bomb", unpacked=unpacked, limit=caps.max_unpacked_bytes)
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > _SMALL_ENTRY and ratio > caps.max_zip_ratio:
            raise Refusal("zip_bomb", ratio=ratio, limit=caps.max_zip_ratio)


class _Unsafe(Exception):
    pass


class _RootReached(Exception):
    pass


def check_xml_prolog(stream: IO[bytes]) -> None:
    """Refuse XML that declares a DTD (entities, external references): Word never writes
    one, and one is how billion-laughs and external-entity attacks start. A DTD can only
    come before the root element, so expat (which also reads UTF-16 and declared
    encodings right) stops there; nothing is ever resolved or fetched."""
    parser = expat.ParserCreate()

    def unsafe(*_: object) -> None:
        raise _Unsafe

    def root(*_: object) -> None:
        raise _RootReached

    parser.StartDoctypeDeclHandler = unsafe
    parser.EntityDeclHandler = unsafe
    parser.StartElementHandler = root
    try:
        while chunk := stream.read(16_384):
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except _RootReached:
        return
    except _Unsafe:
        raise Refusal("unsafe_xml") from None
    except expat.ExpatError:
        raise Refusal("damaged") from None


def read_docx(file: IO[bytes], caps: Caps) -> Pages:
    """Zip checks, DTD checks on every XML part, then python-docx; body paragraphs and
    tables in order, pages at hard page breaks and every ~3,000 characters."""
    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile:
        raise Refusal("damaged") from None
    with archive:
        check_zip(archive, caps)
        names = set(archive.namelist())
        if "word/document.xml" not in names:
            raise Refusal("damaged")  # an Excel or PowerPoint file, or any other zip
        for name in sorted(names):
            if name.endswith((".xml", ".rels")):
                with archive.open(name) as part:
                    check_xml_prolog(part)
    file.seek(0)
    import docx  # python-docx: its lxml parser has resolve_entities=False as well

    document = docx.Document(file)
    return paginate(_docx_blocks(document.element.body), caps)


def _docx_blocks(container: Any) -> Iterator[str]:
    for element in container.iterchildren():
        if element.tag == _W + "p":
            yield from _paragraph_blocks(element)
        elif element.tag == _W + "tbl":
            for row in element.iter(_W + "tr"):
                cells = [" ".join(_plain(p) for p in cell.iter(_W + "p")).strip()
                         for cell in row.iterchildren(_W + "tc")]
                if any(cells):
                    yield " | ".join(cells)
        elif element.tag == _W + "sdt":  # a content control: its content is body content
            for content in element.iterchildren(_W + "sdtContent"):
                yield from _docx_blocks(content)


def _paragraph_blocks(paragraph: Any) -> Iterator[str]:
    """A paragraph's text, with a PAGE_BREAK block where it breaks the page."""
    properties = paragraph.find(_W + "pPr")
    if properties is not None and properties.find(_W + "pageBreakBefore") is not None:
        yield PAGE_BREAK
    parts: list[str] = []
    for piece in _runs_text(paragraph):
        if piece == PAGE_BREAK:
            if text := "".join(parts).strip():
                yield text
            parts = []
            yield PAGE_BREAK
        else:
            parts.append(piece)
    if text := "".join(parts).strip():
        yield text


def _runs_text(element: Any) -> Iterator[str]:
    for child in element.iterchildren():
        tag = child.tag
        if tag == _W + "t":
            yield child.text or ""
        elif tag == _W + "tab":
            yield "\t"
        elif tag == _W + "br":
            yield PAGE_BREAK if child.get(_W + "type") == "page" else "\n"
        elif tag in (_W + "cr",):
            yield "\n"
        elif tag == _W + "noBreakHyphen":
            yield "-"
        elif tag == _W + "p":  # a paragraph in a text box
            yield "\n"
            yield from _runs_text(child)
        elif tag in (_W + "pPr", _W + "rPr", _W + "delText", _MC_FALLBACK) or not isinstance(
                tag, str):
            continue  # formatting, deleted text, the fallback copy of a text box, comments
        else:
            yield from _runs_text(child)


def _plain(paragraph: Any) -> str:
    return "".join(piece for piece in _runs_text(paragraph) if piece != PAGE_BREAK)


# ---------------------------------------------------------------------------- text

_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_META_CHARSET = rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)"""


def _read_bytes(file: IO[bytes], caps: Caps) -> tuple[bytes, bool]:
    """At most what `max_chars` characters could take (4 bytes each) and whether more
    was left; a cut is moved back to a line end."""
    budget = caps.max_chars * 4
    data = file.read(budget + 1)
    if len(data) <= budget:
        return data, False
    data = data[:budget]
    cut = data.rfind(b"\n", max(0, len(data) - 65_536))
    return (data[: cut + 1] if cut > 0 else data), True


def decode(data: bytes, *, declared: str | None = None) -> str:
    """Bytes to text: a byte-order mark, then a declared charset (HTML's `<meta>`), then
    strict UTF-8, then charset-normalizer's best guess. Binary data is refused."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(encoding, errors="replace")
    if declared:
        try:
            return data.decode(declared, errors="replace")
        except LookupError:
            pass  # an unknown charset name: guess instead
    text = ""
    if (wide := _wide_encoding(data)) is not None:
        try:
            text = data.decode(wide)
        except UnicodeDecodeError:
            text = ""  # zeros where UTF-16 would have them, but not UTF-16 after all
    if not text:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _guess(data)
    if text.count("\x00") > len(text) // 100:
        raise Refusal("not_text")  # zeros or binary that happens to be valid UTF-8
    return text


def _wide_encoding(data: bytes) -> str | None:
    """UTF-16 or UTF-32 without a byte-order mark, told by where the zero bytes fall:
    text in Latin scripts has a zero in every character's high byte(s). Windows
    programs write UTF-16 without a BOM often enough for this to matter."""
    sample = data[:4096]
    if len(sample) < 8 or sample.count(0) < len(sample) // 4:
        return None
    for encoding, width, zero_at in (("utf-32-le", 4, (1, 2, 3)), ("utf-32-be", 4, (0, 1, 2)),
                                     ("utf-16-le", 2, (1,)), ("utf-16-be", 2, (0,))):
        units = len(sample) // width
        zeros = sum(1 for i in range(units) if all(sample[i * width + k] == 0
                                                     for k in zero_at))
        if len(sample) % width == 0 and zeros >= units * 0.7:
            return encoding
    return None


def _guess(data: bytes) -> str:
    """charset-normalizer's guess, except that Windows-1252 wins a near tie: on Western
    European text the single-byte code pages score within a hair of each other (French
    read as Baltic cp1257, say), and cp1252 is by far the commonest legacy office text."""
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise Refusal("not_text")
    for match in matches:
        if ("cp1252" in match.could_be_from_charset
                and match.chaos <= best.chaos + PREFER_CP1252_WITHIN):
            return str(match)
    return str(best)


def read_text(file: IO[bytes], caps: Caps) -> Pages:
    """Plain text or Markdown: lines kept; a form feed starts a new page."""
    data, cut = _read_bytes(file, caps)
    sections = [clean(section).rstrip("\n") for section in decode(data).split("\f")]
    pages = paginate(_text_blocks(sections), caps)
    pages.truncated |= cut
    return pages


def _text_blocks(sections: list[str]) -> Iterator[str]:
    for number, section in enumerate(sections):
        if number:
            yield PAGE_BREAK
        yield from section.split("\n")


# ---------------------------------------------------------------------------- HTML

def read_html(file: IO[bytes], caps: Caps) -> Pages:
    """The visible text of an HTML file: scripts, styles and the like dropped."""
    data, cut = _read_bytes(file, caps)
    declared = re.search(_META_CHARSET, data[:4096], re.IGNORECASE)
    text = clean(decode(data, declared=declared and declared.group(1).decode("ascii")))
    pages = paginate(visible_blocks(text), caps)
    pages.truncated |= cut
    return pages


# ---------------------------------------------------------------------------- pages


def paginate(blocks: Iterable[str], caps: Caps) -> Pages:
    """Blocks (paragraphs, lines) into pages of about SOFT_PAGE_CHARS characters,
    breaking between blocks, and at PAGE_BREAK; a block longer than a page is cut at a
    space. Stops at the page or character cap."""
    result = Pages()
    lines: list[str] = []
    size = chars = 0

    def end_page() -> bool:
        nonlocal lines, size
        result.texts.append("\n".join(lines))
        lines, size = [], 0
        return len(result.texts) < caps.max_pages

    for block in blocks:
        if block == PAGE_BREAK:
            if not end_page():
                result.truncated = True
                return result
            continue
        for piece in _pieces(block):
            if size and size + len(piece) > SOFT_PAGE_CHARS and not end_page():
                result.truncated = True
                return result
            if chars + len(piece) > caps.max_chars:
                lines.append(piece[: caps.max_chars - chars])
                result.texts.append("\n".join(lines))
                result.truncated = True
                return result
            lines.append(piece)
            size += len(piece) + 1
            chars += len(piece) + 1
    if lines or not result.texts:
        result.texts.append("\n".join(lines))
    return result


def _pieces(block: str) -> Iterator[str]:
    while len(block) > SOFT_PAGE_CHARS:
        cut = block.rfind(" ", SOFT_PAGE_CHARS // 2, SOFT_PAGE_CHARS)
        cut = cut if cut > 0 else SOFT_PAGE_CHARS
        yield block[:cut]
        block = block[cut:].lstrip(" ")
    yield block
