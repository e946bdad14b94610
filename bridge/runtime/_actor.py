"""The actor base: a typed mailbox served by one task per request.

Each request an actor accepts runs in its own task, inside the actor's task
group, under its own cancel scope whose deadline is the asker's. So a slow
request never blocks the mailbox, and an asker that gives up cancels the work
it asked for.

Let it crash: a handler that raises a :class:`~bridge.runtime.errors.BridgeError` has
answered (the asker gets that error); a handler that raises anything else has
crashed the actor. Every request it was serving fails at once with
:class:`~bridge.runtime.errors.ActorCrashedError`, the incarnation ends, and its
supervisor decides what happens next. Queued messages stay in the mailbox for
the next incarnation.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from bridge.runtime._envelope import FORWARDED, Envelope, RequestContext
from bridge.runtime._message import Message
from bridge.runtime._ref import ActorRef, ChildState
from bridge.runtime.errors import (
    ActorCrashedError,
    ActorUnavailableError,
    BridgeError,
    DeadlineExceededError,
    RequestCancelledError,
)

__all__ = ["Actor"]

log = logging.getLogger("bridge.runtime")

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
    min_idle_handlers: int = 2
    max_idle_handlers: int = 16
    shutdown_grace: float = 5.0

    def __init__(self) -> None:
        self.name = "<unstarted>"
        self._ref: ActorRef[M] | None = None
        self._in_flight: set[Envelope[M]] = set()
        self._background: TaskGroup | None = None
        self._stop_requested = False
        self._crash: BaseException | None = None
        self._stop = anyio.Event()
        self._handler_group: TaskGroup | None = None
        self._handlers = 0
        self._idle = 0

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

    def start_background(self, fn: Callable[[], Coroutine[Any, Any, object]], name: str | None = None) -> None:
        """Run ``fn`` for the life of this incarnation; it is cancelled when the actor stops.

        An exception from ``fn`` crashes the actor, like one from a handler.
        """
        if self._background is None:
            raise RuntimeError("start_background() works only from on_start() or a handler of a running actor")
        self._background.start_soon(self._run_background, fn, name or getattr(fn, "__name__", "task"), name=name)

    async def _run_background(self, fn: Callable[[], Coroutine[Any, Any, object]], name: str) -> None:
        # Through the same crash path as a handler: in-flight requests learn ``actor_crashed``.
        try:
            await fn()
        except Exception as exc:
            self._crashed(exc, f"in its background task {name!r}")
            raise

    # --- for the supervisor ------------------------------------------------
    def request_stop(self) -> None:
        """Stop taking messages; in-flight requests get ``shutdown_grace`` to finish."""
        self._stop_requested = True
        self._stop.set()

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
        try:
            async with anyio.create_task_group() as handlers:
                self._handler_group = handlers
                async with anyio.create_task_group() as background:
                    self._background = background
                    await self.on_start()
                    task_status.started()
                    for _ in range(min(self.min_idle_handlers, self.max_concurrent_requests)):
                        handlers.start_soon(self._handler_task, inbox, handlers)
                    await self._stop.wait()
                    background.cancel_scope.cancel()
                handlers.cancel_scope.deadline = anyio.current_time() + self.shutdown_grace
                await self._wake_idle_handlers(ref)
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.shutdown_grace):
                await self.on_stop()
        finally:
            self._settle_leftovers()

    async def _handler_task(self, inbox: MemoryObjectReceiveStream[Envelope[M]], handlers: TaskGroup) -> None:
        """Take messages from the mailbox and serve them, one at a time, each under its own scope.

        Handler tasks form a pool that grows whenever the last idle one takes a message
        (so a slow request never blocks the mailbox) up to ``max_concurrent_requests``
        (so a saturated actor stops reading and its mailbox pushes back on senders).
        Reusing tasks keeps a request's cost near that of two task switches.
        """
        self._handlers += 1
        try:
            while not self._stop_requested:
                self._idle += 1
                try:
                    envelope = await inbox.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    return
                finally:
                    self._idle -= 1
                if envelope.is_stop_token or envelope.abandoned:
                    continue  # a stop token, or an asker that already gave up
                if self._crash is not None:
                    envelope.settle_error(self._leftover_error())
                    return
                if self._idle == 0 and self._handlers < self.max_concurrent_requests:
                    handlers.start_soon(self._handler_task, inbox, handlers)
                self._in_flight.add(envelope)
                await self._run_one(envelope)
                # An idle handler must not keep its last request alive: the asker's sink, the reply.
                del envelope
                if self._idle >= self.max_idle_handlers:
                    return
        finally:
            self._handlers -= 1

    async def _wake_idle_handlers(self, ref: ActorRef[M]) -> None:
        """Hand each handler still waiting on the mailbox a stop token so it exits at once."""
        send = ref._mailbox._send
        while self._idle > 0:
            try:
                send.send_nowait(Envelope.stop_token())
            except anyio.WouldBlock:
                await anyio.lowlevel.checkpoint()  # a handler is between its checkpoint and its wait
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return

    async def _run_one(self, envelope: Envelope[M]) -> None:
        handed_on = False  # forwarded to another actor, which settles it from now on
        try:
            # No timer here: the asker's own deadline abandons the envelope, which cancels this scope.
            with anyio.CancelScope() as scope:
                envelope.attach_scope(scope)
                try:
                    value = await self.handle(envelope.message, envelope)
                except BridgeError as error:
                    envelope.settle_error(error)
                except Exception as exc:
                    answer = _answer_in(exc)
                    if answer is None:
                        self._crashed(exc, f"while serving {type(envelope.message).__name__}")
                        raise
                    envelope.settle_error(answer)
                else:
                    handed_on = value is FORWARDED
                    if not handed_on:
                        envelope.settle(value)
            if scope.cancelled_caught and not envelope.done:
                envelope.settle_error(self._why_cancelled(envelope))
        finally:
            self._in_flight.discard(envelope)
            if not envelope.done and not handed_on:
                envelope.settle_error(self._leftover_error())  # cancelled from outside: crash or shutdown

    def _why_cancelled(self, envelope: Envelope[M]) -> BridgeError:
        kind = type(envelope.message).__name__
        if envelope.abandoned:
            return RequestCancelledError(f"{kind} to {self.name} was cancelled by its caller")
        return DeadlineExceededError(
            f"{self.name} ran out of time serving {kind}; the work was stopped. Retry with a longer timeout",
            details={"actor": self.name, "message": kind},
        )

    def _crashed(self, exc: Exception, where: str) -> None:
        """Fail every request in flight with ``actor_crashed`` and end this incarnation."""
        if self._crash is not None:
            return
        self._crash = exc
        if self._ref is not None:
            self._ref._mailbox.state = ChildState.RESTARTING
        if self._handler_group is not None:
            # Cancel now, not when the exception reaches the task group: idle handlers must
            # not take messages meant for the next incarnation.
            self._handler_group.cancel_scope.cancel()
        error = ActorCrashedError(
            f"actor {self.name} crashed {where} ({type(exc).__name__}: {exc}); "
            "it is being restarted with fresh state, so retrying is safe",
            details={"actor": self.name, "where": where, "exception": type(exc).__name__},
        )
        for pending in list(self._in_flight):
            pending.settle_error(error)

    def _leftover_error(self) -> BridgeError:
        if self._crash is not None:
            return ActorCrashedError(
                f"actor {self.name} crashed; it is being restarted with fresh state, so retrying is safe",
                details={"actor": self.name},
            )
        return ActorUnavailableError(
            f"actor {self.name} stopped before it finished this request (shutdown grace "
            f"{self.shutdown_grace:g} s ran out, or the bridge is shutting down)",
            details={"actor": self.name},
        )

    def _settle_leftovers(self) -> None:
        if not self._in_flight:
            return
        error = self._leftover_error()
        for pending in list(self._in_flight):
            pending.settle_error(error)
        self._in_flight.clear()


def _answer_in(exc: Exception) -> BridgeError | None:
    """The error a handler answered with, when ``exc`` is a group of nothing but :class:`BridgeError`.

    A handler that runs a task group of its own gets its ``BridgeError`` wrapped in an
    exception group; that is still an answer, not a crash. Several errors answer as the
    first, with the others named in its details.
    """
    if not isinstance(exc, ExceptionGroup):
        return None
    matched, rest = exc.split(BridgeError)
    if rest is not None or matched is None:
        return None
    leaves = list(_leaves(matched))
    first = leaves[0]
    if len(leaves) > 1:
        first.details.setdefault("other_errors", [str(other) for other in leaves[1:]])
    return first


def _leaves(group: BaseExceptionGroup[BridgeError]) -> Iterator[BridgeError]:
    for member in group.exceptions:
        if isinstance(member, BaseExceptionGroup):
            yield from _leaves(member)
        else:
            yield member
