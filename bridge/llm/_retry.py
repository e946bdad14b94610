"""Which failures are worth sending again, and a stamina loop that does it.

Retrying is safe for generation requests (the server keeps no state), but
not always useful: a connect failure, a 5xx, a 429 or an evicted model may
succeed next time; a bad request or a prompt that overflows the context will
fail the same way; and a first-token, idle or total timeout already spent the
caller's patience on a long generation, so repeating it would double the wait.
Cancellation is never retried: :func:`call_with_retries` lets it pass before
stamina sees it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import httpx
import stamina

from bridge.errors import (
    CircuitOpenError,
    ContextOverflowError,
    LLMConnectionError,
    LLMRateLimitError,
    LLMResponseError,
    LLMTimeoutError,
)

__all__ = ["RetryNotice", "call_with_retries", "is_retryable"]

T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool | float:
    """stamina's backoff hook: ``False``, ``True``, or seconds to wait (a server's ``Retry-After``).

    Retried: connection failures, connect timeouts, 5xx, 429, an unloaded or
    loading model. Not retried: other 4xx, unknown models, unsupported
    endpoints, context overflows, an open circuit breaker, first-token/idle/total timeouts, anything
    that is not an :class:`Exception` (cancellation).
    """
    if not isinstance(exc, Exception):
        return False
    if isinstance(exc, ContextOverflowError | CircuitOpenError):
        return False  # an open breaker is answered at once; sleeping through its cooldown is the caller's choice
    if isinstance(exc, LLMTimeoutError):
        return exc.details.get("budget") == "connect"
    if isinstance(exc, LLMRateLimitError | LLMConnectionError | LLMResponseError):
        if not exc.retryable:
            return False
        return exc.retry_after if exc.retry_after is not None else True
    # Raw httpx errors should not get here (the client translates them), but be safe if they do.
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def _failure_signature(exc: Exception) -> tuple[object, ...] | None:
    """What makes a server error the same one again: the server's own words on an HTTP 500.

    Only 500: a 502, 503 or 504 repeating word for word ("busy", "overloaded") is still transient.
    """
    if type(exc) is not LLMResponseError:
        return None  # a classified error (model unloaded, overflow) says by its kind whether it is transient
    status = exc.details.get("status")
    message = exc.details.get("server_message")
    if status != 500 or not message:
        return None
    return (status, message)


@dataclass(frozen=True, slots=True)
class RetryNotice:
    """Handed to ``on_retry`` before attempt ``attempt + 1`` starts.

    Attributes:
        attempt: The attempt that failed (1-based).
        error: What it failed with.
        wait: Seconds waited before this retry when the server named them
            (``Retry-After``), else ``None`` (exponential backoff with jitter).
    """

    attempt: int
    error: Exception
    wait: float | None


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    wait_initial: float,
    wait_max: float,
    on_retry: Callable[[RetryNotice], Awaitable[None]] | None = None,
    timeout: float | None = None,
    predicate: Callable[[BaseException], bool | float] = is_retryable,
) -> T:
    """Await ``fn()`` until it succeeds, fails for good, or ``attempts`` run out.

    Backoff is stamina's exponential backoff with jitter, capped at
    ``wait_max``; a ``Retry-After`` longer than ``wait_max`` is not waited out
    but raised, so the caller can report when to come back.

    Args:
        fn: The operation; called afresh for every attempt.
        attempts: Total attempts, the first included.
        wait_initial: Seconds before the first retry.
        wait_max: Longest single wait, in seconds.
        on_retry: Awaited before each retry (for progress reports).
        timeout: Give up retrying after this many seconds in all (checked
            between attempts, not a deadline for an attempt); ``None`` for no limit.
        predicate: Decides what is retried; defaults to :func:`is_retryable`.

    Raises:
        Exception: The last attempt's error, unchanged.
    """
    started = anyio.current_time()
    try:
        return await fn()
    except Exception as exc:
        failure: Exception = exc
    # Most calls succeed at once: stamina's loop (a tangle of reference cycles, ~40 objects
    # for the collector per call) is only built for a call that failed. Its first attempt
    # re-raises that failure, so stamina decides, waits and counts exactly as if it had run it.
    if timeout is not None:
        timeout -= anyio.current_time() - started
        if timeout <= 0:
            raise failure
    waits: list[float | None] = []
    deadline = None if timeout is None else anyio.current_time() + timeout
    seen: list[tuple[object, ...]] = []

    def hook(exc: BaseException) -> bool | float:  # stamina >= 26.2 passes BaseException
        if not isinstance(exc, Exception):
            return False
        decision = predicate(exc)
        if decision is False:
            return False
        # A wait longer than allowed, or longer than the time left: answer now with the wait in it.
        if decision is not True and (
            decision > wait_max or (deadline is not None and decision > deadline - anyio.current_time())
        ):
            return False
        signature = _failure_signature(exc)
        if signature is not None and signature in seen:
            return False  # the same server error word for word: deterministic, not transient
        if signature is not None:
            seen.append(signature)
        waits.append(None if decision is True else float(decision))
        return decision

    async for attempt in stamina.retry_context(
        on=hook, attempts=attempts, timeout=timeout, wait_initial=wait_initial, wait_max=wait_max
    ):
        if attempt.num > 1:
            if on_retry is not None:
                await on_retry(RetryNotice(attempt=attempt.num - 1, error=failure, wait=waits[-1] if waits else None))
            try:
                return await fn()
            except Exception as exc:
                failure = exc
        with attempt:
            # Only Exceptions reach stamina: cancellation and KeyboardInterrupt went straight up.
            raise failure
    raise AssertionError("unreachable: stamina re-raises the last failure")
