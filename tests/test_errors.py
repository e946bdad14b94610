"""The error taxonomy: stable codes, legacy names, and the wire round trip."""

from __future__ import annotations

import msgspec
import pytest

from bridge import errors
from bridge.errors import (
    BridgeError,
    ErrorCode,
    ErrorInfo,
    LLMConnectionError,
    LLMError,
    LLMRateLimitError,
    LLMResponseError,
    LLMTimeoutError,
    ModelNotFoundError,
    error_from_info,
)


def test_legacy_names_of_the_older_bridge_are_llm_errors() -> None:
    """Users of the older LM Studio bridge catch these names; they stay in the tree."""
    for cls in (LLMTimeoutError, LLMConnectionError, LLMRateLimitError, LLMResponseError, ModelNotFoundError):
        assert issubclass(cls, LLMError)
        assert issubclass(cls, BridgeError)


def test_every_code_is_stable_text() -> None:
    """The codes programs match on are exactly these strings."""
    assert {code.value for code in ErrorCode} >= {
        "model_not_found",
        "backend_unavailable",
        "timeout",
        "rate_limited",
        "busy",
        "cancelled",
        "bad_request",
        "backend_error",
        "tool_error",
        "child_server_down",
        "internal",
    }


def test_str_starts_with_the_code() -> None:
    """The text form leads with the machine code, then the advice."""
    err = LLMRateLimitError("slow down, retry in 2 s", retry_after=2.0)
    assert str(err) == "rate_limited: slow down, retry in 2 s"
    assert err.retryable is True
    assert err.retry_after == 2.0


@pytest.mark.parametrize(
    "cls",
    sorted(
        (c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, BridgeError)),
        key=lambda c: c.__name__,
    ),
)
def test_wire_round_trip_keeps_class_and_fields(cls: type[BridgeError]) -> None:
    """An error encoded as ErrorInfo and decoded again is the same class with the same fields."""
    original = cls("what to do next", retry_after=1.5, details={"model": "m"})
    wire = msgspec.json.encode(original.to_info())
    rebuilt = error_from_info(msgspec.json.decode(wire, type=ErrorInfo))
    assert type(rebuilt) is cls
    assert (rebuilt.code, rebuilt.message, rebuilt.retryable, rebuilt.retry_after, rebuilt.details) == (
        original.code,
        original.message,
        original.retryable,
        original.retry_after,
        original.details,
    )


def test_unknown_kind_falls_back_to_the_class_for_its_code() -> None:
    """A kind this version does not know still decodes, by its code."""
    info = ErrorInfo(code=ErrorCode.BUSY, message="m", retryable=True, kind="SomeFutureError")
    assert type(error_from_info(info)).__name__ == "BusyError"
