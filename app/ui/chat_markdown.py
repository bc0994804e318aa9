"""Builds the QTextDocument a chat bubble shows: a message as Markdown or plain text, with its code
blocks found, set in a monospace font, shaded, and given room for a Copy button."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from PySide6.QtCore import QUrl
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QTextBlock,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
    QTextOption,
)

CODE_HEADER_H: Final = 24  # the strip above a code block that holds its Copy button
CODE_PAD: Final = 6

# Markdown as GitHub writes it, but raw HTML shown as text: answers that talk about "<div>" must
# not lose it, and an <img> tag must not become a request to somebody's server.
_FEATURES: Final = QTextDocument.MarkdownFeature(
    QTextDocument.MarkdownFeature.MarkdownDialectGitHub.value
    | QTextDocument.MarkdownFeature.MarkdownNoHTML.value
)
_FENCE_OPEN = re.compile(
    r"^(?P<lead>[ \t>]*(?:(?:[-*+]|\d{1,9}[.)])[ \t]+)?)(?P<fence>`{3,}|~{3,})(?P<info>.*)$"
)
_FENCE_CLOSE = re.compile(r"^[ \t>]*(?P<fence>`{3,}|~{3,})[ \t]*$")


class SafeDocument(QTextDocument):
    """A QTextDocument that never loads a resource.

    Answers come from a model and may carry image links; fetching them would tell a third party
    that (and when) somebody read the answer, and a local path would show a file in the chat.
    Qt asks loadResource() for every image while laying out, so refusing here covers all paths.
    """

    def __init__(self) -> None:
        super().__init__()
        self.blocked: set[str] = set()  # the URLs refused; tests read it

    def loadResource(self, type: int, name: QUrl | str) -> Any:  # noqa: A002 (Qt's name)
        self.blocked.add(QUrl(name).toString())
        return None


@dataclass(slots=True)
class CodeBlock:
    """One code block of a document: its first and last QTextBlock numbers and what Copy copies."""

    first: int
    last: int
    text: str
    language: str


def render(
    content: str, *, markdown: bool, font: QFont, code_shade: QColor
) -> tuple[SafeDocument, list[CodeBlock]]:
    """A document for `content` (Markdown, or plain text as typed) and its code blocks."""
    doc = SafeDocument()  # no parent: an evicted document is freed with its last reference
    doc.setUndoRedoEnabled(False)  # streamed appends would otherwise pile up an undo history
    doc.setDocumentMargin(0)  # the bubble has its own padding
    doc.setDefaultFont(font)
    option = QTextOption()
    # Long URLs and code lines wrap instead of running out of the bubble.
    option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
    doc.setDefaultTextOption(option)
    if not markdown:
        doc.setPlainText(content)
        return doc, []
    doc.setMarkdown(content, _FEATURES)
    return doc, _style_code(doc, _code_groups(doc, content), code_shade)


def _code_groups(doc: QTextDocument, source: str) -> list[tuple[list[QTextBlock], str | None]]:
    """The document's code blocks, each as its lines and, where the source gives it, its text.

    Qt 6's importer makes every line of a code block its own QTextBlock with BlockCodeLanguage
    (fenced ones also BlockCodeFence), but leaves no boundary between two fences that touch; the
    fences read from the source split such runs, and keep the tabs the importer expands.
    """
    runs: list[tuple[bool, list[QTextBlock]]] = []
    block = doc.begin()
    while block.isValid():
        fmt = block.blockFormat()
        if fmt.hasProperty(QTextFormat.Property.BlockCodeLanguage):
            fenced = fmt.hasProperty(QTextFormat.Property.BlockCodeFence)
            prev = runs[-1] if runs else None
            if prev and prev[0] == fenced and prev[1][-1].blockNumber() == block.blockNumber() - 1:
                prev[1].append(block)
            else:
                runs.append((fenced, [block]))
        block = block.next()

    # An empty fenced block leaves no line in the document. None: source and document disagree.
    fences: list[list[str]] | None = [f for f in _fenced_blocks(source) if f] if runs else []
    groups: list[tuple[list[QTextBlock], str | None]] = []
    for fenced, blocks in runs:
        split: list[tuple[list[QTextBlock], str | None]] = []
        i = 0
        while fenced and fences is not None and i < len(blocks):
            lines = fences.pop(0) if fences else []
            part = blocks[i : i + len(lines)]
            if not lines or len(part) != len(lines):
                fences = None
                break
            same = all(
                b.text() in (line, line.expandtabs(4)) for line, b in zip(lines, part, strict=True)
            )
            split.append((part, "\n".join(lines) if same else None))
            i += len(lines)
        groups.extend(split if fenced and fences is not None else [(blocks, None)])
    return groups


def _fenced_blocks(source: str) -> list[list[str]]:
    """The content lines of each fenced code block in Markdown `source`, in order."""
    blocks: list[list[str]] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        i += 1
        if not m or (m["fence"][0] == "`" and "`" in m["info"]):
            continue
        fence, lead = m["fence"], m["lead"]
        # CommonMark takes the opening fence's indentation off every content line.
        strip = len(lead) if lead.strip() == "" else 0
        content: list[str] = []
        while i < len(lines):
            c = _FENCE_CLOSE.match(lines[i])
            if c and c["fence"][0] == fence[0] and len(c["fence"]) >= len(fence):
                break
            line = lines[i]
            content.append(line[min(len(line) - len(line.lstrip(" ")), strip) :])
            i += 1
        blocks.append(content)
        i += 1
    return blocks


def _style_code(
    doc: QTextDocument, groups: list[tuple[list[QTextBlock], str | None]], shade: QColor
) -> list[CodeBlock]:
    fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    char_fmt = QTextCharFormat()
    char_fmt.setFontFamilies([fixed.family()])
    char_fmt.setFontFixedPitch(True)
    cursor = QTextCursor(doc)
    cursor.beginEditBlock()
    result: list[CodeBlock] = []
    for blocks, text in groups:
        first, last = blocks[0], blocks[-1]
        for b in blocks:
            fmt = QTextBlockFormat()
            fmt.setBackground(shade)
            fmt.setNonBreakableLines(False)  # wrap long lines; copying keeps them whole
            fmt.setLeftMargin(CODE_PAD)
            fmt.setRightMargin(CODE_PAD)
            if b is first:
                fmt.setTopMargin(CODE_HEADER_H + CODE_PAD)
            if b is last:
                fmt.setBottomMargin(CODE_PAD + 4)
            cursor.setPosition(b.position())
            cursor.mergeBlockFormat(fmt)
        cursor.setPosition(first.position())
        cursor.setPosition(last.position() + last.length() - 1, QTextCursor.MoveMode.KeepAnchor)
        cursor.mergeCharFormat(char_fmt)
        if text is None:
            text = "\n".join(b.text() for b in blocks)
        language = first.blockFormat().property(QTextFormat.Property.BlockCodeLanguage) or ""
        result.append(CodeBlock(first.blockNumber(), last.blockNumber(), text, str(language)))
    cursor.endEditBlock()
    return result
