"""Time budgets for one call, and the clock that enforces them.

An LLM call has distinct ways of being slow, each with its own remedy, so each
has its own budget: ``connect`` (server down or unreachable), ``first_token``
(JIT model load, queueing behind other requests, long prompt processing),
``idle`` (a stalled stream) and ``total`` (a generation that runs too long).
The connect budget is httpx's connect timeout; the others are one anyio cancel
scope whose deadline moves as the call progresses, so expiry cancels whatever
is awaiting and the ``async with`` around the HTTP stream closes it at once.
"""

from __future__ import annotations

import math
from typing import Literal

import anyio

from bridge.errors import LLMTimeoutError
from bridge.settings import Budgets

__all__ = ["BudgetName", "Budgets", "Clock"]

BudgetName = Literal["connect", "first_token", "idle", "total"]

_ADVICE: dict[BudgetName, str] = {
    "connect": ("Is the server running and reachable at that address? Raise budgets.connect only for slow networks."),
    "first_token": (
        "The server may be loading the model just in time or queueing the request behind others "
        "(LM Studio runs 4 at a time per model). Load the model ahead of time, or raise budgets.first_token."
    ),
    "idle": (
        "The stream stalled: the server stopped sending mid-generation. It may be overloaded or stuck; "
        "check its log, or raise budgets.idle."
    ),
    "total": "The whole call took too long. Ask for less output (max_tokens), or raise budgets.total.",
}


def _after(start: float, seconds: float | None) -> float:
    return math.inf if seconds is None else start + seconds


class Clock:
    """Moves one cancel scope's deadline through the phases of one call.

    The scope's deadline is always the earlier of the phase deadline and the
    total deadline, and :attr:`budget` remembers which one that is, so an
    expiry can name the budget that ran out.
    """

    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets
        self.started = anyio.current_time()
        self.scope = anyio.CancelScope()
        self.budget: BudgetName = "total"
        self._total_deadline = _after(self.started, budgets.total)

    def elapsed(self) -> float:
        return anyio.current_time() - self.started

    def _arm(self, budget: BudgetName, deadline: float) -> None:
        if deadline >= self._total_deadline:
            budget, deadline = "total", self._total_deadline
        self.budget = budget
        if self.scope.deadline != deadline:  # setting it reschedules a timer, even to the same value
            self.scope.deadline = deadline

    def wait_first_token(self) -> None:
        """From now until the first token: the first-token budget counts from the start."""
        self._arm("first_token", _after(self.started, self.budgets.first_token))

    def wait_idle(self) -> None:
        """Something arrived: the next piece is due within the idle budget.

        Called for every chunk of a stream, so it moves the deadline only when
        the current one is earlier than the idle budget allows, and then a little
        past it (a tenth of the budget, at most a second): moving a deadline
        reschedules a timer, and an idle expiry may come that much late but never
        early.
        """
        idle = self.budgets.idle
        if idle is None:
            self._arm("idle", math.inf)
            return
        now = anyio.current_time()
        if self.scope.deadline >= now + idle and (self.budget == "idle" or self._total_deadline <= now + idle):
            return
        self._arm("idle", now + idle + min(1.0, idle / 10))

    def wait_total(self) -> None:
        """Only the total budget applies (non-streamed answers, our own callbacks)."""
        self._arm("total", self._total_deadline)

    def timeout_error(self, *, what: str, details: dict[str, object], tokens: int = 0) -> LLMTimeoutError:
        """The error for the budget that ran out, saying which and what to change."""
        budget = self.budget
        seconds = self.budgets.total if budget == "total" else getattr(self.budgets, budget)
        return timeout_error(budget, seconds, what=what, details=details, tokens=tokens)


def timeout_error(
    budget: BudgetName, seconds: float | None, *, what: str, details: dict[str, object], tokens: int = 0
) -> LLMTimeoutError:
    """An :class:`LLMTimeoutError` naming ``budget``; only a connect timeout is worth retrying."""
    progress = f" after {tokens} tokens" if tokens else ""
    limit = "unset" if seconds is None else f"{seconds:g} s"
    message = f"{what} ran out of its {budget} budget ({limit}){progress}. {_ADVICE[budget]}"
    return LLMTimeoutError(
        message,
        retryable=budget == "connect",
        details={**details, "budget": budget, "seconds": seconds, "tokens": tokens},
    )
