"""Every error a user can see says what happened and what to do, in plain words."""

import pytest

from app.core import errors


def all_error_classes() -> list[type[errors.SwitchboardError]]:
    found, todo = [], [errors.SwitchboardError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_each_error_has_a_message_and_a_hint(cls: type[errors.SwitchboardError]) -> None:
    error = cls("detail text", partial="half an answer", tier="cloud planner")
    assert error.title.endswith(".") and "{" not in error.title
    assert error.hint and "HTTP" not in error.hint
    assert "detail text" in error.user_text()
    assert error.partial == "half an answer"


def test_the_tier_is_named_in_the_message() -> None:
    assert errors.NodeUnreachable(tier="office node").title == "The office node can't be reached."
    assert "cloud planner" in errors.AuthFailed(tier="cloud planner").title


def test_rate_limited_says_when_to_try_again() -> None:
    assert "7 seconds" in errors.RateLimited(retry_after=7.2).hint
    assert "minute" in errors.RateLimited().hint
