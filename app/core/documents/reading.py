"""Reading one file end to end: extract it safely, then summarise it on the local tier.

Document text goes only to the executing backend (office node or local GPUs), never to
the cloud planner: nothing here routes, and the router never sees document text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from app.core.documents.chunking import Tokenizer, format_pages, tokenizer_for
from app.core.documents.extract import Document, extract
from app.core.documents.summarize import Progress, Summary, SummaryCache, summarize
from app.core.llm.backend import Backend


async def summarize_file(path: Path, backend: Backend, *,
                         progress: Callable[[Progress], None],
                         on_extracted: Callable[[Document], None] = lambda d: None,
                         parallel: int = 1) -> tuple[Document, Summary]:
    document = await extract(path)
    on_extracted(document)
    counter = await tokenizer_for(backend)
    try:
        summary = await summarize(document.pages, document.sha256, backend,
                                  model_name=backend.describe(), progress=progress,
                                  cache=SummaryCache(), parallel=parallel,
                                  count_tokens=counter)
    finally:
        if isinstance(counter, Tokenizer):
            with contextlib.suppress(Exception):
                counter.close()
    return document, summary


def as_markdown(document: Document, summary: Summary) -> str:
    """The summary as the user reads and exports it, with where it came from."""
    pages = len(document.pages)
    head = (f"**Summary of {document.path.name}** ({document.kind.upper()}, "
            f"{pages} page{'s' if pages != 1 else ''}"
            + (", only the first part was read" if document.truncated else "") + ")")
    cited = ", ".join(format_pages(r.first, r.last) for r in summary.citations)
    return f"{head}\n\n{summary.text.strip()}" + (f"\n\n*Sources: {cited}*" if cited else "")
