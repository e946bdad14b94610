"""Mailboxes and the addresses that post into them.

A mailbox belongs to a supervisor's child slot, not to one incarnation of the
actor: it survives restarts, so an :class:`ActorRef` handed out once stays
valid until the child is removed for good.
"""

from __future__ import annotations

import enum
from typing import Any, Generic, TypeVar, final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from bridge.runtime._envelope import Envelope, ProgressSink
from bridge.runtime._message import Message, Request
from bridge.runtime.errors import ActorUnavailableError, DeadlineExceededError

__all__ = ["ActorRef", "ChildState", "Mailbox"]

M = TypeVar("M", bound=Message)
R = TypeVar("R")


class ChildState(enum.StrEnum):
    """Where a supervised child is in its life."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


@final
class Mailbox(Generic[M]):
    """A bounded queue of envelopes with the state of the child that reads it.

    Caution: created by the supervisor only.
    """

    __slots__ = ("_receive", "_send", "name", "restarts", "state")

    def __init__(self, name: str, size: int) -> None:
        if size < 0:
            raise ValueError(f"mailbox size must be >= 0, got {size}")
        self.name = name
        self._send: MemoryObjectSendStream[Envelope[M]]
        self._receive: MemoryObjectReceiveStream[Envelope[M]]
        self._send, self._receive = anyio.create_memory_object_stream[Envelope[M]](size)
        self.state = ChildState.STARTING
        self.restarts = 0

    @property
    def inbox(self) -> MemoryObjectReceiveStream[Envelope[M]]:
        return self._receive

    @property
    def accepting(self) -> bool:
        return self.state not in (ChildState.STOPPING, ChildState.STOPPED, ChildState.FAILED)

    def queued(self) -> int:
        return self._send.statistics().current_buffer_used

    def unavailable(self) -> ActorUnavailableError:
        return ActorUnavailableError(
            f"actor {self.name!r} is {self.state.value} and takes no more requests; "
            "if the bridge is shutting down this is expected, otherwise check the log for why it stopped",
            details={"actor": self.name, "state": self.state.value},
        )

    def close(self, error: ActorUnavailableError | None = None) -> None:
        """Close for good: fail everything still queued, then refuse new posts."""
        err = error or self.unavailable()
        while True:
            try:
                envelope = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            envelope.settle_error(err)
        self._receive.close()
        self._send.close()


@final
class ActorRef(Generic[M]):
    """The address of a supervised actor: ``ask`` for a reply, ``tell`` to fire and forget.

    Caution: created by the supervisor; do not instantiate directly.

    Args of ``ask``:
        timeout: Seconds until the reply must be there; the deadline also bounds the
            handler's work and any deadline already in force in the caller.
        progress: An async callable that receives the handler's progress reports.
    """

    __slots__ = ("_mailbox", "default_timeout")

    def __init__(self, mailbox: Mailbox[M], *, default_timeout: float = 30.0) -> None:
        self._mailbox = mailbox
        self.default_timeout = default_timeout

    @property
    def name(self) -> str:
        return self._mailbox.name

    @property
    def state(self) -> ChildState:
        return self._mailbox.state

    @property
    def restarts(self) -> int:
        return self._mailbox.restarts

    def queued(self) -> int:
        """How many messages wait in the mailbox (not counting those being handled)."""
        return self._mailbox.queued()

    def __repr__(self) -> str:
        return f"<ActorRef {self.name!r} {self.state.value}>"

    def _deadline(self, timeout: float | None) -> float:
        budget = self.default_timeout if timeout is None else timeout
        return min(anyio.current_time() + budget, anyio.current_effective_deadline())

    async def ask(
        self,
        message: Request[R],
        *,
        timeout: float | None = None,
        progress: ProgressSink | None = None,
        caller: str = "",
    ) -> R:
        """Post ``message`` and wait for its reply; ``caller`` names the asker to the handler (``ctx.caller``).

        Raises:
            BridgeError: whatever the handler raised, ``DeadlineExceededError`` when the
                deadline passed (the handler is cancelled too), ``ActorCrashedError``
                when the actor crashed while serving it, ``ActorUnavailableError``
                when the actor is stopped.
        """
        mailbox = self._mailbox
        if not mailbox.accepting:
            raise mailbox.unavailable()
        deadline = self._deadline(timeout)
        envelope: Envelope[Any] = Envelope(message, deadline=deadline, progress=progress, caller=caller)
        posted = False
        try:
            with anyio.CancelScope(deadline=deadline):
                await self._post(envelope)
                posted = True
                await envelope.wait()
        finally:
            if not envelope.done:
                envelope.abandon()  # timed out or cancelled: stop the work, wherever it is
        if not envelope.done:
            envelope.settle_error(self._timeout_error(message, timeout, posted=posted))
        result: R = envelope.outcome()
        return result

    async def _post(self, envelope: Envelope[Any]) -> None:
        """Put ``envelope`` in the mailbox: at once if there is room, else wait (backpressure)."""
        send = self._mailbox._send
        try:
            try:
                send.send_nowait(envelope)
            except anyio.WouldBlock:
                await send.send(envelope)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise self._mailbox.unavailable() from None

    def _timeout_error(self, message: Message, timeout: float | None, *, posted: bool) -> DeadlineExceededError:
        budget = self.default_timeout if timeout is None else timeout
        kind = type(message).__name__
        if not posted:
            return DeadlineExceededError(
                f"the mailbox of {self.name} stayed full until the deadline ({budget:g} s), so {kind} was never "
                "delivered; the actor is overloaded. Retry later or lower the number of concurrent calls",
                retry_after=0.1,
                details={"actor": self.name, "message": kind, "budget_s": budget, "delivered": False},
            )
        return DeadlineExceededError(
            f"{self.name} did not answer {kind} within its deadline ({budget:g} s budget, or less if the caller's "
            f"own deadline was shorter); the work was cancelled. Retry with a longer timeout, or check bridge_status "
            f"for a queue that is backed up",
            details={"actor": self.name, "message": kind, "budget_s": budget},
        )
