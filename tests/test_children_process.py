"""Stdio children as process groups: real MCP sessions over our streams, and nothing left behind.

Every test starts real processes from ``tests/_children``. "Nothing left
behind" is checked with psutil: no process of the child's group is still
running. Zombies do not count: an orphan killed with its group is reparented
to init, and in a container whose init does not reap, it stays a zombie
forever even though it is dead.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from mcp import ClientSession, MCPError, types
from mcp.shared.message import SessionMessage
from mcp.types import CallToolResult

from bridge.children import (
    PARENT_PID_ENV,
    ChildOutputError,
    ServerConfig,
    StdioChild,
    child_down_error,
    open_stdio_child,
)
from bridge.errors import ChildServerDownError, ConfigError
from tests._util import CHILDREN

DEADLINE = 20  # a safety net against hangs only: no test asserts a duration
FAST = {"grace": 0.2, "term_timeout": 0.2}


def script(name: str, script_name: str, *args: str, **fields: Any) -> ServerConfig:
    return ServerConfig(
        name=name, transport="stdio", command=sys.executable, args=(str(CHILDREN / script_name), *args), **fields
    )


def wrapped(*args: str) -> ServerConfig:
    """A child started through ``_children/wrapper.sh``, a shell that runs ``python *args`` as its own child."""
    return ServerConfig(
        name="wrapped",
        transport="stdio",
        command=str(CHILDREN / "wrapper.sh"),
        args=args,
        env={"CHILD_PYTHON": sys.executable},
    )


def reader(name: str = "cat") -> ServerConfig:
    """A child with no MCP in it (fast to start) that exits when its stdin closes."""
    return ServerConfig(
        name=name, transport="stdio", command=sys.executable, args=("-c", "import sys; sys.stdin.buffer.read()")
    )


def live_members(pgid: int) -> list[int]:
    """Pids of the group's members that are still running (zombies are dead, just not reaped)."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return found


def text(result: object) -> str:
    assert isinstance(result, CallToolResult)
    content = result.content[0]
    assert content.type == "text"
    return content.text


class Recorder:
    """A message_handler that keeps the transport exceptions the session hands it."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []

    async def __call__(self, message: object) -> None:
        if isinstance(message, Exception):
            self.errors.append(message)
        await anyio.lowlevel.checkpoint()


# -- a well-behaved child -----------------------------------------------------------------------


async def test_session_over_our_streams(tmp_path: Path) -> None:
    """initialize, list_tools and call_tool work over the streams; the child gets env, cwd and the marker."""
    config = script("echo", "echo_server.py", env={"GREETING": "hello"}, cwd=str(tmp_path))
    with anyio.fail_after(DEADLINE):
        async with open_stdio_child(config) as child, ClientSession(*child.streams) as session:
            init = await session.initialize()
            assert init.server_info.name == "echo"
            tools = {tool.name for tool in (await session.list_tools()).tools}
            assert {"echo", "add", "sleep", "fail", "count"} <= tools
            assert text(await session.call_tool("echo", {"text": "hi"})) == "hi"
            assert text(await session.call_tool("add", {"a": 2, "b": 3})) == "5"
            failed = await session.call_tool("fail", {})
            assert isinstance(failed, CallToolResult)
            assert failed.is_error
            assert [text(await session.call_tool("count", {})) for _ in range(3)] == ["1", "2", "3"]
            assert text(await session.call_tool("env", {"name": "GREETING"})) == "hello"
            assert text(await session.call_tool("env", {"name": PARENT_PID_ENV})) == str(os.getpid())
            assert text(await session.call_tool("cwd", {})) == str(tmp_path)
            assert child.returncode is None
            assert not child.exited.is_set()
    assert child.returncode == 0
    assert child.exited.is_set()
    assert live_members(child.pgid) == []


async def test_child_leads_its_own_group() -> None:
    """The child is a session leader: its pgid is its pid, not ours."""
    with anyio.fail_after(DEADLINE):
        async with open_stdio_child(reader()) as child:
            assert child.pgid == child.pid == os.getpgid(child.pid)
            assert child.pgid != os.getpgrp()
    assert live_members(child.pgid) == []


async def test_body_exception_is_not_wrapped() -> None:
    """An error raised in the block comes out as itself (no ExceptionGroup), after the child is stopped."""
    with anyio.fail_after(DEADLINE):
        with pytest.raises(KeyError, match="boom"):
            async with open_stdio_child(reader()) as child:
                raise KeyError("boom")
    assert live_members(child.pgid) == []


async def test_cancellation_mid_call_stops_the_child() -> None:
    """Cancelling the block while a call is in flight still runs the whole stop sequence."""
    started = anyio.Event()
    holder: list[StdioChild] = []

    async def run() -> None:
        async with open_stdio_child(script("echo", "echo_server.py"), **FAST) as child:
            holder.append(child)
            async with ClientSession(*child.streams) as session:
                await session.initialize()
                started.set()
                await session.call_tool("sleep", {"seconds": 60})

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(run)
            await started.wait()
            task_group.cancel_scope.cancel()
    (child,) = holder
    assert child.returncode is not None
    assert live_members(child.pgid) == []


async def test_child_that_never_reads_stdin_does_not_block_the_stop() -> None:
    """With the stdin pipe full and a send blocked on it, leaving the block still stops the child."""
    config = ServerConfig(
        name="deaf", transport="stdio", command=sys.executable, args=("-c", "import time; time.sleep(60)")
    )
    big = types.JSONRPCNotification(jsonrpc="2.0", method="notifications/x", params={"pad": "x" * 100_000})
    with anyio.fail_after(DEADLINE):
        async with open_stdio_child(config, **FAST) as child:
            with anyio.move_on_after(0.3) as scope:
                for _ in range(100):  # 10 MB: far more than a pipe holds
                    await child.write_stream.send(SessionMessage(big))
            assert scope.cancelled_caught
    assert child.returncode == -signal.SIGTERM
    assert live_members(child.pgid) == []


# -- children that misbehave ------------------------------------------------------------------


async def test_garbage_stdout_is_counted_and_the_session_survives() -> None:
    """Non-JSON-RPC lines before and after initialize reach message_handler as ChildOutputError; calls still work."""
    recorder = Recorder()
    with anyio.fail_after(DEADLINE):
        async with (
            open_stdio_child(script("garbage", "garbage_stdout.py", "both")) as child,
            ClientSession(*child.streams, message_handler=recorder) as session,
        ):
            await session.initialize()
            assert text(await session.call_tool("spew", {"lines": 3})) == "spewed 3"
            assert text(await session.call_tool("echo", {"text": "still here"})) == "still here"
    assert child.invalid_lines == 6
    assert len(recorder.errors) == 6
    assert all(isinstance(error, ChildOutputError) and error.server == "garbage" for error in recorder.errors)
    first = recorder.errors[0]
    assert isinstance(first, ChildOutputError)
    assert (first.line, first.reason) == ("Starting garbage server v1.0...", "invalid JSON")
    assert {e.reason for e in recorder.errors if isinstance(e, ChildOutputError)} == {
        "invalid JSON",
        "JSON, but not a JSON-RPC message",
    }


async def test_overlong_line_is_reported_and_dropped() -> None:
    """A stdout line over the limit becomes one ChildOutputError; the next line is read normally."""
    code = (
        "import sys; sys.stdout.write('x' * 5000 + '\\n');"
        'sys.stdout.write(\'{"jsonrpc": "2.0", "method": "notifications/ping"}\\n\'); sys.stdout.flush()'
    )
    config = ServerConfig(name="long", transport="stdio", command=sys.executable, args=("-c", code))
    with anyio.fail_after(DEADLINE):
        async with open_stdio_child(config, max_line_bytes=1000) as child:
            items = [item async for item in child.read_stream]
    assert len(items) == 2
    assert isinstance(items[0], ChildOutputError)
    assert items[0].reason == "line longer than 1000 bytes"
    assert not isinstance(items[1], Exception)
    assert items[1].message.model_dump()["method"] == "notifications/ping"


async def test_exit_before_initialize_quotes_stderr() -> None:
    """A child that dies at once fails initialize, and its error says why, from its stderr."""
    with anyio.fail_after(DEADLINE):
        async with open_stdio_child(script("db", "exit_at_once.py")) as child, ClientSession(*child.streams) as session:
            with pytest.raises(MCPError):
                await session.initialize()
            await child.exited.wait()
            error = child.down_error()
    assert isinstance(error, ChildServerDownError)
    assert error.message == "child 'db' exited with code 3: exit_at_once: cannot open database /nonexistent/db.sqlite"
    assert error.retryable
    assert error.details["returncode"] == 3


async def test_crash_on_nth_call() -> None:
    """The call that kills the child fails; the error names the exit code and quotes stderr."""
    with anyio.fail_after(DEADLINE):
        async with (
            open_stdio_child(script("crashy", "crash_on_nth.py", "2")) as child,
            ClientSession(*child.streams) as session,
        ):
            await session.initialize()
            assert text(await session.call_tool("work", {})) == "call 1 ok"
            with pytest.raises(MCPError):
                await session.call_tool("work", {})
            await child.exited.wait()
    assert str(child.down_error()) == (
        "child_server_down: child 'crashy' exited with code 9: crash_on_nth: crashing on call 2"
    )


async def test_hung_tool_times_out_and_the_session_goes_on() -> None:
    """A tool that never returns fails by the request's own timeout; other calls still work."""
    with anyio.fail_after(DEADLINE):
        async with open_stdio_child(script("hang", "hang.py", "tool")) as child, ClientSession(*child.streams) as s:
            await s.initialize()
            with pytest.raises(MCPError, match="timed out"):
                await s.call_tool("never", {}, read_timeout_seconds=0.3)
            assert text(await s.call_tool("echo", {"text": "alive"})) == "alive"
    assert live_members(child.pgid) == []


async def test_frozen_child_is_terminated() -> None:
    """A child that answers nothing, not even pings, and ignores stdin EOF is stopped by SIGTERM."""
    with anyio.fail_after(DEADLINE):
        async with open_stdio_child(script("frozen", "hang.py", "frozen"), **FAST) as child:
            async with ClientSession(*child.streams) as session:
                await session.initialize()
                ping = types.PingRequest(params=types.RequestParams())
                with pytest.raises(MCPError, match="timed out"):
                    await session.send_request(ping, types.EmptyResult, request_read_timeout_seconds=0.3)
    assert child.returncode == -signal.SIGTERM
    assert live_members(child.pgid) == []


async def test_child_ignoring_eof_and_sigterm_is_killed() -> None:
    """stdin EOF and SIGTERM are both ignored: SIGKILL to the group ends it."""
    with anyio.fail_after(DEADLINE):
        async with open_stdio_child(script("stubborn", "hang.py", "stubborn"), **FAST) as child:
            async with ClientSession(*child.streams) as session:
                await session.initialize()
    assert child.returncode == -signal.SIGKILL
    assert live_members(child.pgid) == []


async def test_wrapper_script_leaves_no_grandchild() -> None:
    """A shell wrapper that does not exec: the real server (a grandchild) is stopped with it."""
    config = wrapped("hang.py", "stubborn")
    with anyio.fail_after(DEADLINE):
        async with open_stdio_child(config, **FAST) as child, ClientSession(*child.streams) as session:
            await session.initialize()
            members = live_members(child.pgid)
            grandchildren = [p.pid for p in psutil.Process(child.pid).children(recursive=True)]
    assert len(members) == 2
    assert grandchildren
    assert set(grandchildren) <= set(members)
    assert live_members(child.pgid) == []
    for pid in members:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_well_behaved_wrapper_exits_on_eof() -> None:
    """Through the wrapper, a normal server exits on stdin EOF, and so does the shell after it."""
    config = wrapped("echo_server.py")
    with anyio.fail_after(DEADLINE):
        async with open_stdio_child(config) as child, ClientSession(*child.streams) as session:
            await session.initialize()
            assert text(await session.call_tool("echo", {"text": "via sh"})) == "via sh"
    assert child.returncode == 0
    assert "wrapper: echo_server.py exited with 0" in child.stderr_tail
    assert live_members(child.pgid) == []


async def test_stderr_written_just_before_exit_is_kept() -> None:
    """Regression (CI, trio): stopping cancelled the stderr reader once the group was gone, losing the last lines."""
    config = ServerConfig(
        name="loud", transport="stdio", command=sys.executable, args=(str(CHILDREN / "loud_exit.py"),)
    )
    with anyio.fail_after(DEADLINE):
        async with open_stdio_child(config, stderr_lines=5) as child:
            pass
    assert child.returncode == 0
    assert child.stderr_tail[-1] == "last words"


async def test_startup_deadline_cancels_cleanly() -> None:
    """Giving up on a slow start (a startup timeout) stops the still-sleeping child."""
    holder: list[StdioChild] = []
    with anyio.fail_after(DEADLINE):
        with anyio.move_on_after(0.3) as scope:
            async with open_stdio_child(script("slow", "slow_start.py", "30"), **FAST) as child:
                holder.append(child)
                async with ClientSession(*child.streams) as session:
                    await session.initialize()
    assert scope.cancelled_caught
    (child,) = holder
    assert child.returncode == -signal.SIGTERM
    assert live_members(child.pgid) == []


# -- stderr, spawn errors, messages -----------------------------------------------------------


async def test_stderr_ring_buffer_and_log(caplog: pytest.LogCaptureFixture) -> None:
    """Only the last lines are kept; every line goes to the child's logger, alarming ones as warnings."""
    code = (
        "import sys\n"
        "for i in range(120): print(f'line {i}', file=sys.stderr)\n"
        "print('ERROR: disk full', file=sys.stderr)"
    )
    config = ServerConfig(name="noisy", transport="stdio", command=sys.executable, args=("-c", code))
    with caplog.at_level(logging.INFO, logger="bridge.children.noisy"), anyio.fail_after(DEADLINE):
        async with open_stdio_child(config, stderr_lines=50) as child:
            await child.exited.wait()
    assert child.stderr_tail == [f"line {i}" for i in range(71, 120)] + ["ERROR: disk full"]
    records = [r for r in caplog.records if r.name == "bridge.children.noisy"]
    assert ("line 0", logging.INFO) in [(r.getMessage(), r.levelno) for r in records]
    assert ("ERROR: disk full", logging.WARNING) in [(r.getMessage(), r.levelno) for r in records]


async def test_missing_program_is_a_typed_error() -> None:
    """A command that does not exist fails at once with a non-retryable ChildServerDownError."""
    config = ServerConfig(name="ghost", transport="stdio", command="/nonexistent/mcp-server")
    with pytest.raises(ChildServerDownError, match=r"child 'ghost' could not be started: .*No such file") as caught:
        async with open_stdio_child(config):
            pytest.fail("the block must not run")
    assert not caught.value.retryable


async def test_missing_cwd_is_a_typed_error(tmp_path: Path) -> None:
    """A working directory that does not exist is reported the same way."""
    config = script("lost", "echo_server.py", cwd=str(tmp_path / "nowhere"))
    with pytest.raises(ChildServerDownError, match="nowhere"):
        async with open_stdio_child(config):
            pytest.fail("the block must not run")


async def test_remote_config_is_refused() -> None:
    """Only stdio servers have a process."""
    config = ServerConfig(name="web", transport="http", url="http://127.0.0.1:1/mcp")
    with pytest.raises(ConfigError, match="'web' is a http server, not a stdio one"):
        async with open_stdio_child(config):
            pytest.fail("the block must not run")


@pytest.mark.parametrize(
    ("returncode", "stderr", "message"),
    [
        (1, ["", "Traceback", "ValueError: x"], "child 'git' exited with code 1: Traceback | ValueError: x"),
        (-9, [], "child 'git' was killed by SIGKILL (it wrote nothing to stderr)"),
        (None, ["bye"], "child 'git' closed its connection (pid 42 is still running): bye"),
    ],
)
def test_down_error_messages(returncode: int | None, stderr: list[str], message: str) -> None:
    """The error says how the child ended and quotes its last stderr lines."""
    error = child_down_error("git", returncode, stderr, pid=42)
    assert error.message == message
    assert error.details == {"server": "git", "returncode": returncode, "pid": 42, "stderr": stderr}


def test_down_error_quotes_only_the_last_lines() -> None:
    """The message quotes five lines; details keep them all."""
    error = child_down_error("x", 2, [str(i) for i in range(10)])
    assert error.message == "child 'x' exited with code 2: 5 | 6 | 7 | 8 | 9"
    assert len(error.details["stderr"]) == 10
