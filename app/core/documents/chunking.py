"""Cut a document's pages into chunks that fit the executing model, each knowing its pages.

Chunks are measured with a token counter: the model's own tokenizer where the tier offers
one (`tokenizer_for`), otherwise `estimate_tokens`. They end on a sentence boundary (a
paragraph boundary where one is near), neighbours overlap by a few sentences so a point
that straddles a cut is seen whole at least once, and no chunk is longer than
`max_tokens` by the counter given.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from time import perf_counter, sleep
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

# Chunking is pure Python on a worker thread beside the GUI thread, and holds the GIL the
# whole time it runs. CPython hands the GIL to a waiting thread only every switch
# interval (5 ms) at best, and the UI-stall benchmark saw the GUI thread wait 20-30 ms
# while 100 pages were chunked. So chunking sleeps a moment every couple of milliseconds,
# which lets the GUI thread in at once.
_WORK_S = 0.002
_BREATHER_S = 0.0002
_PARAGRAPHS = re.compile(r"\n\s*\n")
# A sentence ends at . ! ? … (and a closing quote or bracket) followed by white space.
# Matched forwards from the punctuation: look-behinds tried at every space were half of
# chunking's time, which runs beside the GUI thread (the GIL is shared).
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


class _Unit(NamedTuple):  # a tuple: made once a sentence, ~3x cheaper than a dataclass
    text: str
    page: int
    sep: str  # what joins it to the unit before: PARAGRAPH or SENTENCE
    tokens: int


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


def _breathers() -> Callable[[], None]:
    """A call that sleeps `_BREATHER_S` once `_WORK_S` has passed since it last did.
    Where the system's sleeps are coarser (older Windows rounds them up to ~15 ms), the
    work between them grows to match, so the pauses stay about a tenth of the time."""
    last = perf_counter()
    work = _WORK_S

    def breathe() -> None:
        nonlocal last, work
        now = perf_counter()
        if now - last >= work:
            sleep(_BREATHER_S)  # gives up the GIL; a waiting thread takes it
            last = perf_counter()
            work = max(_WORK_S, 10 * (last - now))

    return breathe


def _units(pages: list[tuple[int, str]], max_tokens: int, count: TokenCounter,
           breathe: Callable[[], None]) -> list[_Unit]:
    units: list[_Unit] = []
    for number, text in pages:
        for paragraph in _PARAGRAPHS.split(text):
            breathe()
            paragraph = " ".join(paragraph.split())  # line breaks inside a paragraph: spaces
            if not paragraph:
                continue
            sep = PARAGRAPH
            for sentence in _sentences(paragraph):
                for piece in _pieces(sentence, max_tokens, count) if sentence else []:
                    units.append(_Unit(piece, number, sep, count(piece)))
                    sep = SENTENCE
    return units


def _sentences(paragraph: str) -> Iterator[str]:
    """The paragraph cut after each sentence's end (the spaces after it dropped)."""
    start = 0
    for end in _SENTENCE_END.finditer(paragraph):
        yield paragraph[start:end.start() + len(end.group(1))]
        start = end.end()
    yield paragraph[start:]


def _join(units: Sequence[_Unit]) -> str:
    return "".join((u.sep if i else "") + u.text for i, u in enumerate(units))


def _rough(units: Sequence[_Unit]) -> int:
    """Tokens of the joined units as the sum of the parts plus one a separator; the exact
    count is checked once a chunk is complete."""
    return sum(u.tokens for u in units) + max(0, len(units) - 1)


def chunk(pages: Pages, *, max_tokens: int, overlap_tokens: int,
          count_tokens: TokenCounter = estimate_tokens) -> list[Chunk]:
    """The pages' text in chunks of at most `max_tokens` by `count_tokens`, each chunk
    starting with up to `overlap_tokens` of the end of the one before.

    Empty pages give no text; a chunk's page range is that of the text it holds.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap_tokens must be at least 0 and less than max_tokens")
    breathe = _breathers()
    units = _units(page_tuples(pages), max_tokens, count_tokens, breathe)
    chunks: list[Chunk] = []
    overlap: list[_Unit] = []
    i = 0
    while i < len(units):
        breathe()
        new: list[_Unit] = [units[i]]  # always at least one new unit: the loop moves on
        i += 1
        # Kept as a running sum: re-adding the chunk for each sentence made chunking
        # quadratic, and it runs beside the GUI thread (the GIL is shared).
        total = _rough(overlap + new)
        while i < len(units) and total + 1 + units[i].tokens <= max_tokens:
            new.append(units[i])
            total += 1 + units[i].tokens
            i += 1
        if i < len(units):
            # Cut at the last paragraph start in the second half of the chunk, if any.
            half = max_tokens // 2
            before = total  # _rough(overlap + new[:j + 1]) as j goes down
            for j in range(len(new) - 1, 0, -1):
                before -= new[j].tokens + 1
                if new[j].sep == PARAGRAPH and before >= half:
                    i -= len(new) - j
                    new = new[:j]
                    break
        # The exact check by the counter on the text as sent; the rough sum is a guide.
        while count_tokens(_join(overlap + new)) > max_tokens:
            if len(new) > 1:
                new.pop()
                i -= 1
            elif overlap:
                overlap = overlap[1:]
            else:
                break  # one unit alone, already measured under max_tokens when it was cut
        body = overlap + new
        chunks.append(Chunk(len(chunks), _join(body), body[0].page, body[-1].page))
        overlap = _overlap(body, overlap_tokens)
        if i < len(units):
            while overlap and _rough(overlap + [units[i]]) > max_tokens:
                overlap = overlap[1:]
    return chunks


def _overlap(body: list[_Unit], overlap_tokens: int) -> list[_Unit]:
    """The trailing sentences of `body` that fit in `overlap_tokens`, never all of it
    (a chunk must not be swallowed whole by the next)."""
    taken: list[_Unit] = []
    total = -1  # _rough of the units taken so far, plus the separator before the next
    for unit in reversed(body[1:]):
        if total + 1 + unit.tokens > overlap_tokens:
            break
        total += 1 + unit.tokens
        taken.append(unit)
    return taken[::-1]


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
