"""The one error taxonomy of lmstudio-bridge.

Every failure the bridge reports is a :class:`BridgeError` with a stable machine
``code``, a message that says what to do next, ``retryable`` and, where known,
``retry_after`` (seconds). The base and the runtime's own errors (busy, timeout,
actor_crashed, actor_unavailable, cancelled, internal) come from
:mod:`bridge.runtime.errors`; this module adds the bridge's and re-exports all,
so this is the one tree to import. Between actors of one process an error
travels as itself; across processes and over MCP as :class:`ErrorInfo`,
rebuilt by :func:`error_from_info` into the class that was raised.

The tree::

    * BridgeError                      code
      x BadRequestError                bad_request
      x BusyError                      busy
      x RequestCancelledError          cancelled
      x DeadlineExceededError          timeout
      x ActorCrashedError              actor_crashed
      x ActorUnavailableError          actor_unavailable
      x InternalError                  internal
      x LLMError                       backend_error (kept for users of the older bridge)
        - LLMConnectionError           backend_unavailable
          · CircuitOpenError           backend_unavailable (the breaker is open: answered at once)
        - LLMTimeoutError              timeout       (also a DeadlineExceededError)
        - LLMRateLimitError            rate_limited
        - LLMResponseError             backend_error
          · ContextOverflowError       context_overflow
          · ModelUnloadedError         model_unloaded
        - ModelNotFoundError           model_not_found
        - UnsupportedEndpointError     unsupported
          · StreamingRefusedError      unsupported   (asked again without streaming)
      x ToolError                      tool_error
      x ChildServerDownError           child_server_down
      x ConfigError                    config_error
      x BridgeRestartedError           bridge_restarted (shared mode: the shared bridge went away mid-call)

Misuse of the runtime itself (sending on a stopped system, starting a child
twice) raises :class:`RuntimeError` subclasses, not these: they are bugs in
the caller, not operational failures.
"""

from __future__ import annotations

import enum
from typing import Any

from bridge.runtime.errors import (
    ActorCrashedError,
    ActorUnavailableError,
    BridgeError,
    BusyError,
    DeadlineExceededError,
    ErrorInfo,
    InternalError,
    RequestCancelledError,
)

__all__ = [
    "ActorCrashedError",
    "ActorUnavailableError",
    "BadRequestError",
    "BridgeError",
    "BridgeRestartedError",
    "BusyError",
    "ChildServerDownError",
    "CircuitOpenError",
    "ConfigError",
    "ContextOverflowError",
    "DeadlineExceededError",
    "ErrorCode",
    "ErrorInfo",
    "InternalError",
    "JobNotFoundError",
    "LLMConnectionError",
    "LLMError",
    "LLMRateLimitError",
    "LLMResponseError",
    "LLMTimeoutError",
    "ModelNotFoundError",
    "ModelUnloadedError",
    "RequestCancelledError",
    "StreamingRefusedError",
    "ToolError",
    "UnsupportedEndpointError",
    "error_fields",
    "error_from_info",
    "error_text",
]


class ErrorCode(enum.StrEnum):
    """Stable machine codes. Never renamed once released: programs match on them."""

    MODEL_NOT_FOUND = "model_not_found"
    MODEL_UNLOADED = "model_unloaded"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    BACKEND_ERROR = "backend_error"
    CONTEXT_OVERFLOW = "context_overflow"
    UNSUPPORTED = "unsupported"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    BUSY = "busy"
    CANCELLED = "cancelled"
    BAD_REQUEST = "bad_request"
    TOOL_ERROR = "tool_error"
    CHILD_SERVER_DOWN = "child_server_down"
    CONFIG_ERROR = "config_error"
    BRIDGE_RESTARTED = "bridge_restarted"
    ACTOR_CRASHED = "actor_crashed"
    ACTOR_UNAVAILABLE = "actor_unavailable"
    INTERNAL = "internal"
    JOB_NOT_FOUND = "job_not_found"


class BadRequestError(BridgeError, code=ErrorCode.BAD_REQUEST):
    """The request itself is wrong (empty prompt, max_tokens <= 0, bad schema); fix it before retrying."""


class JobNotFoundError(BridgeError, code=ErrorCode.JOB_NOT_FOUND):
    """No job has this id: it was never started, its result expired or was evicted, or the bridge restarted."""


class LLMError(BridgeError, code=ErrorCode.BACKEND_ERROR):
    """Any failure talking to an LLM server. Users of the older LM Studio bridge catch this."""


class LLMConnectionError(LLMError, code=ErrorCode.BACKEND_UNAVAILABLE, retryable=True):
    """The LLM server could not be reached (refused, reset, DNS, or its breaker is open)."""


class CircuitOpenError(LLMConnectionError):
    """The server's circuit breaker is open: the call was not sent. Retry after ``retry_after``.

    Raised at once, never waited out: the wait is the caller's to choose.
    """


class LLMTimeoutError(LLMError, DeadlineExceededError, code=ErrorCode.TIMEOUT, retryable=True):
    """The LLM server did not answer within a budget (connect, first token, idle gap, whole call)."""


class LLMRateLimitError(LLMError, code=ErrorCode.RATE_LIMITED, retryable=True):
    """The LLM server answered 429; wait ``retry_after`` seconds."""


class LLMResponseError(LLMError, code=ErrorCode.BACKEND_ERROR):
    """The LLM server answered with an error or with something that is not a valid reply."""


class ContextOverflowError(LLMResponseError, code=ErrorCode.CONTEXT_OVERFLOW):
    """The prompt does not fit the model's loaded context length; shorten it or load a longer context."""


class ModelUnloadedError(LLMResponseError, code=ErrorCode.MODEL_UNLOADED, retryable=True):
    """The model was unloaded (evicted by another JIT load, or TTL) while serving the request."""


class ModelNotFoundError(LLMError, code=ErrorCode.MODEL_NOT_FOUND):
    """No configured server lists the requested model. ``details['available']`` lists what does."""


class UnsupportedEndpointError(LLMError, code=ErrorCode.UNSUPPORTED):
    """The server does not offer this endpoint (e.g. ``/v1/responses`` or LM Studio's native API)."""


class StreamingRefusedError(UnsupportedEndpointError):
    """The server refuses to stream this request (llama-cpp-python: tool choice with ``stream=True``).

    The same request without streaming may succeed; the bridge asks again that way.
    """


class ToolError(BridgeError, code=ErrorCode.TOOL_ERROR):
    """A child MCP server's tool reported an error or its arguments were invalid."""


class ChildServerDownError(BridgeError, code=ErrorCode.CHILD_SERVER_DOWN, retryable=True):
    """A child MCP server is not running (crashed, restarting, or failed for good)."""


class ConfigError(BridgeError, code=ErrorCode.CONFIG_ERROR):
    """The configuration is invalid. The message names the key and the file."""


class BridgeRestartedError(BridgeError, code=ErrorCode.BRIDGE_RESTARTED, retryable=True):
    """The shared bridge behind this session's relay went away while the call ran; a new one has started."""


def error_text(error: BridgeError) -> str:
    """``code: message`` plus whether and when to retry: the text of an ``isError`` tool result."""
    if error.retryable:
        after = f" after {error.retry_after:g} s" if error.retry_after is not None else ""
        advice = f" (retryable: the same call may succeed if sent again{after})"
    else:
        advice = " (not retryable as is: change the request first)"
    return f"{error.code}: {error.message.rstrip('.')}.{advice}"


def error_fields(error: BridgeError) -> dict[str, Any]:
    """The structured form: ``code``, ``message``, ``retryable``, ``retry_after``, ``details``."""
    fields: dict[str, Any] = {
        "code": str(error.code),
        "message": error.message,
        "retryable": error.retryable,
        "retry_after": error.retry_after,
    }
    details = {k: v for k, v in error.details.items() if k not in ("partial_content", "partial_reasoning")}
    if details:
        fields["details"] = details
    return fields


def _all_error_classes() -> dict[str, type[BridgeError]]:
    found: dict[str, type[BridgeError]] = {}
    pending: list[type[BridgeError]] = [BridgeError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


_BY_CODE: dict[str, type[BridgeError]] = {
    ErrorCode.MODEL_NOT_FOUND: ModelNotFoundError,
    ErrorCode.MODEL_UNLOADED: ModelUnloadedError,
    ErrorCode.BACKEND_UNAVAILABLE: LLMConnectionError,
    ErrorCode.BACKEND_ERROR: LLMResponseError,
    ErrorCode.CONTEXT_OVERFLOW: ContextOverflowError,
    ErrorCode.UNSUPPORTED: UnsupportedEndpointError,
    ErrorCode.TIMEOUT: DeadlineExceededError,
    ErrorCode.RATE_LIMITED: LLMRateLimitError,
    ErrorCode.BUSY: BusyError,
    ErrorCode.CANCELLED: RequestCancelledError,
    ErrorCode.BAD_REQUEST: BadRequestError,
    ErrorCode.TOOL_ERROR: ToolError,
    ErrorCode.CHILD_SERVER_DOWN: ChildServerDownError,
    ErrorCode.CONFIG_ERROR: ConfigError,
    ErrorCode.BRIDGE_RESTARTED: BridgeRestartedError,
    ErrorCode.ACTOR_CRASHED: ActorCrashedError,
    ErrorCode.ACTOR_UNAVAILABLE: ActorUnavailableError,
    ErrorCode.INTERNAL: InternalError,
    ErrorCode.JOB_NOT_FOUND: JobNotFoundError,
}


def error_from_info(info: ErrorInfo) -> BridgeError:
    """Rebuild the exception an :class:`ErrorInfo` describes.

    The original class is used when it is known by name and carries the same
    code; otherwise the canonical class for the code.
    """
    cls = _all_error_classes().get(info.kind)
    if cls is None or cls.code != info.code:
        cls = _BY_CODE.get(info.code, InternalError)
    return cls(info.message, retryable=info.retryable, retry_after=info.retry_after, details=dict(info.details))
