"""Running one stdio child MCP server as a process group, and stopping all of it.

:func:`open_stdio_child` starts the server in a session of its own and yields
a :class:`StdioChild`: the ``(read_stream, write_stream)`` pair that
``mcp.ClientSession`` expects, plus what a supervisor needs (pid, process
group, return code, an ``exited`` event, the last lines of stderr).

Why not ``mcp.client.stdio.stdio_client``: it sends the child's stderr to a
file (we want it in the log and in error messages), signals the group only if
the *wrapper* outlives the grace period (``npx`` or a shell script that exits
on stdin EOF can leave its real server behind), and counts zombie orphans as
alive (each stop would then run out every timeout in a container whose init
does not reap). The pipe handling is our own, on anyio only: no threads.

The stop sequence, on normal exit and on cancellation alike (shielded):

1. stop accepting messages; flush what the session already sent (≤ 0.5 s);
2. close the child's stdin, the MCP way of asking it to exit;
3. wait up to ``grace`` seconds for the whole process group to be gone;
4. SIGTERM the group, wait up to ``term_timeout`` seconds;
5. SIGKILL the group, wait up to 2 s;
6. close the pipes and reap the process (no zombie is left behind).

A group is "gone" when its leader has exited and no member is still running;
a member that is a zombie (an orphan the system's init has not reaped yet)
counts as gone.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TypeAlias

import anyio
from anyio.abc import AsyncResource, Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client.stdio import DEFAULT_INHERITED_ENV_VARS
from mcp.shared.message import SessionMessage

from bridge.children._group import ProcessGroups, group_alive, signal_group
from bridge.children._parse import ServerConfig
from bridge.children._selfref import PARENT_PID_ENV
from bridge.children._wire import MAX_LINE_BYTES, ChildOutputError, decode_line, encode_message, too_long
from bridge.errors import ChildServerDownError, ConfigError

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_TERM_TIMEOUT",
    "ChildOutputError",
    "ProcessGroups",
    "StdioChild",
    "child_down_error",
    "child_environment",
    "open_stdio_child",
]

DEFAULT_GRACE = 2.0
"""Seconds a child may take to exit after its stdin closes, before SIGTERM."""

DEFAULT_TERM_TIMEOUT = 2.0
"""Seconds a child's group may take to exit after SIGTERM, before SIGKILL."""

_KILL_TIMEOUT = 2.0  # only a process stuck in the kernel outlives SIGKILL this long
_FLUSH_TIMEOUT = 0.5  # for messages the session sent just before closing
_STDERR_SETTLE = 0.5  # after exit, for the last stderr lines (a survivor may hold the pipe)
_STDERR_DRAIN = 2.0  # after the whole group is gone: only a process outside it can hold the pipe
_POLL_INTERVAL = 0.02
_QUOTED_STDERR_LINES = 5
_MAX_STDERR_LINE = 2000
_LOGGED_INVALID_LINES = 5  # then only at DEBUG: a chatty child must not flood the log
_Incoming: TypeAlias = SessionMessage | Exception
_ALARMING = re.compile(r"error|exception|traceback|fatal|critical|panic|warn", re.IGNORECASE)


def child_environment(
    server_env: Mapping[str, str],
    inherited: Mapping[str, str] | None = None,
    passthrough: Sequence[str] = (),
) -> dict[str, str]:
    """The environment of a child: a few safe variables of ours (or of ``inherited``), the server's ``env``,
    and :data:`PARENT_PID_ENV`.

    Least privilege: an ``npx``/``uvx`` child must not see ``LMSTUDIO_API_KEY`` or the user's other
    secrets, so from the base it gets only the mcp SDK's safe names (``PATH``, ``HOME``, ``USER``, ...)
    and the names its configuration lists in ``env_passthrough`` (absent when unset). The SDK's
    ``get_default_environment()`` reads ``os.environ`` only, so its list of names is applied to the base
    here: a shared bridge's session gives its children its own environment, not the bridge's.
    The marker lets a bridge started by this one (however indirectly) know it is nested, so it never
    starts children of its own.
    """
    base = os.environ if inherited is None else inherited
    env = {
        name: base[name]
        for name in DEFAULT_INHERITED_ENV_VARS
        if name in base and not base[name].startswith("()")  # the SDK skips exported shell functions too
    }
    env.update({name: base[name] for name in passthrough if name in base})
    return {**env, **server_env, PARENT_PID_ENV: str(os.getpid())}


def child_down_error(
    name: str,
    returncode: int | None,
    stderr_tail: Sequence[str],
    *,
    pid: int | None = None,
) -> ChildServerDownError:
    """The error for a child that is gone, e.g. "child 'git' exited with code 1: <last stderr lines>".

    The message quotes the last few stderr lines; ``details["stderr"]`` has all of ``stderr_tail``.
    """
    if returncode is None:
        what = f"child {name!r} closed its connection (pid {pid} is still running)"
    elif returncode < 0:
        try:
            signame = signal.Signals(-returncode).name
        except ValueError:
            signame = f"signal {-returncode}"
        what = f"child {name!r} was killed by {signame}"
    else:
        what = f"child {name!r} exited with code {returncode}"
    quoted = [line for line in stderr_tail if line.strip()][-_QUOTED_STDERR_LINES:]
    message = f"{what}: {' | '.join(quoted)}" if quoted else f"{what} (it wrote nothing to stderr)"
    return ChildServerDownError(
        message,
        details={"server": name, "returncode": returncode, "pid": pid, "stderr": list(stderr_tail)},
    )


class StdioChild:
    """A running stdio child. Obtained from :func:`open_stdio_child`; do not instantiate directly.

    Attributes:
        name: The server's name (also the logger ``bridge.children.<name>``).
        pid: The child's pid.
        pgid: Its process group id (equal to ``pid``: it leads a session of its own).
        read_stream: Messages from the child, and a :class:`ChildOutputError`
            for each stdout line that is not JSON-RPC; ends when its stdout closes.
        write_stream: Messages to the child.
        exited: Set once the child has exited and its stderr has been read to
            the end (or 0.5 s passed), so :meth:`down_error` quotes its last words.
        invalid_lines: How many stdout lines were not JSON-RPC.
    """

    def __init__(self, name: str, process: Process, *, stderr_lines: int, max_line_bytes: int) -> None:
        self.name = name
        self.pid = process.pid
        self.pgid = process.pid
        self.exited = anyio.Event()
        self.invalid_lines = 0
        self._process = process
        self._max_line_bytes = max_line_bytes
        self._stderr: deque[str] = deque(maxlen=stderr_lines)
        self._log = logging.getLogger(f"bridge.children.{name}")
        self._read_send, self.read_stream = anyio.create_memory_object_stream[_Incoming](0)
        self.write_stream, self._write_receive = anyio.create_memory_object_stream[SessionMessage](0)
        self._session_gone = False
        self._stopping = False
        self._stdout_done = anyio.Event()
        self._stderr_done = anyio.Event()
        self._writer_done = anyio.Event()
        self._writer_scope = anyio.CancelScope()

    @property
    def streams(self) -> tuple[MemoryObjectReceiveStream[_Incoming], MemoryObjectSendStream[SessionMessage]]:
        """``(read_stream, write_stream)``, for ``ClientSession(*child.streams)``."""
        return self.read_stream, self.write_stream

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal), or ``None`` while running."""
        return self._process.returncode

    @property
    def stderr_tail(self) -> list[str]:
        """The last lines the child wrote to stderr, oldest first."""
        return list(self._stderr)

    def down_error(self) -> ChildServerDownError:
        """A :class:`ChildServerDownError` describing how the child ended, quoting its stderr."""
        return child_down_error(self.name, self.returncode, self.stderr_tail, pid=self.pid)

    # -- the four pipe tasks ------------------------------------------------------------------

    async def _pump_stdout(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None, "spawned with stdout=PIPE"
        buffer = bytearray()
        skipping = False  # inside an overlong line, already reported
        try:
            async for chunk in stdout:
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:end])
                    del buffer[: end + 1]
                    if skipping:
                        skipping = False
                    elif len(line) > self._max_line_bytes:
                        await self._deliver(too_long(self.name, line[:1024], self._max_line_bytes))
                    else:
                        await self._deliver(decode_line(self.name, line))
                if len(buffer) > self._max_line_bytes and not skipping:
                    await self._deliver(too_long(self.name, bytes(buffer[:1024]), self._max_line_bytes))
                    skipping = True
                if skipping:
                    buffer.clear()
            if buffer and not skipping:
                await self._deliver(decode_line(self.name, bytes(buffer)))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass  # our shutdown closed the pipe under the read
        finally:
            self._read_send.close()  # the session sees the connection end
            self._stdout_done.set()

    async def _deliver(self, item: SessionMessage | ChildOutputError | None) -> None:
        if item is None:
            return
        if isinstance(item, ChildOutputError):
            self.invalid_lines += 1
            level = logging.WARNING if self.invalid_lines <= _LOGGED_INVALID_LINES else logging.DEBUG
            self._log.log(level, "%s", item)
        if self._session_gone:
            return
        try:
            await self._read_send.send(item)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # Nobody reads any more; keep draining so the child never blocks on a full pipe.
            self._session_gone = True

    async def _pump_stdin(self) -> None:
        stdin = self._process.stdin
        assert stdin is not None, "spawned with stdin=PIPE"
        try:
            with self._writer_scope:
                async with self._write_receive:
                    async for message in self._write_receive:
                        await stdin.send(encode_message(message))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            # The child closed its stdin or died: end the read side too, or a
            # request already sent would wait forever for its answer.
            self._read_send.close()
        finally:
            with anyio.CancelScope(shield=True):
                await _close_quietly(stdin)  # step 2 of the stop sequence, or the child is gone
            self._writer_done.set()

    async def _pump_stderr(self) -> None:
        stderr = self._process.stderr
        assert stderr is not None, "spawned with stderr=PIPE"
        buffer = bytearray()
        try:
            async for chunk in stderr:
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    self._stderr_line(bytes(buffer[:end]))
                    del buffer[: end + 1]
                if len(buffer) > _MAX_STDERR_LINE * 4:
                    self._stderr_line(bytes(buffer))
                    buffer.clear()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass
        finally:
            if buffer:
                self._stderr_line(bytes(buffer))
            self._stderr_done.set()

    def _stderr_line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip()[:_MAX_STDERR_LINE]
        if not line:
            return
        self._stderr.append(line)
        self._log.log(logging.WARNING if _ALARMING.search(line) else logging.INFO, "%s", line)

    async def _watch_exit(self) -> None:
        try:
            returncode = await self._process.wait()
            with anyio.move_on_after(_STDERR_SETTLE):
                await self._stderr_done.wait()
            level = logging.INFO if self._stopping or returncode == 0 else logging.WARNING
            self._log.log(level, "child %r (pid %d) exited with code %d", self.name, self.pid, returncode)
        finally:
            if self._process.returncode is not None:
                self.exited.set()

    # -- stopping -----------------------------------------------------------------------------

    async def _stop(self, grace: float, term_timeout: float) -> None:
        """Steps 1-5 of the stop sequence (see the module docstring). Call shielded."""
        self._stopping = True
        self._log.debug("stopping child %r: closing its stdin", self.name)
        self.read_stream.close()
        self.write_stream.close()
        with anyio.move_on_after(_FLUSH_TIMEOUT):
            await self._writer_done.wait()
        self._writer_scope.cancel()
        with anyio.move_on_after(_FLUSH_TIMEOUT):
            await self._writer_done.wait()
        if await self._wait_gone(grace):
            return
        self._log.info("child %r still running %.1f s after its stdin closed: SIGTERM to its group", self.name, grace)
        if not signal_group(self.pgid, signal.SIGTERM) or await self._wait_gone(term_timeout):
            return
        self._log.warning("child %r ignored SIGTERM for %.1f s: SIGKILL to its group", self.name, term_timeout)
        if not signal_group(self.pgid, signal.SIGKILL) or await self._wait_gone(_KILL_TIMEOUT):
            return
        self._log.error("child %r (process group %d) survived SIGKILL; abandoning it", self.name, self.pgid)

    async def _wait_gone(self, timeout: float) -> bool:
        # Polled: no event fires when the last member of a process group dies.
        with anyio.move_on_after(timeout):
            while True:
                # Reading returncode also reaps the leader on trio; a zombie leader keeps its group alive.
                if self._process.returncode is not None and not group_alive(self.pgid):
                    return True
                await anyio.sleep(_POLL_INTERVAL)
        return False

    async def _release(self) -> None:
        """Step 6: close every stream and pipe, reap the process. Call shielded."""
        for stream in (self.read_stream, self.write_stream, self._read_send, self._write_receive):
            stream.close()
        with anyio.move_on_after(_KILL_TIMEOUT):
            await self._process.aclose()
        _close_asyncio_transport(self._process)


@asynccontextmanager
async def open_stdio_child(
    config: ServerConfig,
    *,
    grace: float = DEFAULT_GRACE,
    term_timeout: float = DEFAULT_TERM_TIMEOUT,
    stderr_lines: int = 50,
    max_line_bytes: int = MAX_LINE_BYTES,
    groups: ProcessGroups | None = None,
) -> AsyncIterator[StdioChild]:
    """Start a stdio child MCP server; stop its whole process group on exit.

    Usage::

        async with open_stdio_child(config) as child, ClientSession(*child.streams) as session:
            await session.initialize()

    An exception raised in the body comes out as itself, not wrapped in an
    exception group. Leaving the block (normally, by an exception, or by
    cancellation) runs the stop sequence of the module docstring, shielded:
    a well-behaved child is gone in well under a second; the worst case (a
    child that ignores everything and a session stuck writing) is bounded by
    about ``grace + term_timeout + 5`` seconds.

    Args:
        config: A ``stdio`` server.
        grace: Seconds to wait after closing stdin before SIGTERM.
        term_timeout: Seconds to wait after SIGTERM before SIGKILL.
        stderr_lines: How many stderr lines to keep for :attr:`StdioChild.stderr_tail`.
        max_line_bytes: Longest stdout line accepted (default 64 MiB); a longer
            one becomes a :class:`ChildOutputError` and is dropped.
        groups: The bridge's registry of child process groups: the child is
            registered while it runs, so a signal to the bridge can stop it
            whatever its stop sequence is doing; once closed, nothing starts.

    Raises:
        ChildServerDownError: The program could not be started (not found, not
            executable, bad ``cwd``, or ``groups`` is closed); not retryable.
        ConfigError: ``config`` is not a stdio server.
    """
    if config.transport != "stdio" or not config.command:
        raise ConfigError(f"server {config.name!r} is a {config.transport} server, not a stdio one")
    argv = [config.command, *config.args]
    if groups is not None and groups.closed:
        raise ChildServerDownError(
            f"child {config.name!r} not started: the bridge is shutting down",
            retryable=False,
            details={"server": config.name, "reason": "stopping"},
        )
    try:
        # Shielded: a cancellation inside the spawn could leave a process nobody knows about.
        with anyio.CancelScope(shield=True):
            process = await anyio.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=config.cwd,
                env=child_environment(config.env, config.inherited_env, config.env_passthrough),
                start_new_session=True,
            )
    except OSError as exc:
        raise ChildServerDownError(
            f"child {config.name!r} could not be started: {exc} (command {config.command!r}); fix its configuration",
            retryable=False,
            details={"server": config.name, "command": argv, "cwd": config.cwd},
        ) from exc
    # No await between the spawn and the shielded cleanup below, or a
    # cancellation landing in between would leak the process.
    child = StdioChild(config.name, process, stderr_lines=stderr_lines, max_line_bytes=max_line_bytes)
    if groups is not None:
        groups.add(child.pgid, config.name)  # killed at once if the bridge began exiting during the spawn
    # Arguments stay at DEBUG: after ${VAR} expansion they may hold tokens.
    child._log.info("started child %r (pid %d): %s", config.name, child.pid, config.command)
    child._log.debug("child %r arguments: %r", config.name, config.args)
    body_error: Exception | None = None
    try:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(child._pump_stdout)
            task_group.start_soon(child._pump_stdin)
            task_group.start_soon(child._pump_stderr)
            task_group.start_soon(child._watch_exit)
            try:
                yield child
            except Exception as exc:
                body_error = exc  # re-raised below, outside the task group, so it is not wrapped
            finally:
                with anyio.CancelScope(shield=True):
                    await child._stop(grace, term_timeout)
                    # The group is gone but its last stderr lines may still be in the pipe.
                    with anyio.move_on_after(_STDERR_DRAIN):
                        await child._stderr_done.wait()
                task_group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await child._release()
        if groups is not None and not group_alive(child.pgid):
            groups.discard(child.pgid)  # a survivor stays registered, for the bridge's last sweep
    if body_error is not None:
        raise body_error


async def _close_quietly(stream: AsyncResource) -> None:
    with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await stream.aclose()


def _close_asyncio_transport(process: Process) -> None:
    """Close asyncio's subprocess transport, which otherwise warns when collected.

    Nothing public exposes it (as in ``mcp.client.stdio``); a no-op on trio.
    """
    transport = getattr(process, "_transport", None) or getattr(getattr(process, "_process", None), "_transport", None)
    close = getattr(transport, "close", None)
    if callable(close):
        with suppress(PermissionError, ProcessLookupError):
            close()
