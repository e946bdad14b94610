"""The shared bridge: one actor system for every session that attaches over the user's socket.

Each connection is one MCP session (a relay's stdio, relayed): it gets the
shared registry, workers, slots, queues, JIT-load gate and breakers, and child
servers of its own, seen from the relay's working directory (see
:func:`bridge.app.open_session`). The bridge exits ``idle_exit`` seconds after
the last session ended, on ``daemon stop``, or on SIGTERM/SIGINT/SIGHUP;
either way the socket is removed and every child process group is stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import anyio
import msgspec
from anyio.abc import SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from bridge.app import Bridge, open_bridge, open_session
from bridge.children.process import ProcessGroups
from bridge.errors import BridgeError
from bridge.frontend import DEFAULT_OUTPUT_LIMIT, BridgeSlot, ToolCatalog, create_server
from bridge.frontend._stdio import EOF_GRACE, stop_signal_receiver
from bridge.messages import AwaitSessionJobs
from bridge.settings import BridgeSettings
from bridge.shared._attach import ATTACH_LIMIT, Attach, decode_attach
from bridge.shared._lines import SocketLines, SocketWire
from bridge.shared._paths import SharedPaths

__all__ = ["SharedBridge", "serve_shared"]

log = logging.getLogger("bridge.shared")

ATTACH_TIMEOUT: Final = 5.0
"""Seconds a new connection may take to say what it is for."""
SHUTDOWN_LIMIT: Final = 3.0
"""Seconds from the decision to stop until everything is stopped, cancelled if need be."""


@dataclass(slots=True)
class _Session:
    pid: int
    cwd: str
    attached_at: float


class SharedBridge:
    """The sessions of one shared bridge, its idle clock and its stop."""

    def __init__(self, bridge: Bridge, paths: SharedPaths, *, version: str) -> None:
        self.bridge = bridge
        self.paths = paths
        self.version = version
        self.started_at = anyio.current_time()
        self.stop = anyio.Event()
        self._sessions: dict[int, _Session] = {}
        self._serial = 0
        self._changed = anyio.Event()
        # What the SDK builds for each tool (~80 ms for them all), built by the first session's server and
        # shared by every later one: a session's server is then made in a millisecond or two.
        self._tools = ToolCatalog()

    def status(self) -> dict[str, Any]:
        now = anyio.current_time()
        try:
            models = sorted(c.name for c in self.bridge.supervisor.child_supervisor("workers").which_children())
        except Exception:  # a status must answer whatever state the tree is in
            models = []
        return {
            "pid": os.getpid(),
            "name": self.paths.name,
            "version": self.version,
            "socket": str(self.paths.socket),
            "uptime_s": round(now - self.started_at, 1),
            "sessions": [
                {"id": n, "pid": s.pid, "cwd": s.cwd, "attached_s": round(now - s.attached_at, 1)}
                for n, s in self._sessions.items()
            ],
            "models": models,
        }

    async def idle_exit(self, seconds: float) -> None:
        """Set :attr:`stop` once no session has been attached, and no job has run, for ``seconds``."""
        while True:
            changed = self._changed
            if self._sessions:
                await changed.wait()
                continue
            with anyio.move_on_after(seconds):
                await changed.wait()
                continue
            if await self._outwait_jobs(changed):
                continue  # the idle clock starts again from the last job's end
            log.info("no session for %g s: the shared bridge stops", seconds)
            self.stop.set()
            return

    async def _outwait_jobs(self, changed: anyio.Event) -> bool:
        """Wait for the jobs still running (a session may have left one behind) or for a session to attach;
        whether there was anything to wait for."""
        jobs = self.bridge.jobs
        if jobs is None:
            return False
        waited = 0
        async with anyio.create_task_group() as tg:

            async def until_a_session_attaches() -> None:
                await changed.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(until_a_session_attaches)
            with contextlib.suppress(BridgeError):
                waited = await jobs.ask(AwaitSessionJobs(), timeout=self.bridge.settings.jobs.time_budget)
            tg.cancel_scope.cancel()
        if waited:
            log.info("no session, and %d job(s) were running: the shared bridge stayed until they ended", waited)
        return bool(waited) or changed.is_set()

    async def handle(self, stream: SocketStream) -> None:
        """One connection: read what it is for, then answer it; nothing it sends can stop the bridge."""
        async with stream:
            try:
                await self._handle(stream)
            except Exception:
                log.exception("a connection to the shared bridge failed; the bridge keeps running")

    async def _handle(self, stream: SocketStream) -> None:
        buffered = BufferedByteReceiveStream(stream)
        line: bytes | None = None
        with anyio.move_on_after(ATTACH_TIMEOUT):
            with contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound):
                line = await buffered.receive_until(b"\n", ATTACH_LIMIT)
        if line is None:
            return
        try:
            attach = decode_attach(line)
        except ValueError as exc:
            await _reply(stream, {"error": f"not an attach line: {exc}"})
            return
        if attach.kind == "status":
            await _reply(stream, self.status())
        elif attach.kind == "stop":
            await _reply(stream, {"stopping": True, "pid": os.getpid()})
            log.info("asked to stop by pid %d", attach.pid)
            self.stop.set()
        else:
            await self._serve_session(stream, buffered, attach)

    async def _serve_session(self, stream: SocketStream, buffered: BufferedByteReceiveStream, attach: Attach) -> None:
        self._serial += 1
        number = self._serial
        with self._attached(number, attach):
            await stream.send(msgspec.json.encode({"attached": number, "pid": os.getpid()}) + b"\n")
            log.info("session %d attached (pid %d, %s)", number, attach.pid, attach.cwd)
            slot = BridgeSlot()
            settings = msgspec.structs.replace(self.bridge.settings, tools=attach.tools)
            output_limit = attach.output_limit or DEFAULT_OUTPUT_LIMIT
            server = create_server(slot, settings=settings, output_limit=output_limit, catalog=self._tools)
            lines, wire = SocketLines(buffered), SocketWire(stream)
            serving = anyio.CancelScope()
            ended = anyio.Event()
            async with anyio.create_task_group() as tg:

                async def end_after_eof() -> None:
                    # Like serve's stdin EOF: calls in flight get EOF_GRACE to answer, then are cancelled.
                    await lines.eof.wait()
                    serving.deadline = min(serving.deadline, anyio.current_time() + EOF_GRACE)

                tg.start_soon(end_after_eof)
                # The handshake needs no actor: the session's own actors start beside it, as in serve.
                tg.start_soon(self._session_actors, number, attach, slot, ended)
                with serving:
                    await server.serve_lines(lines, wire)
                ended.set()
                tg.cancel_scope.cancel()
            log.info("session %d ended", number)

    async def _session_actors(self, number: int, attach: Attach, slot: BridgeSlot, ended: anyio.Event) -> None:
        """The session's child-server actors, from attach until the session ends."""
        try:
            async with open_session(
                self.bridge, f"session-{number}", attach.children, working_dir=attach.cwd, environ=attach.environ
            ) as view:
                slot.set(view)
                await ended.wait()
        except Exception as exc:
            log.exception("session %d: its actors did not start", number)
            slot.fail(exc)

    @contextlib.contextmanager
    def _attached(self, number: int, attach: Attach) -> Any:
        self._sessions[number] = _Session(attach.pid, attach.cwd, anyio.current_time())
        self._changed.set()
        self._changed = anyio.Event()
        try:
            yield
        finally:
            del self._sessions[number]
            self._changed.set()
            self._changed = anyio.Event()


async def _reply(stream: SocketStream, value: object) -> None:
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        await stream.send(msgspec.json.encode(value) + b"\n")


def _remove_if_ours(path: os.PathLike[str] | str, inode: int) -> None:
    """Remove the socket unless a newer bridge has already put its own there."""
    with contextlib.suppress(FileNotFoundError):
        if os.stat(path).st_ino == inode:
            os.unlink(path)


async def _stop_on_signals(signals: AsyncIterator[int], shared: SharedBridge) -> None:
    async for signum in signals:
        log.info("received %s: the shared bridge stops", signal.Signals(signum).name)
        shared.stop.set()


async def serve_shared(
    settings: BridgeSettings,
    paths: SharedPaths,
    *,
    version: str,
    handle_signals: bool = True,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the shared bridge on ``paths.socket`` until it is idle, stopped or signalled.

    The caller holds ``paths.lock`` or knows that no other bridge of this name runs: an existing
    socket file is replaced. Started with ``TaskGroup.start``, it reports started once the socket
    accepts connections.
    """
    groups = ProcessGroups()
    everything = anyio.CancelScope()
    with stop_signal_receiver(handle_signals) as signals:
        try:
            with everything:
                async with open_bridge(settings, child_servers=False, groups=groups) as bridge:
                    listener = await anyio.create_unix_listener(paths.socket, mode=0o600)
                    inode = os.stat(paths.socket).st_ino
                    shared = SharedBridge(bridge, paths, version=version)
                    try:
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(listener.serve, shared.handle)
                            tg.start_soon(shared.idle_exit, settings.idle_exit)
                            if signals is not None:
                                tg.start_soon(_stop_on_signals, signals, shared)
                            log.info("shared bridge %s serving on %s", paths.name, paths.socket)
                            task_status.started()
                            await shared.stop.wait()
                            _remove_if_ours(paths.socket, inode)  # new relays start a new bridge from here on
                            everything.deadline = anyio.current_time() + SHUTDOWN_LIMIT
                            tg.cancel_scope.cancel()
                    finally:
                        _remove_if_ours(paths.socket, inode)
                        with anyio.CancelScope(shield=True):
                            await listener.aclose()
            if everything.cancelled_caught:
                log.warning("stopping took longer than %.0f s; the rest was cancelled", SHUTDOWN_LIMIT)
        finally:
            with anyio.CancelScope(shield=True):
                groups.close()
                await groups.stop_all(term_grace=0.5, kill_wait=0.2)
