"""The simulated LM Studio as an async context manager.

Usage::

    async with SimServer(default_config()) as sim:
        sim.script("qwen/qwen3-coder-30b", [Say("hello"), CallTools([ToolCallSpec("read_file", '{"path":"a"}')])])
        async with httpx.AsyncClient(base_url=sim.url) as client:
            ...
        assert sim.stats.model("qwen/qwen3-coder-30b").completed == 2

It runs in the caller's event loop (asyncio or trio) until the ``async with``
block ends; leaving it cancels every connection and generation. For a server in
another process see :mod:`bridge.sim.cli` (``--port 0 --port-file PATH``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import Listener, SocketStream, TaskGroup

from bridge.sim._config import SimConfig, default_config
from bridge.sim._http import bound_port, listen, serve_http
from bridge.sim._routes import Router
from bridge.sim._script import Turn
from bridge.sim._state import RecordedRequest, ServerState
from bridge.sim._stats import SimStats

__all__ = ["SimServer"]


class _State(enum.Enum):
    UNOPENED = "unopened"  # constructed, not entered
    RUNNING = "running"  # listening
    CLOSED = "closed"  # exited; a server is not reusable


class SimServer:
    """A simulated LM Studio listening on loopback, inside the current event loop.

    Args:
        config: Models and switches; :func:`default_config` if omitted.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config if config is not None else default_config()
        self._lifecycle = _State.UNOPENED
        self._tg: TaskGroup | None = None
        self._state: ServerState | None = None
        self._port = 0

    async def __aenter__(self) -> Self:
        if self._lifecycle is not _State.UNOPENED:
            raise RuntimeError("A SimServer can be started only once; create a new one to serve again.")
        listener = await listen(self.config.host, self.config.port)  # a taken port fails here, as a plain OSError
        tg = anyio.create_task_group()
        await tg.__aenter__()
        state = ServerState(self.config, tg)
        self._port = bound_port(listener)
        tg.start_soon(self._serve, state, listener)
        self._tg, self._state = tg, state
        self._lifecycle = _State.RUNNING
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        self._lifecycle = _State.CLOSED
        self._tg.cancel_scope.cancel()
        # The block's own exception is not the server's: let it propagate as is, not wrapped in a group.
        await self._tg.__aexit__(None, None, None)
        return None

    async def _serve(self, state: ServerState, listener: Listener[SocketStream]) -> None:
        def count() -> None:
            state.stats.http_requests += 1

        await serve_http(listener, Router(state), unresponsive=lambda: state.unresponsive, on_request=count)

    # --- public surface ---------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        self._running()
        return self._port

    @property
    def url(self) -> str:
        """Base URL without ``/v1``, e.g. ``http://127.0.0.1:40123``."""
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def stats(self) -> SimStats:
        """Live counters (see :class:`~bridge.sim.SimStats`)."""
        return self._running().stats

    @property
    def unresponsive(self) -> bool:
        """When true, new connections are accepted and never answered (connect/first-byte budget tests)."""
        return self._running().unresponsive

    @unresponsive.setter
    def unresponsive(self, value: bool) -> None:
        self._running().unresponsive = value

    def script(self, model: str, turns: Iterable[Turn]) -> None:
        """Queue turns that the next requests to ``model`` take in order (then the default reply resumes)."""
        state = self._running()
        if model not in state.registry.specs:
            known = ", ".join(state.registry.specs) or "none"
            raise KeyError(f"No simulated model {model!r} to script; configured models: {known}.")
        state.scripts.add(model, turns)

    def pending_turns(self, model: str) -> int:
        """Scripted turns not yet taken by a request."""
        return self._running().scripts.pending(model)

    def requests(self, model: str | None = None) -> list[RecordedRequest]:
        """Requests received by ``model`` (or by all models, by arrival), oldest first."""
        return self._running().requests(model)

    def reset(self) -> None:
        """Zero the counters, drop pending scripts and the request log (loaded models stay loaded)."""
        self._running().reset()

    def _running(self) -> ServerState:
        if self._state is None or self._lifecycle is not _State.RUNNING:
            raise RuntimeError("The SimServer is not running: use it inside `async with SimServer(...) as sim:`.")
        return self._state
