"""MCPSessionActor: one child MCP server, kept running and served concurrently.

One actor per configured child server. It owns the child's whole life: the
process (or HTTP connection), the MCP session, the cached tool list, the pings
that tell a hung child from a busy one, and the restarts.

States (``DescribeSession().state``)::

    not_started --first request, or eager--> starting --initialized--> ready
                                               ^    |                    |
                                               |    | did not start      | died, or no answer to a ping
                                  backoff over |    v                    v
                                               +-- restarting <----------+
                                                    |
                                                    | too many failures in a row
                                                    v
                                                  failed (until its configuration changes)

Why the restarts live *inside* the actor (a background task running the
child), not in the supervisor:

* While the child is down the mailbox must keep answering, at once, with
  ``child_server_down`` and a ``retry_after``. A supervisor restart rebuilds
  the actor and leaves the mailbox unread meanwhile: callers would queue
  instead of failing fast.
* Backoff needs memory across incarnations (how many failures in a row);
  a supervisor restart starts with fresh state, and restarts at once.
* The supervisor's restart intensity is shared by all its children: one
  flapping child server would make it give up and take every other child
  down with it.

The supervisor still restarts the actor if the actor itself has a bug (a
handler raising something that is not a :class:`~bridge.errors.BridgeError`);
the child runs inside the actor's task group, so it is stopped with it.

Stopping the actor is graceful: calls in flight get up to ``shutdown_grace``
seconds to finish on the child before it is closed (stdin closed, then its
whole process group signalled; see :mod:`bridge.children.process`). To make
that possible the connection runs in a shielded scope that only the actor's
own stop logic cancels, after the drain.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final, final

import anyio
import httpx2
import pydantic
from mcp import ClientSession, MCPError
from mcp import types as mcp_types

from bridge.children import ServerConfig, StdioChild
from bridge.children.connection import ChildConnection, WatchedReadStream, open_transport
from bridge.children.content import tool_result
from bridge.children.process import ProcessGroups
from bridge.errors import BridgeError, ChildServerDownError, DeadlineExceededError, ToolError
from bridge.messages import (
    CallTool,
    ChildServerInfo,
    ChildToolInfo,
    ChildToolList,
    ChildToolResult,
    DescribeSession,
    GetSessionConfig,
    ListTools,
    Progress,
    SessionMessage,
)
from bridge.runtime import Actor, RequestContext
from bridge.runtime.errors import single_cause
from bridge.server_address import public_url
from bridge.settings import ChildSettings

__all__ = ["MCPSessionActor", "SessionPolicy", "SessionState"]

log = logging.getLogger("bridge.actors.mcp_session")

_CONNECTION_CLOSED: Final = mcp_types.CONNECTION_CLOSED
_REQUEST_TIMEOUT: Final = mcp_types.REQUEST_TIMEOUT
_EXIT_WAIT: Final = 0.25  # a failed call waits this long for the exit code and last stderr lines
_DEADLINE_MARGIN: Final = 0.05  # our own timeout fires this much before the asker's, so it names the tool
_MAX_TOOL_PAGES: Final = 100  # a child that pages forever must not hang the start
# Failures of a child or its transport that need no traceback in the log (anything else gets one).
_EXPECTED_FAILURES: Final = (
    OSError,
    httpx2.TransportError,
    httpx2.HTTPStatusError,
    pydantic.ValidationError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
)


class SessionState(enum.StrEnum):
    """Where a child server is in its life (``ChildServerInfo.state``)."""

    NOT_STARTED = "not_started"
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    FAILED = "failed"


@final
@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How an :class:`MCPSessionActor` watches and restarts its child. All times in seconds.

    Attributes:
        ping_interval: An idle child (no request in flight, no answer for this long) is pinged.
        ping_timeout: A ping unanswered this long means the child hangs: it is restarted.
        backoff_initial: Wait before the first restart after a failure; doubles per failure in a row.
        backoff_max: Cap of that wait.
        max_restarts: Failed restarts in a row after which the server is ``failed`` for good
            (a configuration change or a bridge restart brings it back).
        stable_after: A child that served a request, or stayed up this long, resets the count
            of failures in a row; one that dies sooner counts as a failure.
    """

    ping_interval: float = 10.0
    ping_timeout: float = 5.0
    backoff_initial: float = 0.1
    backoff_max: float = 10.0
    max_restarts: int = 8
    stable_after: float = 10.0

    def __post_init__(self) -> None:
        for field in ("ping_interval", "ping_timeout", "backoff_initial", "backoff_max", "stable_after"):
            value = getattr(self, field)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"SessionPolicy.{field} must be a positive number of seconds, not {value!r}")
        if self.max_restarts < 0:
            raise ValueError(f"SessionPolicy.max_restarts must be >= 0, not {self.max_restarts}")

    def backoff(self, failures: int) -> float:
        """Seconds to wait before the next attempt after ``failures`` (>= 1) failures in a row."""
        return min(self.backoff_initial * 2.0 ** max(failures - 1, 0), self.backoff_max)


class MCPSessionActor(Actor[SessionMessage]):
    """Serves :data:`~bridge.messages.SessionMessage` for one child MCP server.

    ``ListTools`` and ``CallTool`` are served concurrently (the child gets them
    in parallel), each under a deadline: ``CallTool.timeout``, else the
    server's ``timeout``, else ``settings.call_timeout``, and never past the
    asker's own deadline. ``DescribeSession`` answers at once, in any state.

    Errors, all naming the server:

    * the child's tool said no: not an error, a result with ``is_error``;
    * the child died mid-call: ``ChildServerDownError`` at once, quoting its exit
      code and last stderr lines; the child is restarted with backoff;
    * the child is restarting: ``ChildServerDownError`` at once, with ``retry_after``;
    * the child failed for good: ``ChildServerDownError``, not retryable;
    * no answer in time: ``DeadlineExceededError`` (the call is cancelled on the child);
    * a JSON-RPC error, or a result that breaks the tool's own output schema: ``ToolError``.

    Args:
        config: The server, as configured.
        settings: Deadlines and the stop grace of child servers.
        policy: Pings and restarts (defaults: ping after 10 s idle, backoff 0.1 s doubling to 10 s,
            failed after 8 failed restarts in a row).
        groups: The bridge's registry of child process groups, which its child joins.
    """

    def __init__(
        self,
        config: ServerConfig,
        settings: ChildSettings,
        *,
        policy: SessionPolicy | None = None,
        groups: ProcessGroups | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.settings = settings
        self.policy = policy or SessionPolicy()
        self._groups = groups
        self._state = SessionState.NOT_STARTED
        self._changed = anyio.Event()
        self._start_wanted = anyio.Event()
        self._connection: ChildConnection | None = None  # being started, or serving
        self._life = anyio.CancelScope()
        self._closed = False
        self._last_error: BridgeError | None = None
        self._restarts = 0
        self._failures = 0
        self._retry_at = 0.0
        self._active = 0  # ListTools/CallTool requests being served
        self._drained = anyio.Event()
        self._drained.set()

    @property
    def server(self) -> str:
        return self.config.name

    @property
    def state(self) -> SessionState:
        return self._state

    # --- the actor ------------------------------------------------------------------------------

    async def on_start(self) -> None:
        self.start_background(self._main, name=f"mcp-session {self.server}")
        if self.config.eager:
            self._want_start()

    async def handle(self, message: SessionMessage, ctx: RequestContext) -> object:
        match message:
            case CallTool():
                return await self._serve(self._call_tool, message, ctx)
            case ListTools():
                return await self._serve(self._list_tools, message, ctx)
            case DescribeSession():
                return self.describe()
            case GetSessionConfig():
                return self.config

    def describe(self) -> ChildServerInfo:
        connection = self._connection
        state = self._state
        if state is SessionState.READY and connection is not None and connection.ended.is_set():
            state = SessionState.RESTARTING  # dead, being torn down
        ready = state is SessionState.READY and connection is not None
        note = None
        if state is SessionState.RESTARTING and self._retry_at > anyio.current_time():
            note = f"next attempt in {max(self._retry_at - anyio.current_time(), 0.0):.1f} s"
        return ChildServerInfo(
            name=self.server,
            transport=self.config.transport,
            source=self.config.source,
            state=state.value,
            tool_count=len(connection.tools) if ready and connection is not None else None,
            last_error=None if self._last_error is None else self._last_error.message,
            restarts=self._restarts,
            pid=None if connection is None else connection.pid,
            note=note,
        )

    # --- serving requests -----------------------------------------------------------------------

    async def _serve(
        self,
        serve: Callable[[Any, ChildConnection, RequestContext], Coroutine[Any, Any, object]],
        message: CallTool | ListTools,
        ctx: RequestContext,
    ) -> object:
        """Count the request as active (pings wait, a stop drains it), wait for the child, serve."""
        self._active += 1
        if self._active == 1:
            self._drained = anyio.Event()
        try:
            connection = await self._ready(ctx)
            return await serve(message, connection, ctx)
        finally:
            self._active -= 1
            if self._active == 0:
                self._drained.set()

    async def _ready(self, ctx: RequestContext) -> ChildConnection:
        """The live connection: starts the child if needed and waits for it, or fails fast."""
        while True:
            if self._closed:
                raise ChildServerDownError(
                    f"child {self.server!r} is being stopped (removed or changed in the configuration, or the "
                    "bridge is shutting down); retry to reach its replacement, if any",
                    retry_after=0.1,
                    details={"server": self.server, "reason": "stopping"},
                )
            state = self._state
            connection = self._connection
            if state is SessionState.READY and connection is not None:
                if connection.ended.is_set():  # dead, and not yet torn down: fail now, not after the teardown
                    raise await self._lost_error(connection, None)
                return connection
            if state is SessionState.RESTARTING:
                raise self._down_error()
            if state is SessionState.FAILED:
                raise self._failed_error()
            if state is SessionState.NOT_STARTED:
                self._want_start()
            changed = self._changed
            with anyio.CancelScope(deadline=ctx.deadline - _DEADLINE_MARGIN) as scope:
                await changed.wait()
            if scope.cancelled_caught:
                raise DeadlineExceededError(
                    f"child {self.server!r} was still starting when the request's deadline came; nothing was sent "
                    f"to it. It may take up to {self._startup_timeout():g} s (startup_timeout) to start: retry",
                    retry_after=0.5,
                    details={"server": self.server, "state": self._state.value},
                )

    def _budget(self, requested: float | None, ctx: RequestContext, what: str) -> float:
        own = requested or self.config.timeout or self.settings.call_timeout
        remaining = ctx.remaining()
        budget = min(own, remaining - min(_DEADLINE_MARGIN, remaining / 10))
        if budget <= 0:
            raise DeadlineExceededError(
                f"no time left to send {what} to child {self.server!r}: the caller's deadline has passed",
                details={"server": self.server},
            )
        return budget

    async def _call_tool(self, message: CallTool, connection: ChildConnection, ctx: RequestContext) -> ChildToolResult:
        what = f"tools/call {message.tool!r}"
        budget = self._budget(message.timeout, ctx, what)
        session = connection.session
        assert session is not None, "published only once initialized"

        label = f"{self.server}/{message.tool}"

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            note = message or label
            await ctx.report_progress(Progress(stage="tool", message=note, progress=progress, total=total))

        started = anyio.current_time()
        try:
            result = await session.call_tool(
                message.tool,
                message.arguments,
                read_timeout_seconds=budget,
                # A progress token only when someone listens: the child may then report progress.
                progress_callback=on_progress if ctx.wants_progress else None,
            )
        except MCPError as exc:
            raise await self._request_error(connection, exc, what, budget) from exc
        except (RuntimeError, pydantic.ValidationError) as exc:
            # The SDK's checks of the result (output schema, input-required results) or of its shape.
            raise ToolError(
                f"child {self.server!r} answered {what} with a result the bridge cannot accept: {exc}",
                details={"server": self.server, "tool": message.tool},
            ) from exc
        connection.served = True
        connection.last_activity = anyio.current_time()
        return tool_result(self.server, message.tool, result, duration=anyio.current_time() - started)

    async def _list_tools(self, message: ListTools, connection: ChildConnection, ctx: RequestContext) -> ChildToolList:
        if message.refresh:
            session = connection.session
            assert session is not None, "published only once initialized"
            budget = self._budget(None, ctx, "tools/list")
            try:
                with anyio.fail_after(budget):
                    connection.tools = await self._fetch_tools(session)
            except MCPError as exc:
                raise await self._request_error(connection, exc, "tools/list", budget) from exc
            except TimeoutError as exc:
                raise self._timeout_error("tools/list", budget) from exc
            except pydantic.ValidationError as exc:
                raise ToolError(
                    f"child {self.server!r} answered tools/list with something that is not a tool list: {exc}",
                    details={"server": self.server},
                ) from exc
            connection.served = True
            connection.last_activity = anyio.current_time()
        return ChildToolList(
            server=self.server, tools=list(connection.tools), allow_destructive=self.config.allow_destructive
        )

    async def _fetch_tools(self, session: ClientSession) -> list[ChildToolInfo]:
        tools: list[ChildToolInfo] = []
        cursor: str | None = None
        for _ in range(_MAX_TOOL_PAGES):
            params = None if cursor is None else mcp_types.PaginatedRequestParams(cursor=cursor)
            page = await session.list_tools(params=params)
            tools += [
                ChildToolInfo(
                    server=self.server,
                    name=tool.name,
                    description=tool.description,
                    input_schema=tool.input_schema,
                    destructive=_marked_destructive(tool.annotations),
                )
                for tool in page.tools
            ]
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def _request_error(self, connection: ChildConnection, exc: MCPError, what: str, budget: float) -> BridgeError:
        if exc.code == _REQUEST_TIMEOUT:
            return self._timeout_error(what, budget)
        if exc.code == _CONNECTION_CLOSED:
            return await self._lost_error(connection, what)
        return ToolError(
            f"child {self.server!r} refused {what}: {exc.message} (JSON-RPC error {exc.code})",
            details={"server": self.server, "jsonrpc_code": exc.code},
        )

    def _timeout_error(self, what: str, budget: float) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"child {self.server!r} did not answer {what} within {budget:.3g} s; the request was cancelled on "
            "the child. Retry with a longer timeout if the tool is slow, or check the child's log if it hangs",
            details={"server": self.server, "budget_s": budget},
        )

    async def _lost_error(self, connection: ChildConnection, what: str | None) -> ChildServerDownError:
        """The error for a request whose connection broke: at once, with the exit code if there is one.

        ``what`` names the request if it had been sent (it may or may not have run), else ``None``.
        """
        child = connection.child
        if connection.end_reason is None and child is not None:
            with anyio.move_on_after(_EXIT_WAIT):
                await child.exited.wait()
        base = connection.end_reason or self._ended_error(connection)
        retry_after = self._retry_after()
        lost = f" {what} was lost with it (it may or may not have run)." if what else ""
        return ChildServerDownError(
            f"{base.message}.{lost} The bridge restarts the server: retry in {retry_after:.2g} s",
            retry_after=retry_after,
            details={**base.details, "server": self.server},
        )

    def _retry_after(self) -> float:
        """Seconds until the next start attempt; an estimate while the lifecycle has not scheduled it yet."""
        now = anyio.current_time()
        if self._state is SessionState.RESTARTING and self._retry_at > now:
            return self._retry_at - now
        return self.policy.backoff_initial

    def _down_error(self) -> ChildServerDownError:
        retry_after = self._retry_after()
        last = self._last_error.message if self._last_error is not None else f"child {self.server!r} went down"
        return ChildServerDownError(
            f"{last}. The bridge restarts it in {retry_after:.2g} s: retry then",
            retry_after=retry_after,
            details={"server": self.server, "state": self._state.value, "failures": self._failures},
        )

    def _failed_error(self) -> ChildServerDownError:
        last = self._last_error.message if self._last_error is not None else "no error recorded"
        where = f" in {self.config.source}" if self.config.source else ""
        return ChildServerDownError(
            f"child {self.server!r} has failed for good: it did not stay up after {self._failures} attempts in a "
            f"row, so the bridge stopped restarting it. Last error: {last}. Fix the server (its stderr is in the "
            f"bridge's log), then edit its entry{where} (a changed entry is restarted) or restart the bridge",
            retryable=False,
            details={"server": self.server, "state": self._state.value, "failures": self._failures},
        )

    # --- the child's life -------------------------------------------------------------------------

    def _want_start(self) -> None:
        """Ask the lifecycle to start the child; it counts as starting from now on."""
        self._start_wanted.set()
        self._set_state(SessionState.STARTING)

    def _set_state(self, state: SessionState) -> None:
        self._state = state
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _startup_timeout(self) -> float:
        return self.config.startup_timeout or self.settings.startup_timeout

    async def _main(self) -> None:
        """The background task: runs the child, shielded, until the actor stops; then drains and closes."""
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._shielded_life)
            try:
                await anyio.sleep_forever()
            finally:
                # The actor is stopping (or crashing): requests in flight may finish on the child first.
                with anyio.move_on_after(self.shutdown_grace, shield=True):
                    while self._active:
                        await self._drained.wait()
                self._closed = True
                self._life.cancel()

    async def _shielded_life(self) -> None:
        # Only _main's stop logic ends this scope: the actor's own cancellation must not cut the
        # connection while requests drain (the session's read loop lives in here).
        with anyio.CancelScope(shield=True), self._life:
            try:
                await self._lifecycle()
            finally:
                self._closed = True
                self._connection = None
                self._set_state(self._state)  # wake waiters: they see _closed

    async def _lifecycle(self) -> None:
        await self._start_wanted.wait()
        while True:
            self._set_state(SessionState.STARTING)
            error, stable = await self._run_connection()
            self._last_error = error
            self._failures = 1 if stable else self._failures + 1
            if not error.retryable or self._failures > self.policy.max_restarts:
                self._set_state(SessionState.FAILED)
                log.error("%s", self._failed_error().message)
                await anyio.sleep_forever()  # failed for good: only a stop ends this
            delay = self.policy.backoff(self._failures)
            self._retry_at = anyio.current_time() + delay
            self._set_state(SessionState.RESTARTING)
            log.warning("%s; restarting it in %.2g s", error.message, delay)
            await anyio.sleep(delay)
            self._restarts += 1

    async def _run_connection(self) -> tuple[ChildServerDownError, bool]:
        """Start the child, serve until it ends; return why it ended and whether it had been stable."""
        connection = ChildConnection(self.server)
        self._connection = connection
        failure: ExceptionGroup[Exception] | None = None
        try:
            async with AsyncExitStack() as stack:
                read, write = await open_transport(
                    self.config, stack, connection, grace=self.settings.stop_grace, groups=self._groups
                )
                task_group = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(task_group.cancel_scope.cancel)  # LIFO: after the session closes, before the join
                session = await stack.enter_async_context(
                    ClientSession(
                        WatchedReadStream(read, connection.end),
                        write,
                        message_handler=connection.on_message,
                        logging_callback=connection.on_log,
                    )
                )
                with anyio.fail_after(self._startup_timeout()):
                    await session.initialize()
                    connection.tools = await self._fetch_tools(session)
                connection.session = session
                connection.ready_at = connection.last_activity = anyio.current_time()
                if connection.child is not None:
                    task_group.start_soon(self._watch_exit, connection.child, connection)
                task_group.start_soon(self._ping, session, connection)
                task_group.start_soon(self._refresh_tools, session, connection)
                self._set_state(SessionState.READY)
                log.info(
                    "child %r ready: %d tools%s",
                    self.server,
                    len(connection.tools),
                    "" if connection.pid is None else f", pid {connection.pid}",
                )
                await connection.ended.wait()
        except* Exception as group:
            # Whatever a child or its transport does must not crash the bridge. except*, because
            # a transport torn down while we are being stopped may raise its own errors beside the
            # cancellation: those are dropped here, the cancellation goes on.
            failure = group
        finally:
            if self._connection is connection:
                self._connection = None
        if failure is not None:
            return self._startup_error(failure, connection), False
        return connection.end_reason or self._ended_error(connection), connection.stable(self.policy.stable_after)

    @staticmethod
    async def _watch_exit(child: StdioChild, connection: ChildConnection) -> None:
        await child.exited.wait()
        connection.end()

    async def _ping(self, session: ClientSession, connection: ChildConnection) -> None:
        """Ping the child whenever it has been idle for ``ping_interval``; restart it if it does not answer."""
        policy = self.policy
        while True:
            await anyio.sleep_until(connection.last_activity + policy.ping_interval)
            now = anyio.current_time()
            if now < connection.last_activity + policy.ping_interval:
                continue  # it answered something meanwhile
            if self._active:
                connection.last_activity = now  # busy, not idle: a slow tool is not a hang
                continue
            with anyio.move_on_after(policy.ping_timeout) as scope:
                try:
                    await session.send_ping()
                except MCPError:
                    connection.end()  # the connection closed; its end says why
                    return
            if scope.cancelled_caught:
                log.warning("child %r did not answer a ping within %g s", self.server, policy.ping_timeout)
                connection.end(
                    ChildServerDownError(
                        f"child {self.server!r} stopped answering: no reply to a ping within {policy.ping_timeout:g} s",
                        details={"server": self.server, "reason": "ping_timeout", "pid": connection.pid},
                    )
                )
                return
            connection.last_activity = anyio.current_time()

    async def _refresh_tools(self, session: ClientSession, connection: ChildConnection) -> None:
        """Re-list the tools whenever the child says they changed (``notifications/tools/list_changed``)."""
        while True:
            await connection.tools_changed.wait()
            connection.tools_changed = anyio.Event()
            try:
                with anyio.fail_after(self.settings.call_timeout):
                    connection.tools = await self._fetch_tools(session)
            except (MCPError, TimeoutError, pydantic.ValidationError) as exc:
                log.warning("child %r: could not refresh its tool list after a change: %s", self.server, exc)
            else:
                connection.last_activity = anyio.current_time()
                log.info("child %r: tool list changed, now %d tools", self.server, len(connection.tools))

    def _ended_error(self, connection: ChildConnection) -> ChildServerDownError:
        if connection.child is not None:
            return connection.child.down_error()
        return ChildServerDownError(
            f"the connection to child {self.server!r} ({public_url(self.config.url or '')}) closed",
            details={"server": self.server, "url": public_url(self.config.url or "")},
        )

    def _startup_error(self, exc: Exception, connection: ChildConnection) -> ChildServerDownError:
        cause = single_cause(exc)
        name = self.server
        details: dict[str, Any] = {"server": name}
        garbage = ""
        if connection.invalid_lines:
            garbage = (
                f"; it wrote {connection.invalid_lines} line(s) to stdout that are not JSON-RPC, the last: "
                f"{connection.last_invalid} (is it an MCP server? stdout is the wire: logs must go to stderr)"
            )
            details["invalid_lines"] = connection.invalid_lines
        child = connection.child
        if child is not None:
            details.update(pid=child.pid, returncode=child.returncode, stderr=child.stderr_tail)
        stderr = [line for line in (child.stderr_tail if child is not None else []) if line.strip()][-5:]
        quoted = f"; its last stderr lines: {' | '.join(stderr)}" if stderr else ""
        if isinstance(cause, ChildServerDownError):
            if connection.ready_at is not None or child is None:
                return cause
            return ChildServerDownError(f"{cause.message}{garbage}", retryable=cause.retryable, details=details)
        if isinstance(cause, TimeoutError):
            details["reason"] = "startup_timeout"
            return ChildServerDownError(
                f"child {name!r} did not finish initializing within {self._startup_timeout():g} s (startup_timeout)"
                f"{garbage}{quoted}",
                details=details,
            )
        if isinstance(cause, MCPError) and cause.code == _CONNECTION_CLOSED:
            ended = self._ended_error(connection)
            return ChildServerDownError(
                f"{ended.message} (while starting){garbage}", details={**ended.details, **details}
            )
        if isinstance(cause, MCPError):
            return ChildServerDownError(
                f"child {name!r} refused the MCP handshake: {cause.message} (JSON-RPC error {cause.code}){quoted}",
                details=details,
            )
        if not isinstance(cause, _EXPECTED_FAILURES):
            log.warning("child %r: unexpected error", name, exc_info=exc)
        what = "failed" if connection.ready_at is not None else "could not be started"
        return ChildServerDownError(
            f"child {name!r} {what}: {type(cause).__name__}: {cause}{garbage}{quoted}", details=details
        )


def _marked_destructive(annotations: mcp_types.ToolAnnotations | None) -> bool:
    """Marked ``destructiveHint: true`` and not read-only.

    The spec's default for an unmarked tool is "may be destructive"; most servers mark nothing,
    so only an explicit mark withholds a tool, or most runs would have no tools at all.
    """
    return annotations is not None and annotations.destructive_hint is True and annotations.read_only_hint is not True
