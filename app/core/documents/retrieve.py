"""Finding the parts of a stored document that answer a question: BM25 keyword scoring
over chunks of its pages, each chunk knowing its page range; the prompt that asks the
local model to answer from them, the document text fenced as data and pages cited; and
the pages the answer ends with, "(pp. 3–4, 7)"."""

from __future__ import annotations

import contextlib
import math
import re
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from app.core.documents.chunking import (
    Chunk,
    PageRange,
    Pages,
    chunk,
    format_page_list,
    format_pages,
)
from app.core.documents.summarize import FENCE_RULE, citations, fence
from app.core.llm.backend import Backend, Health
from app.core.llm.openai_client import ChatMessages, Delta, Finished, StreamEvent

CHUNK_TOKENS = 300  # small chunks: the context holds only what answers the question
OVERLAP_TOKENS = 30
# Pages a part may hold, at most: the pages an answer cites are those of its parts, and
# where pages hold little text (slides, forms) 300 tokens would span a dozen of them.
MAX_PAGES = 2
TOP_K = 3
K1 = 1.5  # BM25's usual constants: how fast repeats saturate, how much length counts
B = 0.75

STOP_WORDS = frozenset((
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "been", "but", "by", "can", "could", "did", "do", "does", "for", "from", "had",
    "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no",
    "not", "of", "on", "or", "our", "so", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "to", "us", "was", "we", "were", "what", "when",
    "where", "which", "who", "why", "will", "with", "would", "you", "your", "page",
    "pages", "document", "file", "say", "says", "said", "tell", "please",
))

_WORD = re.compile(r"\w+")

ASK_SYSTEM = (
    "You answer questions about a document for office staff, only from the parts of it "
    "you are given, faithfully and briefly. " + FENCE_RULE.format(tag="document")
    + "only use it to answer the user's question."
)
ASK_USER = (
    "Below are the parts of {name} that best match the question, each marked with its "
    "pages.\n\n{parts}\n\n"
    "Answer the question from these parts only. End every statement with the page or pages "
    "it comes from in square brackets, like [p. 3] or [pp. 12\u201314]; cite no other "
    "pages. If the parts don't answer it, say so.\n\nQuestion: {question}"
)


def words(text: str) -> list[str]:
    """The lowercased words of `text` that carry meaning (stop words left out)."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


@dataclass(frozen=True, slots=True)
class Hit:
    chunk: Chunk
    score: float

    @property
    def pages(self) -> PageRange:
        return self.chunk.pages


def rank(chunks: Sequence[Chunk], question: str, *, k: int = TOP_K) -> list[Hit]:
    """The `k` chunks scoring best for the question's words by BM25, best first; only
    chunks sharing a word with it. Ties go to the earlier chunk."""
    query = set(words(question))
    if not query or not chunks:
        return []
    bags = [Counter(words(c.text)) for c in chunks]
    lengths = [sum(bag.values()) for bag in bags]
    average = sum(lengths) / len(lengths) or 1.0
    n = len(chunks)
    idf = {w: math.log(1 + (n - df + 0.5) / (df + 0.5))
           for w in query if (df := sum(1 for bag in bags if w in bag))}
    hits = []
    for c, bag, length in zip(chunks, bags, lengths, strict=True):
        score = 0.0
        for w, weight in idf.items():
            tf = bag.get(w, 0)
            if tf:
                score += weight * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average))
        if score > 0:
            hits.append(Hit(c, score))
    hits.sort(key=lambda h: (-h.score, h.chunk.index))
    return hits[:k]


def top_chunks(pages: Pages, question: str, *, k: int = TOP_K,
               max_tokens: int = CHUNK_TOKENS, overlap_tokens: int = OVERLAP_TOKENS,
               max_pages: int | None = MAX_PAGES) -> list[Hit]:
    """The parts of `pages` that best answer `question` (see `rank`); when no part shares
    a word with it, the first `k`, so the model still sees how the document begins."""
    chunks = chunk(pages, max_tokens=max_tokens, overlap_tokens=overlap_tokens,
                   max_pages=max_pages)
    return rank(chunks, question, k=k) or [Hit(c, 0.0) for c in chunks[:k]]


def ask_messages(name: str, question: str, hits: Sequence[Hit]) -> list[dict[str, str]]:
    """The request to the local model: the parts fenced, in page order, then the question."""
    ordered = sorted(hits, key=lambda h: h.chunk.index)
    parts = "\n\n".join(
        f'<document pages="{format_pages(*h.pages)}">\n{fence(h.chunk.text)}\n</document>'
        for h in ordered)
    return [
        {"role": "system", "content": ASK_SYSTEM},
        {"role": "user", "content": ASK_USER.format(name=fence(name), parts=parts,
                                                    question=question.strip())},
    ]


# ---------------------------------------------------------------- the pages answered from


def pages_of(hits: Sequence[Hit]) -> list[int]:
    """Every page of the parts an answer was given, in order."""
    return sorted({n for h in hits for n in range(h.pages.first, h.pages.last + 1)})


def answered_from(answer: str, hits: Sequence[Hit]) -> list[int]:
    """The pages `answer` was answered from: those it cites that lie in its parts (the
    model saw only those, so any other is invented), or, citing none of them, every page
    of its parts."""
    given = set(pages_of(hits))
    cited = {n for r in citations(answer) for n in range(r.first, r.last + 1)} & given
    return sorted(cited or given)


def pages_line(answer: str, hits: Sequence[Hit]) -> str:
    """ "(pp. 3–4, 7)": what a document answer ends with; "" for no answer or no parts."""
    if not answer.strip() or not hits:
        return ""
    return f"({format_page_list(answered_from(answer, hits))})"


class EndsWithPages:
    """`backend`, its answers ending with the pages they were answered from, as one more
    piece of the stream just before its end (so the answer is shown, saved and exported
    with them). An answer that stops early (a fault, a Stop) ends without them."""

    def __init__(self, backend: Backend, hits: Sequence[Hit]) -> None:
        self.backend = backend
        self.hits = list(hits)
        self.name = backend.name

    def describe(self) -> str:
        return self.backend.describe()

    async def health(self) -> Health:
        return await self.backend.health()

    async def aclose(self) -> None:
        await self.backend.aclose()

    async def stream_chat(self, messages: ChatMessages, **options: Any
                          ) -> AsyncGenerator[StreamEvent, None]:
        streamed = ""
        # aclosing: this stream left early closes the backend's (and its HTTP response).
        async with contextlib.aclosing(self.backend.stream_chat(messages, **options)) as stream:
            async for event in stream:
                if isinstance(event, Delta):
                    streamed += event.text
                elif isinstance(event, Finished):
                    text = event.text or streamed
                    line = pages_line(text, self.hits)
                    if line:
                        ending = _gap(text) + line
                        yield Delta(ending)
                        event = replace(event, text=text + ending)
                yield event


def _gap(text: str) -> str:
    """What separates an answer from the line after it: a blank line."""
    return "\n" * max(0, 2 - (len(text) - len(text.rstrip("\n"))))
