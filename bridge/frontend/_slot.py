"""Where the tools find the running bridge, which may start after the server answers ``initialize``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from bridge.errors import ActorUnavailableError

if TYPE_CHECKING:
    from bridge.app import Bridge

__all__ = ["BridgeSlot"]


class BridgeSlot:
    """Where the tools find the running bridge, which may start after the server does.

    ``serve_stdio`` answers ``initialize`` before the actor system is up; a tool called
    before then waits here for it. :meth:`wanted` tells the opener that someone waits.
    """

    def __init__(self, bridge: Bridge | None = None) -> None:
        self._bridge = bridge
        self._error: BaseException | None = None
        self._ready: anyio.Event | None = None
        self._wanted: anyio.Event | None = None

    def _events(self) -> tuple[anyio.Event, anyio.Event]:
        if self._ready is None or self._wanted is None:
            self._ready, self._wanted = anyio.Event(), anyio.Event()
        return self._ready, self._wanted

    def set(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._events()[0].set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._events()[0].set()

    @property
    def caller(self) -> str:
        """The session the tools ask for (``Bridge.caller``); ``""`` before the bridge is set."""
        return self._bridge.caller if self._bridge is not None else ""

    async def wanted(self) -> None:
        """Return once a tool waits for the bridge."""
        await self._events()[1].wait()

    async def get(self) -> Bridge:
        if self._bridge is not None:
            return self._bridge
        ready, wanted = self._events()
        wanted.set()
        await ready.wait()
        if self._bridge is None:
            raise ActorUnavailableError(
                f"the bridge failed to start ({self._error!r}); see its log on stderr, fix the cause and restart it",
            )
        return self._bridge
