"""Forwarding the actors' progress reports to the MCP client as ``notifications/progress``.

MCP requires the progress value to grow with every notification, while the
actors report stages (queued at position 3, loading, first token, 120 tokens)
whose numbers do not all grow. So the value sent is the token count where
there is one, nudged up when it would not grow; the message says what
actually happened. Reports that come faster than :data:`MIN_INTERVAL` during
generation are dropped (the next one carries the newer count).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from bridge.messages import Progress

__all__ = ["MIN_INTERVAL", "ProgressForwarder", "describe"]

log = logging.getLogger("bridge.frontend")

MIN_INTERVAL: Final = 0.25
"""Seconds between two forwarded ``generating`` reports of one call."""

Send = Callable[[float, float | None, str | None], Awaitable[None]]


def describe(progress: Progress, *, model: str | None = None, elapsed: float | None = None) -> str:
    """A one-line account of a report, for the host to show on the running tool's row."""
    if progress.message and progress.stage != "first_token":
        return progress.message
    who = f" from {model}" if model else ""
    match progress.stage:
        case "queued":
            return f"queued{who}: position {progress.position}"
        case "loading":
            return f"loading the model{who}"
        case "first_token":
            after = f" after {elapsed:.2f} s" if elapsed is not None else ""
            return f"first token{who}{after}"
        case "generating":
            return f"{progress.tokens} tokens{who}"
        case _:
            return progress.stage


class ProgressForwarder:
    """A progress sink for ``ActorRef.ask`` that sends what it hears to the MCP client.

    Args:
        send: ``ctx.report_progress`` (value, total, message).
        model: Model named in the messages, if known.
        total: Total sent with every notification (e.g. ``max_tokens``), or ``None``.
        prefix: Put in front of every message (a batch item's label).
    """

    __slots__ = ("_last_generating", "_send", "_started", "model", "prefix", "sent", "total", "value")

    def __init__(self, send: Send, *, model: str | None = None, total: float | None = None, prefix: str = "") -> None:
        self._send = send
        self.model = model
        self.total = total
        self.prefix = prefix
        self.value = 0.0
        self.sent = 0
        self._started = anyio.current_time()
        self._last_generating = -float("inf")

    async def __call__(self, progress: Progress) -> None:
        if progress.stage == "started":
            return  # the client learns of the start from the first token
        now = anyio.current_time()
        if progress.stage == "generating":
            if now - self._last_generating < MIN_INTERVAL:
                return
            self._last_generating = now
        candidate = float(progress.tokens) if progress.tokens is not None else self.value
        message = self.prefix + describe(progress, model=self.model, elapsed=now - self._started)
        await self.send(candidate, message)

    async def send(self, candidate: float, message: str) -> None:
        """Send ``message`` with a value of at least ``candidate`` that is larger than the last one sent."""
        value = candidate if candidate > self.value else self.value + 1.0
        total = self.total if self.total is not None and self.total >= value else None
        self.value = value
        self.sent += 1
        try:
            await self._send(value, total, message)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:  # a closed connection must not fail the call it reports on
            log.debug("progress notification not sent", exc_info=True)
