"""The visible text of an HTML page, as blocks (paragraphs, headings, table rows) for
`formats.paginate`; scripts, styles and the like dropped. Used only by the extraction
child."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SPACE = re.compile(r"\s+")
_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "math", "iframe",
                      "object"})
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "div", "dl",
    "dt", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "title", "tr",
    "ul",
})


class _TextOnly(HTMLParser):
    """Collects the visible text of a page as blocks. html.parser never fetches anything
    and knows only HTML's own character references, so nothing is resolved or loaded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._line: list[str] = []
        self._skipping: list[str] = []
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skipping.append(tag)
        elif tag in _BLOCKS:
            self._end_line()
            self._pre += tag == "pre"
        elif tag in ("td", "th"):
            self._line.append(" | ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self._end_line()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            if tag in self._skipping:
                while self._skipping.pop() != tag:
                    pass
        elif tag in _BLOCKS:
            self._end_line()
            self._pre -= tag == "pre" and self._pre > 0

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._line.append(data)

    def close(self) -> None:
        super().close()
        self._end_line()

    def _end_line(self) -> None:
        text = "".join(self._line)
        self._line = []
        if self._pre:
            self.blocks.extend(line.rstrip() for line in text.strip("\n").split("\n"))
        elif text := _SPACE.sub(" ", text).strip(" |"):
            self.blocks.append(text)


def visible_blocks(text: str) -> list[str]:
    """The blocks of visible text in `text` (HTML already decoded)."""
    parser = _TextOnly()
    parser.feed(text)
    parser.close()
    return parser.blocks
