"""Reading one file end to end: extract it safely, then summarise it on the local tier.

Document text goes only to the executing backend (office node or local GPUs), never to
the cloud planner: nothing here routes, and the router never sees document text.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from app.core.documents.chunking import (
    TokenCounter,
    Tokenizer,
    estimate_tokens,
    format_pages,
    page_tuples,
    sample_of,
    tokenizer_for,
)
from app.core.documents.extract import ExtractedDocument, extract
from app.core.documents.summarize import (
    PartSizes,
    Progress,
    Summary,
    SummaryCache,
    part_sizes,
    summarize,
    without_sources,
)
from app.core.llm.backend import Backend
from app.core.routing.pool import Capacity

SAMPLE_CHARS = 4_500  # of the document, counted by a node with no tokenizer to ask


async def summarize_file(path: Path, backend: Backend, *,
                         progress: Callable[[Progress], None],
                         on_extracted: Callable[[ExtractedDocument], None] = lambda d: None,
                         capacity: Callable[[], Awaitable[Capacity]] | None = None
                         ) -> tuple[ExtractedDocument, Summary]:
    """Extract `path` and summarise it on `backend`. With `capacity` (asked once the file
    is read: the place the work will most likely run on) the parts are sized to its
    context, measured with its tokenizer, and as many run at once as it has free slots;
    without, one at a time at default sizes.
    """
    document = await extract(path)
    on_extracted(document)
    counter: TokenCounter = estimate_tokens
    sizes, parallel = PartSizes(), 1
    place = await capacity() if capacity is not None else None
    if place is not None:
        # A sample of at most half the context in characters fits it even at two tokens a
        # character.
        sample = sample_of(page_tuples(document.pages),
                           min(SAMPLE_CHARS, place.context_tokens // 2))
        counter = await tokenizer_for(place.client, place.model, sample)
        parallel = place.parallel
    cache = SummaryCache()
    try:
        if place is not None:
            sizes = part_sizes(place.context_tokens, counter)
        summary = await summarize(
            document.pages, document.sha256, backend, model_name=backend.describe(),
            progress=progress, cache=cache, parallel=parallel, count_tokens=counter,
            chunk_tokens=sizes.chunk_tokens, overlap_tokens=sizes.overlap_tokens,
            answer_tokens=sizes.answer_tokens, reduce_input_tokens=sizes.reduce_input_tokens,
            final_tokens=sizes.final_tokens)
    finally:
        await asyncio.to_thread(cache.close)
        if isinstance(counter, Tokenizer):
            with contextlib.suppress(Exception):
                counter.close()
    return document, summary


def as_markdown(document: ExtractedDocument, summary: Summary) -> str:
    """The summary as the user reads and exports it, with where it came from."""
    pages = len(document.pages)
    head = (f"**Summary of {document.path.name}** ({document.kind.upper()}, "
            f"{pages} page{'s' if pages != 1 else ''}"
            + (", only the first part was read" if document.truncated else "") + ")")
    cited = ", ".join(format_pages(r.first, r.last) for r in summary.citations)
    # The Sources line lists the pages; the text's own list of them would say it twice.
    text = without_sources(summary.text).strip() if cited else summary.text.strip()
    sources = f"*Sources: {cited}*" if cited else ""
    return "\n\n".join(part for part in (head, text, sources) if part)
