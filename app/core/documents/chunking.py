"""Cut a document's pages into chunks that fit the executing model, each knowing its pages.

Chunks are measured with a token counter: the model's own tokenizer where the tier offers
one (`tokenizer_for`), otherwise `estimate_tokens`. They end on a sentence boundary (a
paragraph boundary where one is near), neighbours overlap by a few sentences so a point
that straddles a cut is seen whole at least once, and no chunk is longer than
`max_tokens` by the counter given.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import math
import re
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

import httpx

from app.core import errors

log = logging.getLogger(__name__)

TokenCounter = Callable[[str], int]

CHARS_PER_TOKEN = 4  # the stated estimate: ~4 characters a token, as for English with BPE
TOKENIZE_TIMEOUT_S = 10.0
PARAGRAPH = "\n\n"
SENTENCE = " "

_PARAGRAPHS = re.compile(r"\n\s*\n")
# A sentence ends at . ! ? … (and a closing quote or bracket) followed by white space.
_SENTENCE_END = re.compile(r"([.!?…][\"'”’)\]]?)\s+")
_WORDS = re.compile(r"(?<=\s)(?=\S)")


class PageLike(Protocol):
    """What chunking needs of a page: `app.core.documents.extract.Page` is one."""

    @property
    def number(self) -> int: ...

    @property
    def text(self) -> str: ...


Pages = Iterable[PageLike] | Iterable[tuple[int, str]]


class PageRange(NamedTuple):
    first: int
    last: int

    def __str__(self) -> str:
        return format_pages(self.first, self.last)


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    first_page: int
    last_page: int

    @property
    def pages(self) -> PageRange:
        return PageRange(self.first_page, self.last_page)


def format_pages(first: int, last: int) -> str:
    """"p. 3" for one page, "pp. 12–14" (an en dash) for several."""
    if last < first:
        first, last = last, first
    return f"p. {first}" if first == last else f"pp. {first}\u2013{last}"


def format_page_list(pages: Iterable[int]) -> str:
    """ "p. 3", or "pp. 3–4, 7" for several: runs of pages as ranges, in order, once each."""
    numbers = sorted(set(pages))
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    listed = ", ".join(str(a) if a == b else f"{a}\u2013{b}" for a, b in runs)
    return f"p. {listed}" if len(numbers) == 1 else f"pp. {listed}" if numbers else ""


def estimate_tokens(text: str) -> int:
    """A stated estimate for tiers without a tokenizer: one token per 4 characters,
    rounded up. It is close for English prose; code and some languages use more."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def sample_of(pages: Sequence[tuple[int, str]], chars: int) -> str:
    """About `chars` characters of the text, from its start, middle and end: what a model's
    count of the whole is measured on."""
    text = "\n".join(t for _, t in pages)
    if len(text) <= chars:
        return text
    third = chars // 3
    middle = (len(text) - third) // 2
    return "\n".join((text[:third], text[middle:middle + third], text[-third:]))


def page_tuples(pages: Pages) -> list[tuple[int, str]]:
    """`(number, text)` pairs from Page objects or pairs."""
    out: list[tuple[int, str]] = []
    for page in pages:
        if isinstance(page, tuple):
            number, text = page
        else:
            number, text = page.number, page.text
        out.append((int(number), str(text)))
    return out


def _pieces(text: str, max_tokens: int, count: TokenCounter) -> list[str]:
    """A sentence longer than a chunk, cut at words, or (a very long "word") at characters."""
    if count(text) <= max_tokens:
        return [text]
    words = [w for w in _WORDS.split(text) if w]
    if len(words) > 1:
        out: list[str] = []
        current = ""
        for word in words:
            if current and count(current + word) > max_tokens:
                out.extend(_pieces(current.rstrip(), max_tokens, count))
                current = ""
            current += word
        if current.strip():
            out.extend(_pieces(current.rstrip(), max_tokens, count))
        return [p for p in out if p]
    if len(text) == 1:
        raise ValueError(f"max_tokens={max_tokens} is smaller than one character")
    half = len(text) // 2
    return _pieces(text[:half], max_tokens, count) + _pieces(text[half:], max_tokens, count)


def _sentences(paragraph: str) -> list[str]:
    """The paragraph cut after each sentence's end (the spaces after it dropped)."""
    parts = _SENTENCE_END.split(paragraph)  # text, end, text, end, …, text
    sentences = [text + end for text, end in zip(parts[0::2], parts[1::2], strict=False)]
    if parts[-1]:
        sentences.append(parts[-1])
    return sentences


class _Units:
    """The document cut into units (sentences, or pieces of an over-long one), as
    parallel lists: each unit's text, page and token count, and where paragraphs start.
    `ends[k]` is the rough size of units [0, k) (their tokens, plus one a unit for the
    separators), so the rough size of units [a, b) is ends[b] - ends[a] - 1."""

    def __init__(self, pages: list[tuple[int, str]], max_tokens: int,
                 count: TokenCounter) -> None:
        self.texts: list[str] = []
        self.joined: list[str] = []  # each unit after the separator that joins it on
        self.pages: list[int] = []
        self.tokens: list[int] = []
        self.paragraphs: list[int] = []  # the units that start a paragraph, in order
        for number, text in pages:
            for paragraph in _PARAGRAPHS.split(text):
                paragraph = " ".join(paragraph.split())  # line breaks inside: spaces
                if paragraph:
                    self._add(number, _sentences(paragraph), max_tokens, count)
        self.ends = list(itertools.accumulate((t + 1 for t in self.tokens), initial=0))

    def _add(self, page: int, sentences: list[str], max_tokens: int,
             count: TokenCounter) -> None:
        tokens = list(map(count, sentences))
        if max(tokens) > max_tokens:  # a sentence longer than a chunk: cut it up
            sentences = [piece for sentence, size in zip(sentences, tokens, strict=True)
                         for piece in ([sentence] if size <= max_tokens
                                       else _pieces(sentence, max_tokens, count))]
            tokens = list(map(count, sentences))
        self.paragraphs.append(len(self.texts))
        self.texts += sentences
        self.joined.append(PARAGRAPH + sentences[0])
        self.joined += [SENTENCE + sentence for sentence in sentences[1:]]
        self.pages += [page] * len(sentences)
        self.tokens += tokens

    def __len__(self) -> int:
        return len(self.texts)

    def text(self, first: int, stop: int) -> str:
        """Units [first, stop) joined as they are sent."""
        return self.texts[first] + "".join(self.joined[first + 1:stop])

    def rough(self, first: int, stop: int) -> int:
        """Tokens of units [first, stop) as the sum of the parts plus one a separator;
        the exact count is checked once a chunk is complete."""
        return self.ends[stop] - self.ends[first] - 1

    def last_fitting(self, first: int, tokens: int) -> int:
        """The largest stop such that units [first, stop) are at most `tokens`, roughly."""
        return bisect.bisect_right(self.ends, self.ends[first] + tokens + 1) - 1

    def first_fitting(self, stop: int, tokens: int) -> int:
        """The smallest first such that units [first, stop) are at most `tokens`, roughly."""
        return bisect.bisect_left(self.ends, self.ends[stop] - tokens - 1)

    def first_on_page(self, page: int) -> int:
        """The first unit on page `page` or a later one (len(self) where there is none)."""
        return bisect.bisect_left(self.pages, page)

    def last_paragraph_start(self, after: int, before: int) -> int | None:
        """The last unit strictly between `after` and `before` that starts a paragraph."""
        k = bisect.bisect_left(self.paragraphs, before) - 1
        return self.paragraphs[k] if k >= 0 and self.paragraphs[k] > after else None


def chunk(pages: Pages, *, max_tokens: int, overlap_tokens: int,
          count_tokens: TokenCounter = estimate_tokens,
          max_pages: int | None = None) -> list[Chunk]:
    """The pages' text in chunks of at most `max_tokens` by `count_tokens`, each chunk
    starting with up to `overlap_tokens` of the end of the one before.

    Empty pages give no text; a chunk's page range is that of the text it holds. With
    `max_pages`, no chunk holds text of more pages than that, its overlap included (the
    range is what a citation of the chunk names): a chunk that reaches the limit ends
    where a page starts and the next one starts there, without overlap; an overlap that
    would take a chunk past the limit is shortened.

    It runs on a worker thread beside the GUI thread and holds the GIL while it runs,
    so it is linear by construction: the sentences are split, counted and stored a
    paragraph at a time, and each chunk is found by binary searches over the running
    token sums and joined once.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap_tokens must be at least 0 and less than max_tokens")
    if max_pages is not None and max_pages < 1:
        raise ValueError("max_pages must be at least 1")
    units = _Units(page_tuples(pages), max_tokens, count_tokens)
    chunks: list[Chunk] = []
    first = new = 0  # a chunk is units [first, stop): the overlap [first, new), then new ones
    while new < len(units):
        page_stop = len(units)  # the first unit past the page limit
        if max_pages is not None:
            first = max(first, min(new, units.first_on_page(units.pages[new] - max_pages + 1)))
            page_stop = units.first_on_page(units.pages[first] + max_pages)
        # As many units as fit by the rough count; always at least one new unit.
        stop = min(len(units), max(new + 1, units.last_fitting(first, max_tokens)))
        if stop >= page_stop:
            stop = max(new + 1, page_stop)  # where a page (so a paragraph) starts
        elif stop < len(units):
            # Cut at the last paragraph start in the second half of the chunk, if any.
            cut = units.last_paragraph_start(new, stop)
            if cut is not None and units.rough(first, cut) >= max_tokens // 2:
                stop = cut
        # The exact check by the counter on the text as sent; the rough sum is a guide.
        while count_tokens(units.text(first, stop)) > max_tokens:
            if stop - new > 1:
                stop -= 1
            elif first < new:
                first += 1
            else:
                break  # one unit alone, already measured under max_tokens when it was cut
        chunks.append(Chunk(len(chunks), units.text(first, stop), units.pages[first],
                            units.pages[stop - 1]))
        # The next overlap: the trailing units of this chunk that fit in overlap_tokens,
        # never all of it (a chunk must not be swallowed whole by the next), and no more
        # than leaves room for the next unit.
        first = max(first + 1, units.first_fitting(stop, overlap_tokens))
        if stop < len(units):
            first = max(first, units.first_fitting(stop + 1, max_tokens))
        if stop == page_stop:
            # Cut at the page limit, which binds only where pages hold little text
            # (slides, forms): such pages stand alone, and an overlap would repeat them.
            first = stop
        first, new = min(first, stop), stop
    return chunks


# ---------------------------------------------------------------- the model's own tokenizer


class Tokenizer:
    """Counts tokens with a llama.cpp server's tokenizer: `POST /tokenize` of llama.cpp's
    `llama-server`, or `POST /extras/tokenize/count` of llama-cpp-python's server (the
    embedded runtime's).

    Blocking: call it from a worker thread (`summarize` chunks in one), never on the loop.
    """

    name = "the model's tokenizer"

    def __init__(self, root_url: str, model: str, headers: dict[str, str],
                 verify: ssl.SSLContext | bool, endpoint: str) -> None:
        self._model = model
        self._endpoint = endpoint
        self._http = httpx.Client(base_url=root_url, headers=headers, verify=verify,
                                  follow_redirects=False, trust_env=True,
                                  timeout=TOKENIZE_TIMEOUT_S)

    def __call__(self, text: str) -> int:
        try:
            response = self._http.post(self._endpoint, json=_tokenize_body(self._endpoint,
                                                                           text, self._model))
            response.raise_for_status()
            return _token_count(self._endpoint, response.json())
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            # Mid-document the tokenizer went away: the estimate is better than no summary.
            log.warning("the tokenizer failed (%s); estimating instead", type(e).__name__)
            return estimate_tokens(text)

    def close(self) -> None:
        self._http.close()


_ENDPOINTS = ("/tokenize", "/extras/tokenize/count")


def _tokenize_body(endpoint: str, text: str, model: str) -> dict[str, Any]:
    if endpoint == "/tokenize":
        return {"content": text, "add_special": False}
    return {"input": text, "model": model}


def _token_count(endpoint: str, reply: Any) -> int:
    if endpoint == "/tokenize":
        tokens = reply["tokens"]
        if not isinstance(tokens, list):
            raise TypeError("tokens is not a list")
        return len(tokens)
    count = reply["count"]
    if not isinstance(count, int):
        raise TypeError("count is not a number")
    return count


async def tokenizer_for(client: Any, model: str = "", sample: str = "") -> TokenCounter:
    """The tokenizer of the server `client` (an OpenAIClient) speaks to, if it offers one.
    A server without one (Ollama, a LiteLLM gateway) gets the estimate, scaled to what
    the server counts for `sample` (some of the text to be counted) where one is given;
    one that can't be reached gets the plain estimate."""
    from app.core.llm.openai_client import OpenAIClient

    if not isinstance(client, OpenAIClient):
        return estimate_tokens
    counter = await _server_tokenizer(client, model)
    if counter is estimate_tokens and sample:
        return await measured_estimate(client, model, sample)
    return counter


class ScaledEstimate:
    """The estimate times `scale`: what a server's model counted for a sample of the text,
    against the estimate of it. Never below the plain estimate."""

    name = "an estimate measured against the model"

    def __init__(self, scale: float) -> None:
        self.scale = max(1.0, scale)

    def __call__(self, text: str) -> int:
        return math.ceil(estimate_tokens(text) * self.scale)


async def measured_estimate(client: Any, model: str, sample: str) -> TokenCounter:
    """The estimate, scaled by the server's own count of `sample`: one request that asks
    for one token and reads the prompt tokens its usage reports. A model whose tokens are
    shorter than 4 characters for this text (code, many languages, a small vocabulary)
    would otherwise be sent parts longer than its context. The chat template's few tokens
    are counted as the sample's, which errs on the safe side. The plain estimate where the
    server reports no usage or refuses the request."""
    from app.core.llm.openai_client import Finished

    counted = 0
    try:
        stream = client.stream_chat([{"role": "user", "content": sample}], model=model,
                                    max_tokens=1)
        async with contextlib.aclosing(stream):
            async for event in stream:
                if isinstance(event, Finished) and event.usage is not None:
                    counted = event.usage.prompt_tokens
    except errors.SwitchboardError as e:
        log.info("the node did not count a sample (%s); estimating", e.detail or e.title)
        return estimate_tokens
    if counted <= 0:
        return estimate_tokens
    return ScaledEstimate(counted / estimate_tokens(sample))


async def _server_tokenizer(client: Any, model: str) -> TokenCounter:
    """The server's own tokenizer endpoint, or `estimate_tokens` where it has none."""
    from app.core.llm.openai_client import tls_context

    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    root = client.root_url
    try:
        verify: ssl.SSLContext | bool = tls_context(client.ca_bundle) \
            if urlsplit(root).scheme == "https" else True
        async with httpx.AsyncClient(base_url=root, headers=headers, verify=verify,
                                     follow_redirects=False, trust_env=True,
                                     timeout=TOKENIZE_TIMEOUT_S) as http:
            for endpoint in _ENDPOINTS:
                response = await http.post(endpoint,
                                           json=_tokenize_body(endpoint, "Hello.", model))
                if response.status_code == 200:
                    try:
                        _token_count(endpoint, response.json())
                    except (ValueError, KeyError, TypeError):
                        continue
                    return Tokenizer(root, model, headers, verify, endpoint)
    except (httpx.HTTPError, errors.SwitchboardError):
        pass
    return estimate_tokens
