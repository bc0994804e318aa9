"""What a summary's progress reads as: the stage it is at ("summarising part 3 of 12",
"combining the parts") and the time left, short enough for a narrow progress bar, and
how far along it is for the bar itself."""

from __future__ import annotations

from app.core.documents.summarize import Progress

READING = "reading…"  # the file is read and cut into parts; nothing is summarised yet
COMBINING = "combining the parts"
SEPARATOR = " · "  # between the stage and the time left in `progress_text`
MINUTE_S = 90  # from here on, time left is said in minutes


def stage(p: Progress) -> str:
    """ "summarising part 3 of 12" or "combining the parts", as a document's status."""
    if p.combining:
        return COMBINING
    # The part being summarised is the one after those done (several may run at once:
    # the count still only grows).
    return f"summarising part {min(p.chunks_done + 1, p.chunks_total)} of {p.chunks_total}"


def time_left(seconds: float | None) -> str:
    """ "about 40 s left", "about 3 min left"; "" while unknown or when done."""
    if not seconds or seconds <= 0:
        return ""
    if seconds < MINUTE_S:
        return f"about {max(1, round(seconds))} s left"
    return f"about {round(seconds / 60)} min left"


def progress_text(p: Progress) -> str:
    """ "Summarising part 3 of 12 · about 40 s left": the stage, then the time left where
    known. `stage_of` reads the stage back."""
    left = "" if p.finished else time_left(p.seconds_left)
    words = stage(p).capitalize()
    return f"{words}{SEPARATOR}{left}" if left else words


def progress_fraction(p: Progress) -> float:
    """How far along, 0..1: the combining pass counts as one more part, as it does in
    the time left, so the bar is not full while the parts are still being combined."""
    if p.finished:
        return 1.0
    return p.chunks_done / (p.chunks_total + 1) if p.chunks_total else 0.0


def without_time(text: str) -> str:
    """A `progress_text` without the time left: "Summarising part 3 of 12"."""
    return text.split(SEPARATOR, 1)[0].strip()


def stage_of(text: str) -> str:
    """The stage a `progress_text` names, as a status: "summarising part 3 of 12"."""
    words = without_time(text)
    return words[:1].lower() + words[1:]
