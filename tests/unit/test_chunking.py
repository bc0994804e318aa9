"""Chunking: every word kept, each chunk knowing its pages, neighbours overlapping, cuts at
sentence and paragraph ends, no chunk longer than the counter allows nor (where asked)
spanning more pages than a citation should."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from app.core.documents.chunking import (
    Chunk,
    ScaledEstimate,
    chunk,
    estimate_tokens,
    format_page_list,
    format_pages,
    sample_of,
)


def words(text: str) -> int:
    return len(text.split())


def doubled(text: str) -> int:
    """A counter that is far from additive: every chunk measured by it is checked whole."""
    return 2 * estimate_tokens(text) + 3


def sentences_on(page: int, n: int, paragraph_every: int = 0) -> str:
    out = []
    for k in range(n):
        out.append(f"Page{page} sentence{k} says something plain.")
        if paragraph_every and (k + 1) % paragraph_every == 0:
            out.append("\n\n")
        else:
            out.append(" ")
    return "".join(out).strip()


def document(pages: int = 6, per_page: int = 12) -> list[tuple[int, str]]:
    return [(p, sentences_on(p, per_page, paragraph_every=4)) for p in range(1, pages + 1)]


SENTENCE = re.compile(r"Page(\d+) sentence(\d+) says something plain\.")


def test_format_pages() -> None:
    assert format_pages(3, 3) == "p. 3"
    assert format_pages(12, 14) == "pp. 12\u201314"  # an en dash, not a hyphen
    assert format_pages(14, 12) == "pp. 12\u201314"


def test_estimate_is_four_characters_a_token_rounded_up() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("x" * 400) == 100


@pytest.mark.parametrize("counter", [estimate_tokens, words, doubled])
@pytest.mark.parametrize("max_tokens", [25, 60, 200])
def test_no_chunk_is_over_max_tokens_by_the_counter(counter: object, max_tokens: int) -> None:
    chunks = chunk(document(), max_tokens=max_tokens, overlap_tokens=max_tokens // 5,
                   count_tokens=counter)  # type: ignore[arg-type]
    assert chunks
    assert all(counter(c.text) <= max_tokens for c in chunks)  # type: ignore[operator]
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_every_sentence_is_kept_and_knows_its_page() -> None:
    pages = document()
    chunks = chunk(pages, max_tokens=60, overlap_tokens=12)
    seen = set()
    for c in chunks:
        found = [(int(p), int(k)) for p, k in SENTENCE.findall(c.text)]
        assert found, c
        # The chunk's page range is exactly the pages of the text it holds.
        assert (c.first_page, c.last_page) == (found[0][0], found[-1][0])
        assert c.pages == (c.first_page, c.last_page)
        seen.update(found)
    assert seen == {(p, k) for p in range(1, 7) for k in range(12)}
    # In page order, and a multi-page chunk exists at this size.
    assert [c.first_page for c in chunks] == sorted(c.first_page for c in chunks)
    assert any(c.first_page < c.last_page for c in chunks)


def test_neighbours_overlap_by_whole_sentences_within_the_overlap() -> None:
    chunks = chunk(document(), max_tokens=60, overlap_tokens=15)
    assert len(chunks) > 3
    for before, after in zip(chunks, chunks[1:], strict=False):
        a = SENTENCE.findall(before.text)
        b = SENTENCE.findall(after.text)
        shared = [s for s in b if s in a]
        assert shared, (before, after)
        assert shared == a[-len(shared):] == b[: len(shared)]  # the tail, then the head
        assert len(shared) < len(a)  # never a whole chunk again
        overlap = " ".join(f"Page{p} sentence{k} says something plain." for p, k in shared)
        assert estimate_tokens(overlap) <= 15


def test_no_overlap_when_zero() -> None:
    chunks = chunk(document(), max_tokens=60, overlap_tokens=0)
    all_found = [s for c in chunks for s in SENTENCE.findall(c.text)]
    assert len(all_found) == len(set(all_found)) == 72


def test_chunks_end_at_sentence_ends_and_prefer_paragraph_ends() -> None:
    chunks = chunk(document(per_page=12), max_tokens=80, overlap_tokens=0)
    assert all(c.text.endswith("plain.") for c in chunks)
    # Paragraphs are four sentences (~44 tokens): the cut falls at a paragraph end, so
    # every chunk starts with a paragraph's first sentence.
    firsts = [int(SENTENCE.search(c.text).group(2)) for c in chunks]  # type: ignore[union-attr]
    assert all(k % 4 == 0 for k in firsts), firsts


def test_paragraphs_are_kept_apart_and_line_breaks_inside_become_spaces() -> None:
    (only,) = chunk([(1, "First line\nsame paragraph.\n\n\nSecond paragraph.")],
                    max_tokens=100, overlap_tokens=0)
    assert only.text == "First line same paragraph.\n\nSecond paragraph."


def test_empty_pages_give_no_text_and_no_chunk() -> None:
    assert chunk([], max_tokens=50, overlap_tokens=5) == []
    assert chunk([(1, ""), (2, "  \n\n \t"), (3, "")], max_tokens=50, overlap_tokens=5) == []
    chunks = chunk([(1, ""), (2, "Only page two has text."), (3, "   ")],
                   max_tokens=50, overlap_tokens=5)
    assert chunks == [Chunk(0, "Only page two has text.", 2, 2)]


def test_an_empty_page_between_two_is_inside_the_range() -> None:
    (only,) = chunk([(1, "One."), (2, ""), (3, "Three.")], max_tokens=50, overlap_tokens=0)
    assert (only.first_page, only.last_page) == (1, 3)
    assert only.text == "One.\n\nThree."


def test_a_sentence_longer_than_a_chunk_is_cut_at_words_and_a_long_word_at_letters() -> None:
    long_sentence = " ".join(f"word{i}" for i in range(100)) + "."
    chunks = chunk([(4, long_sentence)], max_tokens=20, overlap_tokens=0)
    assert len(chunks) > 1
    assert all(estimate_tokens(c.text) <= 20 for c in chunks)
    assert " ".join(c.text for c in chunks) == long_sentence
    assert {c.first_page for c in chunks} == {4}

    blob = "x" * 1000
    chunks = chunk([(1, blob)], max_tokens=30, overlap_tokens=0)
    assert "".join(c.text for c in chunks).replace(" ", "") == blob
    assert all(estimate_tokens(c.text) <= 30 for c in chunks)


@dataclass(frozen=True)
class Page:
    number: int
    text: str


def test_page_objects_are_accepted_like_pairs() -> None:
    pairs = document(pages=3)
    objects = [Page(n, t) for n, t in pairs]
    assert chunk(objects, max_tokens=50, overlap_tokens=10) == \
        chunk(pairs, max_tokens=50, overlap_tokens=10)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_bad_sizes_are_refused(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk(document(), max_tokens=max_tokens, overlap_tokens=overlap)


def test_chunking_is_linear_in_the_text() -> None:
    """It runs beside the GUI thread, holding the GIL: the counter is asked once a
    sentence and about once a chunk, however long the document, and nothing is re-read
    for each sentence added to a chunk."""
    calls = 0

    def counting(text: str) -> int:
        nonlocal calls
        calls += 1
        return estimate_tokens(text)

    pages = [(page, sentences_on(page, 40, paragraph_every=4)) for page in range(1, 201)]
    chunks = chunk(pages, max_tokens=200, overlap_tokens=20, count_tokens=counting)
    assert calls <= 200 * 40 + 2 * len(chunks)
    assert chunks == chunk(pages, max_tokens=200, overlap_tokens=20)


def test_a_sample_takes_the_start_middle_and_end_of_a_long_text() -> None:
    pages = [(1, "a" * 1000), (2, "b" * 1000), (3, "c" * 1000)]
    sample = sample_of(pages, 300)
    assert sample == "\n".join(("a" * 100, "b" * 100, "c" * 100))
    assert sample_of([(1, "short")], 300) == "short"


def test_a_measured_estimate_never_counts_fewer_than_the_estimate() -> None:
    text = "x" * 400
    assert ScaledEstimate(2.5)(text) == 250  # 100 estimated, the model counted 2.5 times
    assert ScaledEstimate(0.5)(text) == estimate_tokens(text) == 100


def short_pages(pages: int = 12) -> list[tuple[int, str]]:
    """Pages of one short line each, as in a deck of slides."""
    return [(p, f"This is page {p}. Page{p} sentence0 says something plain.")
            for p in range(1, pages + 1)]


def test_a_part_holds_at_most_max_pages_and_short_pages_are_not_repeated() -> None:
    # Unlimited, twelve short pages are one part, and its one citation all twelve pages.
    assert [c.pages for c in chunk(short_pages(), max_tokens=1500, overlap_tokens=120)] == [
        (1, 12)]
    chunks = chunk(short_pages(), max_tokens=1500, overlap_tokens=120, max_pages=4)
    assert [c.pages for c in chunks] == [(1, 4), (5, 8), (9, 12)]
    # Cut where a page starts, and no page's text repeated in the next part.
    assert [c.text.split(".")[0] for c in chunks] == [
        "This is page 1", "This is page 5", "This is page 9"]
    found = [s for c in chunks for s in SENTENCE.findall(c.text)]
    assert found == [(str(p), "0") for p in range(1, 13)]


def test_the_page_limit_shortens_an_overlap_that_would_pass_it() -> None:
    pages = document(pages=4, per_page=12)  # ~130 tokens a page
    chunks = chunk(pages, max_tokens=100, overlap_tokens=40, max_pages=1)
    assert all(c.first_page == c.last_page for c in chunks)
    seen = {(int(p), int(k)) for c in chunks for p, k in SENTENCE.findall(c.text)}
    assert seen == {(p, k) for p in range(1, 5) for k in range(12)}
    # Within a page, neighbours still overlap.
    assert any(set(SENTENCE.findall(a.text)) & set(SENTENCE.findall(b.text))
               for a, b in zip(chunks, chunks[1:], strict=False))


def test_pages_of_ordinary_text_reach_the_token_limit_first() -> None:
    assert chunk(document(), max_tokens=60, overlap_tokens=12, max_pages=4) == \
        chunk(document(), max_tokens=60, overlap_tokens=12)


def test_max_pages_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        chunk(document(), max_tokens=60, overlap_tokens=12, max_pages=0)


def test_a_page_list_joins_runs_of_pages() -> None:
    assert format_page_list([3, 4, 7]) == "pp. 3\u20134, 7"
    assert format_page_list([7, 3, 3]) == "pp. 3, 7"
    assert format_page_list([5]) == "p. 5"
    assert format_page_list([9, 1, 2, 3, 5, 6]) == "pp. 1\u20133, 5\u20136, 9"
    assert format_page_list([]) == ""
