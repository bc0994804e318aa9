"""The typed errors of Switchboard, each with a message a department user understands.

Widgets show `error.message` and `error.hint`; they never parse HTTP. An error raised
while an answer was streaming carries the text received so far in `partial`, so
nothing the user already saw is lost.
"""

from __future__ import annotations

import sys


class SwitchboardError(Exception):
    """Base of every error the app shows to a user."""

    message = "Something went wrong."
    hint = "Try again. If it keeps happening, ask IT and mention what you were doing."

    def __init__(self, detail: str = "", *, partial: str = "", tier: str = "office node") -> None:
        self.detail = detail
        self.partial = partial
        self.tier = tier  # which tier failed, in the user's words: "office node", "cloud planner"
        super().__init__(self.user_text())

    @property
    def title(self) -> str:
        """The one-line message with the tier named, e.g. "The {tier} is busy."."""
        return self.message.format(tier=self.tier)

    def user_text(self) -> str:
        """The message, the technical detail (if any) and the hint, for a dialog or stderr."""
        text = self.title
        if self.detail:
            text += f" ({self.detail})"
        return f"{text} {self.hint}"


class SettingsError(SwitchboardError):
    message = "That setting is not valid."
    hint = "Check the value and try again."


class PolicyForbids(SwitchboardError):
    message = "IT's policy on this computer does not allow that."
    hint = "Use what the policy allows (`switchboard doctor` lists it), or ask IT."


class NodeUnreachable(SwitchboardError):
    message = "The {tier} can't be reached."
    hint = "Check the office node address in Settings and that you're on the office network."


class TLSFailed(NodeUnreachable):
    message = "The {tier}'s certificate could not be verified."
    hint = "Ask IT for the office's certificate (CA bundle) and set it in Settings."


class AuthFailed(SwitchboardError):
    message = "The {tier} refused your access token."
    hint = "Enter a valid token in Settings, or ask IT for one."


class ModelNotFound(SwitchboardError):
    message = "The {tier} doesn't have that model."
    hint = "Pick one of the node's models in Settings."


class ContextTooLong(SwitchboardError):
    message = "This conversation is too long for the model."
    hint = "Start a new chat, or shorten what you sent."


class RateLimited(SwitchboardError):
    message = "The {tier} is busy."

    def __init__(self, detail: str = "", *, partial: str = "", tier: str = "office node",
                 retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(detail, partial=partial, tier=tier)

    @property
    def hint(self) -> str:  # type: ignore[override]
        if self.retry_after is not None:
            return f"Try again in {max(1, round(self.retry_after))} seconds."
        return "Try again in a minute."


class ServerError(SwitchboardError):
    message = "The {tier} had an internal error."
    hint = "Try again in a moment. If it keeps happening, tell IT."


class RequestRejected(SwitchboardError):
    message = "The {tier} refused the request."
    hint = "Try rephrasing it or starting a new chat."


class StreamInterrupted(SwitchboardError):
    message = "The connection to the {tier} broke while it was answering."
    hint = "The part already received is kept. Send again to get a complete answer."


class StreamStalled(StreamInterrupted):
    message = "The {tier} stopped answering part-way through."


class MalformedResponse(SwitchboardError):
    message = "The {tier} sent a reply Switchboard could not understand."
    hint = "Check that the address in Settings points at an OpenAI-compatible server."


class NotConfigured(SwitchboardError):
    message = "No office node is set up yet."
    hint = "Open Settings and enter the office node address IT gave you."


class KeyStoreUnavailable(SwitchboardError):
    """No secure OS key store (or it could not be read or written): nothing was saved
    anywhere, and the cloud planner, which needs the user's key, stays off."""

    message = "No secure key store on this computer; cloud planning is off."

    @property
    def hint(self) -> str:  # type: ignore[override]
        return ("Keys and tokens can't be saved, and none was written anywhere. "
                + KEY_STORE_HELP.get(sys.platform, KEY_STORE_HELP["linux"]))


class KeyStoreLocked(KeyStoreUnavailable):
    """The key store is there but locked (not unlocked at sign-in, or locked since)."""

    message = "The system key store is locked."

    @property
    def hint(self) -> str:  # type: ignore[override]
        return ("Unlock it (sign out and in again, or open Passwords and Keys and unlock or "
                "create the Login keyring), then try again. Nothing was saved anywhere else.")


# What a user without a key store can do about it, by platform, in their words.
KEY_STORE_HELP = {
    "win32": "Ask IT: Windows Credential Manager is turned off on this computer.",
    "darwin": "Ask IT: the macOS Keychain can't be used on this computer.",
    "linux": ("On Linux, install a key store and sign in to your desktop again: "
              "gnome-keyring (GNOME and most desktops; `sudo apt install gnome-keyring`) "
              "or KWallet (KDE). Or ask IT."),
}


class StorageFailed(SwitchboardError):
    message = "Switchboard could not save to disk."
    hint = "Free some disk space, then try again. Nothing already saved was lost."


class HistoryDamaged(StorageFailed):
    """The chat history database is corrupt: not a database, or a damaged page.

    `kept_as` is where the damaged file was moved aside (empty when it wasn't), so the
    hint can tell IT where to recover it from. A StorageFailed, so code that already copes
    with a history it can't write to copes with this too.
    """

    message = "Your chat history file was damaged."

    def __init__(self, detail: str = "", *, partial: str = "", tier: str = "office node",
                 kept_as: str = "") -> None:
        self.kept_as = kept_as
        super().__init__(detail, partial=partial, tier=tier)

    @property
    def hint(self) -> str:  # type: ignore[override]
        if self.kept_as:
            return ("It was kept aside and a new, empty history started. "
                    f"IT can try to recover it from {self.kept_as}.")
        return ("Restart Switchboard: it keeps a damaged history aside and starts a new one. "
                "If this keeps happening, tell IT.")


class AnotherInstanceRunning(SwitchboardError):
    message = "Switchboard is already running."
    hint = "Look for its icon in the system tray."


class ModelRejected(SwitchboardError):
    message = "That file can't be used as a model."
    hint = "Choose a .gguf model file (for example Qwen2.5-32B-Instruct Q4_K_M), or download one."


class DownloadFailed(SwitchboardError):
    message = "The model download did not finish."
    hint = "Check the network and try again; the part already downloaded is kept and resumed."


class NotEnoughDisk(SwitchboardError):
    message = "There isn't enough free disk space for this model."
    hint = "Free some space, or choose a smaller model."


class RuntimeCrashed(SwitchboardError):
    message = "The model on your GPUs stopped unexpectedly."
    hint = "The part of the answer already received is kept. Switchboard restarts it; send again."


class RuntimeGaveUp(RuntimeCrashed):
    message = "The model on your GPUs keeps crashing, so Switchboard stopped restarting it."
    hint = "Try a smaller context, fewer GPU layers, or a smaller model in Settings."


class BudgetExhausted(SwitchboardError):
    """A cloud call was refused before it was made: it could cost more than is left.

    `until` is the day, in words ("1 February 2025"), the next budget month starts (UTC),
    when planning in the cloud can start again without raising the budget.
    """

    message = "This month's cloud planning budget is used up."

    def __init__(self, detail: str = "", *, partial: str = "", tier: str = "cloud planner",
                 until: str = "") -> None:
        self.until = until
        super().__init__(detail, partial=partial, tier=tier)

    @property
    def hint(self) -> str:  # type: ignore[override]
        return (f"Planning runs locally until {self.until or 'next month'}, "
                "or raise the budget in Settings.")


class LedgerBusy(SwitchboardError):
    message = "The cloud planning budget is being updated by another Switchboard window."
    hint = "Try again in a moment. If it keeps happening, close other Switchboard windows."


class LedgerDamaged(StorageFailed):
    """The budget ledger is not a database, or has a damaged page.

    Unlike the chat history it is never moved aside and restarted empty: that would hand
    back budget already spent. Cloud planning stays off until IT repairs or removes it.
    """

    message = "The file that keeps track of your cloud planning budget is damaged."
    hint = "Cloud planning is off; Switchboard plans locally. Ask IT to repair the budget file."


class CloudKeyRejected(AuthFailed):
    """OpenRouter answered 401: the key is unknown, disabled or deleted."""

    message = "The {tier} rejected your OpenRouter key."
    hint = ("Paste a valid key in Settings → Cloud planner, or remove it; "
            "planning runs locally meanwhile.")


class CloudCreditExhausted(SwitchboardError):
    """OpenRouter answered 402: the account's credit or the key's own limit is used up."""

    message = "Cloud credit or the key's limit is used up."
    hint = ("Planning runs locally until credit is added at openrouter.ai or the key's "
            "limit is raised or resets.")


class CloudProviderUnavailable(ServerError):
    """OpenRouter answered 503: no provider of the chosen model can take the request now."""

    message = "The {tier} has no provider for that model available right now."
    hint = "Try again in a minute, or pick another planner model in Settings."

    def __init__(self, detail: str = "", *, partial: str = "", tier: str = "office node",
                 retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(detail, partial=partial, tier=tier)


class CloudPlanningOff(SwitchboardError):
    message = "Cloud planning is off."
    hint = ("Planning runs locally. To plan in the cloud, set a monthly budget and your "
            "OpenRouter key in Settings (IT may have turned it off for this computer).")


SUPPORTED_DOCUMENTS = "PDF, Word (.docx), text, Markdown and HTML"


class DocumentRejected(SwitchboardError):
    """A document was refused before or while it was read, and nothing of it was used.

    `reason` is the plain sentence a user reads ("report.pdf is too big (350 MB; the
    limit is 200 MB)."); `code` says the same for code ("too_big", "folder", "not_file",
    "outside_link", "missing", "unreadable", "empty", "unsupported", "damaged",
    "not_text", "password", "zip_bomb", "unsafe_xml", "too_slow", "too_much_memory",
    "crashed").
    """

    message = "Switchboard can't read this file."
    hint = f"Switchboard reads {SUPPORTED_DOCUMENTS} files."

    def __init__(self, detail: str = "", *, partial: str = "", tier: str = "",
                 reason: str = "", code: str = "unsupported", hint: str = "") -> None:
        self.reason = reason
        self.code = code
        if hint:
            self.hint = hint
        super().__init__(detail, partial=partial, tier=tier)

    @property
    def title(self) -> str:
        return self.reason or self.message


class LocalOnlyRefused(SwitchboardError):
    """A request to the cloud carried text marked local-only; nothing was sent."""

    message = "Switchboard kept document or pasted text from going to the cloud."
    hint = "The request is handled on the office's hardware instead; nothing was sent."


class NothingToAsk(SwitchboardError):
    message = "This document has no text to answer from."
    hint = "Wait until it has been read, or drop the file again."


class StepFailed(SwitchboardError):
    message = "A step of the plan did not finish."
    hint = "Retry it: the steps that finished are kept."


class PlanNotRun(SwitchboardError):
    message = "You stopped the plan before it ran."
    hint = "Send the request again to plan it anew."


class NothingToSummarise(SwitchboardError):
    message = "This document has no text to summarise."
    hint = ("If it is a scan, it needs text recognition (OCR) first; otherwise check that it "
            "opens and shows text.")
