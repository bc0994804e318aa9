"""Whether Switchboard has somewhere to answer from yet: the app shows its first-run
guide when it has not (issue 15), rather than a tray icon and a question that can only
fail."""

from __future__ import annotations

from app.core.settings import Settings


def needs_setup(settings: Settings) -> bool:
    """True while neither an office node address nor a model file on this computer is set.

    Either one is enough to stop asking: a half-finished choice (say, Local GPUs chosen
    with the office's address still set) is for Settings to fix, not for a guide that
    greets the user at every start.
    """
    return not settings.node_urls and not settings.model_path
