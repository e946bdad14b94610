"""Serving MCP over stdio: nothing but JSON-RPC on stdout, and a clean exit when stdin closes.

The SDK's own stdin reader blocks in a worker thread that cancellation cannot
stop, so a server whose stdin stays open cannot be shut down (it waits for
EOF). :class:`StdinLines` reads stdin without a thread instead: the
descriptor is moved to a private duplicate (fd 0 then reads ``/dev/null``, so
nothing else in the process can steal the wire) and read when the event loop
says it is readable. :class:`StdoutWire` does the same for stdout (fd 1 then
points at stderr, so a stray ``print`` cannot corrupt the wire) and writes
each message without the two thread hops of the SDK's writer.

When stdin reaches EOF the client is gone: requests in flight are cancelled
(which cancels their actor work and closes their LLM streams), the actor
system shuts down, and :func:`serve_stdio` returns within a second: the MCP
SDK's client waits 2 s and then sends SIGTERM. SIGTERM, SIGINT and SIGHUP do
the same (and the process exits 0, an orderly stop). Child MCP servers get
their stdin closed; a process group still running CHILD_EXIT_GRACE after the
shutdown began gets SIGTERM, and SIGKILL CHILD_KILL_GRACE later, all groups at
once. The signals stay handled from before the first child starts until the
last one is gone, so one arriving at any moment (start-up, shutdown) cannot
kill this process and orphan its children; a signal during shutdown kills
every child's group at once.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import anyio
import anyio.lowlevel

from bridge.children.process import ProcessGroups
from bridge.fdio import POSIX, StdinLines, StdoutWire
from bridge.frontend._format import DEFAULT_OUTPUT_LIMIT
from bridge.frontend._server import create_server
from bridge.frontend._slot import BridgeSlot
from bridge.settings import BridgeSettings

__all__ = [
    "CHILD_EXIT_GRACE",
    "CHILD_KILL_GRACE",
    "EOF_GRACE",
    "SHUTDOWN_LIMIT",
    "STOP_SIGNALS",
    "serve_stdio",
    "stop_signal_receiver",
]

log = logging.getLogger("bridge.frontend")

EOF_GRACE: Final = 0.2
"""Seconds requests in flight may still finish and answer after stdin closed."""
SHUTDOWN_LIMIT: Final = 0.9
"""Seconds from stdin EOF (or a signal) until everything is stopped, cancelled if need be."""
CHILD_EXIT_GRACE: Final = 0.4
"""Seconds from the start of shutdown until every child process group still running gets SIGTERM."""
CHILD_KILL_GRACE: Final = 0.3
"""Seconds a child process group may take to exit after that SIGTERM, before SIGKILL."""
BRIDGE_START_DELAY: Final = 0.25
"""Seconds the actor system waits after start-up for the handshake to be answered (unless a tool needs it)."""

_KILL_WAIT: Final = 0.2  # for the kernel to finish off a SIGKILLed group
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""The signals that stop a bridge in order (children first), whichever way it serves."""


class _Shutdown:
    """One shutdown, however it is asked for (stdin EOF, the wire ending, a signal) and however often.

    The first request tightens the deadlines and closes the registry of child process groups
    (nothing starts any more); ``started_at`` then times the children's SIGTERM and SIGKILL.
    """

    def __init__(self, serving: anyio.CancelScope, everything: anyio.CancelScope, groups: ProcessGroups) -> None:
        self._serving = serving
        self._everything = everything
        self._groups = groups
        self.started = anyio.Event()
        self.started_at = math.inf
        self.hurried = False

    def begin(self, grace: float) -> None:
        """Stop serving after ``grace`` (requests in flight may answer), everything after SHUTDOWN_LIMIT."""
        now = anyio.current_time()
        if not self.started.is_set():
            self.started_at = now
            self._groups.close()
            self._everything.deadline = min(self._everything.deadline, now + SHUTDOWN_LIMIT)
            self.started.set()
        self._serving.deadline = min(self._serving.deadline, now + grace)

    def hurry(self) -> None:
        """A second signal: kill every child process group now and cancel whatever still runs."""
        self.begin(0.0)
        self.hurried = True
        self._groups.signal_all(signal.SIGKILL)
        self._everything.cancel()


async def _stop_on_signals(signals: AsyncIterator[int], shutdown: _Shutdown) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if shutdown.started.is_set():
            log.warning("received %s during shutdown: killing the child servers' process groups now", name)
            shutdown.hurry()
        else:
            log.info("received %s: shutting down", name)
            shutdown.begin(0.0)


async def _stop_after_eof(stdin: StdinLines, shutdown: _Shutdown) -> None:
    await stdin.eof.wait()
    log.info("stdin closed: shutting down")
    shutdown.begin(EOF_GRACE)


async def _stop_children(shutdown: _Shutdown, groups: ProcessGroups) -> None:
    """The backstop of the children's own (orderly, one at a time) stop sequences when the bridge exits.

    Their stdin is closed as soon as the actors stop; whatever group still runs CHILD_EXIT_GRACE
    after the shutdown began is sent SIGTERM, all at once, and SIGKILL CHILD_KILL_GRACE later.
    """
    await shutdown.started.wait()
    await anyio.sleep_until(shutdown.started_at + CHILD_EXIT_GRACE)
    await groups.stop_all(term_grace=CHILD_KILL_GRACE, kill_wait=_KILL_WAIT)


def stop_signal_receiver(enabled: bool) -> contextlib.AbstractContextManager[AsyncIterator[int] | None]:
    if not enabled:
        return contextlib.nullcontext()
    return anyio.open_signal_receiver(*STOP_SIGNALS)


async def _run_bridge(
    settings: BridgeSettings, slot: BridgeSlot, stop: anyio.Event, groups: ProcessGroups, child_servers: bool
) -> None:
    """Open the actor system once a tool wants it (or shortly after start), keep it until ``stop``."""
    # initialize and tools/list need no actor: let them be answered first, then start the actors.
    async with anyio.create_task_group() as tg:

        async def first(event_wait: Callable[[], Awaitable[None]]) -> None:
            await event_wait()
            tg.cancel_scope.cancel()

        tg.start_soon(first, slot.wanted)
        tg.start_soon(first, stop.wait)
        tg.start_soon(first, lambda: anyio.sleep(BRIDGE_START_DELAY))
    if stop.is_set():
        slot.fail(RuntimeError("the bridge was stopped before it started"))
        return
    from bridge.app import open_bridge

    try:
        async with open_bridge(settings, child_servers=child_servers, groups=groups) as bridge:
            slot.set(bridge)
            # Everything loaded so far (the SDK, pydantic's schemas, the actors: ~100k objects) lives as
            # long as the process. Out of the collector's sight, a full collection takes well under a
            # millisecond instead of ~50 ms, which would otherwise stall every call in flight now and then.
            gc.freeze()
            await stop.wait()
    except Exception as exc:
        # Keep serving: every tool then answers actor_unavailable with the reason, which a client
        # shows, where a dead server would just vanish from the session (Claude Code does not restart it).
        log.exception("the bridge's actors stopped")
        slot.fail(exc)


async def serve_stdio(
    settings: BridgeSettings,
    *,
    child_servers: bool = True,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
    handle_signals: bool = True,
) -> None:
    """Run the bridge and serve it over this process's stdin/stdout until stdin closes (or a signal).

    No network is touched before a tool call needs it, and the actor system starts right after the
    handshake, so ``initialize`` is answered at once even when no LLM server is up.
    """
    serving = anyio.CancelScope()
    everything = anyio.CancelScope()
    groups = ProcessGroups()
    shutdown = _Shutdown(serving, everything, groups)
    slot = BridgeSlot()
    server = create_server(slot, settings=settings, output_limit=output_limit)
    stop = anyio.Event()
    stdin: StdinLines | None = None
    stdout: StdoutWire | None = None
    # The signals are ours from before any child starts until after the last one is gone: one that
    # came while the actors stop would otherwise kill this process and leave the children running.
    with stop_signal_receiver(handle_signals and POSIX) as signals:
        try:
            # Elsewhere than POSIX, the SDK's own (thread-based) stdio is used: it stops at stdin EOF too.
            if POSIX:
                stdin = StdinLines.claim()
                stdout = StdoutWire.claim()
            async with anyio.create_task_group() as guard:
                if signals is not None:
                    guard.start_soon(_stop_on_signals, signals, shutdown)
                guard.start_soon(_stop_children, shutdown, groups)
                try:
                    with everything:
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(_run_bridge, settings, slot, stop, groups, child_servers)
                            async with anyio.create_task_group() as watchers:
                                if stdin is not None:
                                    watchers.start_soon(_stop_after_eof, stdin, shutdown)
                                with serving:
                                    if stdin is not None and stdout is not None:
                                        await server.serve_lines(stdin, stdout)
                                    else:
                                        await server.run_stdio_async()
                                watchers.cancel_scope.cancel()
                            # The actors shut down in order (with their own grace), bounded by SHUTDOWN_LIMIT.
                            shutdown.begin(0.0)
                            stop.set()
                    if everything.cancelled_caught and not shutdown.hurried:
                        log.warning("shutdown took longer than %.1f s; the rest was cancelled", SHUTDOWN_LIMIT)
                finally:
                    # Every stop sequence has run; a group still registered outlived its own: kill it.
                    with anyio.CancelScope(shield=True):
                        groups.close()
                        await groups.stop_all(term_grace=0.0, kill_wait=_KILL_WAIT)
                    guard.cancel_scope.cancel()
        finally:
            if stdout is not None:
                stdout.release()
            if stdin is not None:
                stdin.release()
            sys.stderr.flush()
