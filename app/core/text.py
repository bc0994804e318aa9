"""Text that can be stored and sent on: well-formed Unicode."""

from __future__ import annotations


def well_formed(text: str) -> str:
    """`text` with any lone surrogate as U+FFFD. JSON can carry half of a character as an
    escape such as "\\udcf9" (a node's tokenizer split one), which decodes to a str that
    UTF-8, and so SQLite and the next request, can't hold; the text around it must still
    be kept."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
