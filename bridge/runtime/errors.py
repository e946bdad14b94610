"""The runtime's failures: the base of every operational error, and those the runtime itself raises.

An error is an answer, not a crash: a handler that raises a :class:`BridgeError`
has replied with it. Each has a stable machine ``code``, a message that says
what to do, ``retryable`` and, where known, ``retry_after`` (seconds). Errors
cross actors in one process as the exceptions themselves; :class:`ErrorInfo`
is their wire form (MCP results, other processes). The bridge's own errors
(``bridge.errors``) extend this tree with codes of their own.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import msgspec

__all__ = [
    "ActorCrashedError",
    "ActorUnavailableError",
    "BridgeError",
    "BusyError",
    "DeadlineExceededError",
    "ErrorInfo",
    "InternalError",
    "RequestCancelledError",
    "RuntimeErrorCode",
    "single_cause",
]


class RuntimeErrorCode(enum.StrEnum):
    """The codes of the runtime's own errors. Never renamed once released: programs match on them."""

    BUSY = "busy"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    ACTOR_CRASHED = "actor_crashed"
    ACTOR_UNAVAILABLE = "actor_unavailable"
    INTERNAL = "internal"


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The wire form of a :class:`BridgeError`: what crosses actors and MCP."""

    code: str
    message: str
    retryable: bool = False
    retry_after: float | None = None
    kind: str = "BridgeError"
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class BridgeError(Exception):
    """Base of every operational failure the bridge reports.

    Args:
        message: What happened and what to do about it, as a full sentence.
        retryable: Whether the same request may succeed if sent again unchanged.
            Defaults to the class's ``default_retryable``.
        retry_after: Seconds to wait before retrying, where known.
        details: Extra machine-readable context (model id, server URL, ...).
    """

    code: ClassVar[str] = RuntimeErrorCode.INTERNAL
    default_retryable: ClassVar[bool] = False

    def __init_subclass__(cls, *, code: str | None = None, retryable: bool | None = None, **kwargs: Any) -> None:
        """``class BusyError(BridgeError, code=..., retryable=True)``: a kind of error is its code and whether
        sending the request again may help; a subclass that names neither keeps its parent's."""
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if retryable is not None:
            cls.default_retryable = retryable

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, retryable={self.retryable}, retry_after={self.retry_after})"

    def to_info(self) -> ErrorInfo:
        """The wire form, for replies between actors and MCP structured content."""
        return ErrorInfo(
            code=self.code,
            message=self.message,
            retryable=self.retryable,
            retry_after=self.retry_after,
            kind=type(self).__name__,
            details=self.details,
        )


class BusyError(BridgeError, code=RuntimeErrorCode.BUSY, retryable=True):
    """A queue is full. The request was not started; retry after ``retry_after``."""


class RequestCancelledError(BridgeError, code=RuntimeErrorCode.CANCELLED):
    """The caller cancelled the request; the work it started was stopped."""


class DeadlineExceededError(BridgeError, code=RuntimeErrorCode.TIMEOUT, retryable=True):
    """A time budget ran out. ``details`` says which one."""


class ActorCrashedError(BridgeError, code=RuntimeErrorCode.ACTOR_CRASHED, retryable=True):
    """The actor serving the request crashed; it is being restarted with fresh state."""


class ActorUnavailableError(BridgeError, code=RuntimeErrorCode.ACTOR_UNAVAILABLE):
    """The actor is stopped or its supervisor gave up; nothing will serve the request."""


class InternalError(BridgeError, code=RuntimeErrorCode.INTERNAL):
    """A bug in the bridge. The message says where; please report it."""


def single_cause(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (or ``exc`` itself)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
