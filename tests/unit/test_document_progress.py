"""What a summary's progress reads as: "reading…", then "summarising part n of m", then
"combining the parts", each short enough for a narrow bar, with the time left after it;
and the bar is not full while the parts are still being combined."""

from __future__ import annotations

from app.core.documents.progress import (
    READING,
    progress_fraction,
    progress_text,
    stage,
    stage_of,
    time_left,
)
from app.core.documents.summarize import Progress


def run_of(parts: int) -> list[Progress]:
    """The progress a summary in `parts` parts reports, from the first to the last."""
    out = [Progress(0, parts, 0, 12, None)]
    out += [Progress(done, parts, done * 4, 12, 20.0 * (parts - done + 1))
            for done in range(1, parts + 1)]
    out.append(Progress(parts, parts, 12, 12, 25.0, combining=True))
    out.append(Progress(parts, parts, 12, 12, 0.0, combining=True, finished=True))
    return out


def test_the_stages_read_as_the_user_follows_them() -> None:
    texts = [progress_text(p) for p in run_of(3)]
    assert texts == [
        "Summarising part 1 of 3",  # no part timed yet: no time left
        "Summarising part 2 of 3 · about 60 s left",
        "Summarising part 3 of 3 · about 40 s left",
        "Summarising part 3 of 3 · about 20 s left",
        "Combining the parts · about 25 s left",
        "Combining the parts",
    ]
    assert [stage_of(t) for t in texts] == [stage(p) for p in run_of(3)]
    assert stage_of(progress_text(run_of(3)[-2])) == "combining the parts"
    assert stage_of(READING.capitalize()) == READING == "reading…"


def test_the_stage_is_short_enough_for_a_narrow_bar() -> None:
    # The panel's bar, in a panel 220 pixels wide, has room for about 30 characters; the
    # GUI tests measure it. A stage, even of a thousand-part file, is shorter.
    stages = [progress_text(p).split(" · ")[0] for p in run_of(999)]
    assert max(map(len, stages)) == len("Summarising part 999 of 999") == 27
    assert max(len(time_left(s)) for s in (1, 59.4, 89, 90, 3600)) <= len("about 60 min left")


def test_time_left_in_seconds_then_minutes() -> None:
    assert [time_left(s) for s in (None, 0.0, 0.3, 40.2, 89, 90, 200)] == [
        "", "", "about 1 s left", "about 40 s left", "about 89 s left", "about 2 min left",
        "about 3 min left"]


def test_the_bar_fills_only_when_the_summary_is_made() -> None:
    fractions = [progress_fraction(p) for p in run_of(3)]
    assert fractions == [0.0, 0.25, 0.5, 0.75, 0.75, 1.0]
    assert progress_fraction(Progress(0, 0, 0, 0, None)) == 0.0
