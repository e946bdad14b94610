"""A circuit breaker for one LLM server, owned by the worker that uses it.

Closed: requests go through. After ``failures`` consecutive connection failures it
opens: requests fail fast with ``backend_unavailable`` and a ``retry_after``. After
``cooldown`` it is half-open: one probe goes through; success closes it, failure
opens it again.
"""

from __future__ import annotations

import enum

import anyio

from bridge.errors import CircuitOpenError

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Strictly owned by one actor; not shared between tasks of different actors."""

    __slots__ = ("_failures", "_opened_at", "_probing", "cooldown", "server", "threshold")

    def __init__(self, server: str, *, failures: int, cooldown: float) -> None:
        self.server = server
        self.threshold = max(1, failures)
        self.cooldown = cooldown
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if anyio.current_time() - self._opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allows(self) -> bool:
        state = self.state
        return state is BreakerState.CLOSED or (state is BreakerState.HALF_OPEN and not self._probing)

    def before_call(self) -> None:
        """Raise at once if the breaker is open; mark the probe when half-open."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return
        raise self.open_error()

    def remaining_cooldown(self) -> float:
        """Seconds until the next probe may go (0 when it may go now, or one is under way)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown - anyio.current_time())

    def open_error(self) -> CircuitOpenError:
        """The fail-fast answer while the breaker lets nothing through."""
        wait = self.remaining_cooldown()
        probing = " (a probe is under way)" if self._probing and wait == 0 else ""
        return CircuitOpenError(
            f"LLM server {self.server} failed {self._failures} times in a row, so calls to it are paused "
            f"(circuit open{probing}); the next try goes through in {wait:.1f} s. Check that the server is running",
            retry_after=round(max(wait, 0.1), 3),
            details={"server": self.server, "breaker": self.state.value},
        )

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self._failures >= self.threshold or self._opened_at is not None:
            self._opened_at = anyio.current_time()

    def record_neutral(self) -> None:
        """The call ended for a reason that says nothing about the server (cancelled, 4xx)."""
        self._probing = False
