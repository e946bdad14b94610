"""The actor base: a typed mailbox served by one task per request.

Each request an actor accepts runs in its own task, inside the actor's task
group, under its own cancel scope whose deadline is the asker's. So a slow
request never blocks the mailbox, and an asker that gives up cancels the work
it asked for.

Let it crash: a handler that raises a :class:`~bridge.errors.BridgeError` has
answered (the asker gets that error); a handler that raises anything else has
crashed the actor. Every request it was serving fails at once with
:class:`~bridge.errors.ActorCrashedError`, the incarnation ends, and its
supervisor decides what happens next. Queued messages stay in the mailbox for
the next incarnation.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from bridge.actors._envelope import Envelope, RequestContext
from bridge.actors._ref import ActorRef
from bridge.errors import (
    ActorCrashedError,
    ActorUnavailableError,
    BridgeError,
    DeadlineExceededError,
    RequestCancelledError,
)
from bridge.messages import Message

__all__ = ["Actor"]

log = logging.getLogger("bridge.actors")

M = TypeVar("M", bound=Message)


class Actor(ABC, Generic[M]):
    """Base of every actor. Subclasses implement :meth:`handle` with a ``match`` over ``M``.

    An instance is one incarnation: the supervisor builds a fresh one, with fresh
    state, for every (re)start. State lives in instance attributes and is only
    touched by this actor's own tasks.

    Attributes:
        max_concurrent_requests: Requests handled at once; past it the actor stops
            reading its mailbox, the mailbox fills and senders wait (backpressure).
        shutdown_grace: Seconds in-flight requests get to finish on an orderly stop.
    """

    max_concurrent_requests: int = 1024
    shutdown_grace: float = 5.0

    def __init__(self) -> None:
        self.name = "<unstarted>"
        self._ref: ActorRef[M] | None = None
        self._in_flight: set[Envelope[M]] = set()
        self._intake: anyio.CancelScope | None = None
        self._background: TaskGroup | None = None
        self._stop_requested = False
        self._crash: BaseException | None = None

    # --- for subclasses ------------------------------------------------------
    @abstractmethod
    async def handle(self, message: M, ctx: RequestContext) -> object:
        """Serve one message; return the reply (``None`` for notices)."""

    async def on_start(self) -> None:
        """Runs before the first message; the actor counts as started when it returns."""

    async def on_stop(self) -> None:
        """Runs after the last request on an orderly stop (not after a crash), shielded, briefly."""

    @property
    def ref(self) -> ActorRef[M]:
        """This actor's own address (for telling itself things)."""
        if self._ref is None:
            raise RuntimeError(f"actor {self.name} has no address yet: it is not running under a supervisor")
        return self._ref

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def start_background(self, fn: Callable[[], Awaitable[object]], name: str | None = None) -> None:
        """Run ``fn`` for the life of this incarnation; it is cancelled when the actor stops.

        An exception from ``fn`` crashes the actor, like one from a handler.
        """
        if self._background is None:
            raise RuntimeError("start_background() works only from on_start() or a handler of a running actor")
        self._background.start_soon(fn, name=name)

    # --- for the supervisor ------------------------------------------------
    def request_stop(self) -> None:
        """Stop taking messages; in-flight requests get ``shutdown_grace`` to finish."""
        self._stop_requested = True
        if self._intake is not None:
            self._intake.cancel()

    async def serve(
        self,
        ref: ActorRef[M],
        inbox: MemoryObjectReceiveStream[Envelope[M]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run this incarnation until a stop is requested or it crashes."""
        self._ref = ref
        self.name = ref.name
        slots = anyio.Semaphore(self.max_concurrent_requests)
        try:
            async with anyio.create_task_group() as handlers:
                async with anyio.create_task_group() as background:
                    self._background = background
                    await self.on_start()
                    task_status.started()
                    with anyio.CancelScope() as intake:
                        self._intake = intake
                        if self._stop_requested:
                            intake.cancel()
                        await self._take_messages(inbox, slots, handlers)
                    background.cancel_scope.cancel()
                handlers.cancel_scope.deadline = anyio.current_time() + self.shutdown_grace
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.shutdown_grace):
                await self.on_stop()
        finally:
            self._settle_leftovers()

    async def _take_messages(
        self,
        inbox: MemoryObjectReceiveStream[Envelope[M]],
        slots: anyio.Semaphore,
        handlers: TaskGroup,
    ) -> None:
        while True:
            await slots.acquire()
            try:
                envelope = await inbox.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return
            if envelope.abandoned:
                slots.release()
                continue
            self._in_flight.add(envelope)
            handlers.start_soon(self._run_one, envelope, slots)

    async def _run_one(self, envelope: Envelope[M], slots: anyio.Semaphore) -> None:
        try:
            with anyio.CancelScope(deadline=envelope.deadline) as scope:
                envelope.attach_scope(scope)
                try:
                    value = await self.handle(envelope.message, envelope)
                except BridgeError as error:
                    envelope.settle_error(error)
                except Exception as exc:
                    self._crashed(exc, envelope)
                    raise
                else:
                    envelope.settle(value)
            if scope.cancelled_caught and not envelope.done:
                envelope.settle_error(self._why_cancelled(envelope))
        finally:
            self._in_flight.discard(envelope)
            slots.release()

    def _why_cancelled(self, envelope: Envelope[M]) -> BridgeError:
        kind = type(envelope.message).__name__
        if envelope.abandoned:
            return RequestCancelledError(f"{kind} to {self.name} was cancelled by its caller")
        return DeadlineExceededError(
            f"{self.name} ran out of time serving {kind}; the work was stopped. Retry with a longer timeout",
            details={"actor": self.name, "message": kind},
        )

    def _crashed(self, exc: Exception, envelope: Envelope[M]) -> None:
        self._crash = exc
        kind = type(envelope.message).__name__
        error = ActorCrashedError(
            f"actor {self.name} crashed while serving {kind} ({type(exc).__name__}: {exc}); "
            "it is being restarted with fresh state, so retrying is safe",
            details={"actor": self.name, "message": kind, "exception": type(exc).__name__},
        )
        for pending in list(self._in_flight):
            pending.settle_error(error)

    def _settle_leftovers(self) -> None:
        if not self._in_flight:
            return
        error: BridgeError
        if self._crash is not None:
            error = ActorCrashedError(
                f"actor {self.name} crashed; it is being restarted with fresh state, so retrying is safe",
                details={"actor": self.name},
            )
        else:
            error = ActorUnavailableError(
                f"actor {self.name} stopped before it finished this request (shutdown grace "
                f"{self.shutdown_grace:g} s ran out)",
                details={"actor": self.name},
            )
        for pending in list(self._in_flight):
            pending.settle_error(error)
        self._in_flight.clear()
