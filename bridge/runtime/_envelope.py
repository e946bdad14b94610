"""The envelope: one message in a mailbox plus the live objects that go with it.

The message is a wire-encodable msgspec struct; the reply slot, the deadline,
the progress sink and the handler's cancel scope are live objects and live
here, never in the message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar, final

import anyio

from bridge.runtime._message import Message
from bridge.runtime.errors import BridgeError

if TYPE_CHECKING:
    from bridge.runtime._ref import ActorRef

__all__ = ["FORWARDED", "Envelope", "Forwarded", "ProgressSink", "RequestContext"]

log = logging.getLogger("bridge.runtime")

T = TypeVar("T")
M = TypeVar("M")

ProgressSink = Callable[[Any], Awaitable[None]]
"""Where a handler's progress reports go: any struct the asker understands (the bridge sends its ``Progress``)."""
"""Where a handler's progress reports go: an async callable owned by the asker."""


@final
class Forwarded:
    """What a handler returns once it has handed its request on with :meth:`RequestContext.forward`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FORWARDED"


FORWARDED: Final = Forwarded()


class RequestContext(Protocol):
    """What a handler may know about the request it serves."""

    @property
    def deadline(self) -> float:
        """The asker's deadline on anyio's clock (``math.inf`` for none)."""
        ...

    @property
    def wants_progress(self) -> bool:
        """Whether anyone listens to :meth:`report_progress`."""
        ...

    @property
    def caller(self) -> str:
        """Who asked, as the asker named itself (``""``: unnamed); it goes along when forwarded.

        For sharing by caller (a shared resource served in turn): the runtime gives it no meaning.
        """
        ...

    def remaining(self) -> float:
        """Seconds left before the deadline."""
        ...

    async def report_progress(self, progress: Any) -> None:
        """Send a progress report to the asker, if it asked for them."""
        ...

    async def forward(self, to: ActorRef[Any], message: Message) -> Forwarded:
        """Hand this request on to ``to`` as ``message``; that actor answers the asker directly.

        The asker's deadline, progress sink and cancellation go along; this handler is done
        with the request once the message is in ``to``'s mailbox (OTP's router: hand the
        caller on, never proxy). Return the result from the handler.
        """
        ...


class Envelope(Generic[M]):
    """A message in flight. Settled exactly once: first settle wins, later ones are dropped.

    Strictly private to the actor runtime; handlers see it as a :class:`RequestContext`.
    """

    __slots__ = (
        "_abandoned",
        "_done",
        "_error",
        "_event",
        "_progress",
        "_scope",
        "_value",
        "caller",
        "deadline",
        "message",
    )

    def __init__(
        self,
        message: M,
        *,
        deadline: float,
        progress: ProgressSink | None = None,
        expects_reply: bool = True,
        caller: str = "",
    ) -> None:
        self.message = message
        self.caller = caller
        self.deadline = deadline
        self._progress = progress
        self._event: anyio.Event | None = anyio.Event() if expects_reply else None
        self._done = False
        self._abandoned = False
        self._value: Any = None
        self._error: BridgeError | None = None
        self._scope: anyio.CancelScope | None = None

    @classmethod
    def stop_token(cls) -> Envelope[Any]:
        """A message-less envelope that tells an idle handler task to exit."""
        token: Envelope[Any] = cls(None, deadline=0.0, expects_reply=False)  # type: ignore[arg-type]
        return token

    @property
    def is_stop_token(self) -> bool:
        return self.message is None

    # --- the handler's side -------------------------------------------------
    @property
    def wants_progress(self) -> bool:
        return self._progress is not None and not self._done

    def remaining(self) -> float:
        return self.deadline - anyio.current_time()

    async def report_progress(self, progress: Any) -> None:
        sink = self._progress
        if sink is None or self._done:
            return
        try:
            await sink(progress)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:
            # The sink belongs to the asker; its failure must not crash the actor.
            log.warning("progress sink failed; dropping it", exc_info=True)
            self._progress = None

    async def forward(self, to: ActorRef[Any], message: Message) -> Forwarded:
        # Once posted, the envelope belongs to ``to``: its handler attaches its own scope, so an
        # asker that gives up cancels the work there, and the forwarding actor can crash or
        # restart without touching the request. Until then the forwarder's scope stays attached,
        # so an asker that gives up while the post waits for mailbox room cancels the post.
        mine = self._scope
        self.message = message  # type: ignore[assignment]  # the envelope changes hands and kinds
        await to._post(self)
        if self._scope is mine:
            self._scope = None
        return FORWARDED

    def attach_scope(self, scope: anyio.CancelScope) -> None:
        self._scope = scope
        if self._abandoned:
            scope.cancel()

    def settle(self, value: object) -> bool:
        if self._done:
            return False
        self._done = True
        self._progress = None  # nothing reports after the end; do not keep the asker's sink alive
        self._value = value
        if self._event is not None:
            self._event.set()
        return True

    def settle_error(self, error: BridgeError) -> bool:
        if self._done:
            return False
        self._done = True
        self._progress = None
        self._error = error
        if self._event is not None:
            self._event.set()
        return True

    # --- the asker's side ---------------------------------------------------
    @property
    def expects_reply(self) -> bool:
        return self._event is not None

    @property
    def done(self) -> bool:
        return self._done

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def abandon(self) -> None:
        """The asker gave up: stop the work it asked for, wherever it is."""
        self._abandoned = True
        if self._scope is not None:
            self._scope.cancel()

    async def wait(self) -> None:
        assert self._event is not None, "tell() envelopes have no reply to wait for"
        await self._event.wait()

    def outcome(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value
