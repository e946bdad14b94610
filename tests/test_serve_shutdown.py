"""No child MCP server outlives ``lmstudio-bridge serve``: stdin EOF, or a signal at any moment.

``serve`` runs as a real subprocess with one eager child (``_children/stay_alive.py``) that keeps
running after its stdin closes, ignores SIGTERM, and has a grandchild in its process group: only
a signal to the whole group, up to SIGKILL, stops it. Each phase is reached by an event (the
child's marker file, a line in serve's log), never by a sleep.

The bound on serve's exit is the MCP SDK's stdio client: it waits 2.0 s after closing stdin, then
sends SIGTERM, and SIGKILLs 2.0 s after that (a SIGKILLed serve cannot stop its children). So
``serve`` must be gone, children and all, well within 2 s of either; EXIT_WITHIN is that deadline,
not a speed measurement. Serve runs on the same event loop as the test (both are parametrized).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from anyio.abc import Process

from tests._stdio import INITIALIZE, INITIALIZED, clean_env
from tests._util import eventually, free_port

CHILD = Path(__file__).with_name("_children") / "stay_alive.py"
EXIT_WITHIN = 1.5
"""Seconds from stdin EOF or a signal until serve has exited (below the SDK client's 2.0 s)."""
HANG_BOUND = 30.0
"""Seconds any other wait may take: only turns a hang into a failure."""


@dataclass
class ChildIds:
    """What the child wrote to its marker: its pid (and group), and its grandchild's pid."""

    pid: int
    pgid: int
    grandchild: int


@dataclass
class Serve:
    """A running ``serve``: the process, its log lines so far, and its child once that started."""

    process: Process
    marker: Path
    log: list[str] = field(default_factory=list)
    _seen: anyio.Event = field(default_factory=anyio.Event)

    async def logged(self, pattern: str) -> str:
        """Wait for a line of serve's log matching ``pattern``."""
        regex = re.compile(pattern)
        with anyio.fail_after(HANG_BOUND):
            while True:
                for line in self.log:
                    if regex.search(line):
                        return line
                await self._seen.wait()

    def _append(self, line: str) -> None:
        self.log.append(line)
        seen, self._seen = self._seen, anyio.Event()
        seen.set()

    async def child(self) -> ChildIds:
        """Wait for the child to have started (its marker file) and return its ids."""
        await eventually(self.marker.exists, within=HANG_BOUND)
        pid, pgid, grandchild = map(int, self.marker.read_text().split())
        return ChildIds(pid, pgid, grandchild)

    async def send(self, *messages: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        for message in messages:
            await self.process.stdin.send(json.dumps(message).encode() + b"\n")

    async def read_message(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        buffer = bytearray()
        with anyio.fail_after(HANG_BOUND):
            while b"\n" not in buffer:
                buffer += await self.process.stdout.receive()
        message: dict[str, Any] = json.loads(bytes(buffer).partition(b"\n")[0])
        return message

    async def session_with_ready_child(self) -> ChildIds:
        """Initialize the MCP session, then wait for the child to have started and be ready; its ids."""
        await self.send(INITIALIZE)
        assert (await self.read_message())["id"] == 1
        await self.send(INITIALIZED)
        ids = await self.child()
        await self.logged(r"child 'stay' ready")
        return ids

    async def close_stdin(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.aclose()

    async def exits(self) -> int:
        """Wait for serve to exit, within EXIT_WITHIN; its exit status."""
        try:
            with anyio.fail_after(EXIT_WITHIN):
                return await self.process.wait()
        except TimeoutError:
            pytest.fail(f"serve did not exit within {EXIT_WITHIN} s; its log:\n" + "\n".join(self.log))


def live(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie is dead: only its parent's wait is missing)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[int]:
    """The live processes in process group ``pgid``."""
    members = []
    for process in psutil.process_iter():
        with suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
    return members


def assert_child_gone(ids: ChildIds, serve: Serve) -> None:
    survivors = [pid for pid in (ids.pid, ids.grandchild) if live(pid)] + group_members(ids.pgid)
    assert not survivors, f"child processes still running: {sorted(set(survivors))}; serve's log:\n" + "\n".join(
        serve.log
    )


def write_config(tmp_path: Path, marker: Path, child_args: list[str]) -> Path:
    mcp = tmp_path / "mcp.json"
    server = {"command": sys.executable, "args": [str(CHILD), str(marker), *child_args], "eager": True}
    mcp.write_text(json.dumps({"mcpServers": {"stay": server}}))
    toml = tmp_path / "bridge.toml"
    toml.write_text(
        f'servers = ["http://127.0.0.1:{free_port()}"]\n'
        "[children]\n"
        f"config_paths = [{json.dumps(str(mcp))}]\n"
        "discover = false\n"
        "watch = false\n"
    )
    return toml


@asynccontextmanager
async def running_serve(tmp_path: Path, backend: str, *child_args: str) -> AsyncIterator[Serve]:
    """Start serve with the stay_alive child; on the way out, kill whatever is left (a failed test leaks nothing)."""
    marker = tmp_path / "child-started"
    toml = write_config(tmp_path, marker, list(child_args))
    process = await anyio.open_process(
        [sys.executable, "-m", "bridge", "serve", "--config", str(toml), "--backend", backend],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(tmp_path),
    )
    serve = Serve(process, marker)

    async def read_log() -> None:
        assert process.stderr is not None
        pending = b""
        with suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            async for chunk in process.stderr:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    serve._append(line.decode(errors="replace"))

    async with process, anyio.create_task_group() as tg:
        tg.start_soon(read_log)
        try:
            yield serve
        finally:
            tg.cancel_scope.cancel()
            if process.returncode is None:
                process.kill()
            if marker.exists():
                kill_child(serve.marker)


def kill_child(marker: Path) -> None:
    pid, pgid, grandchild = map(int, marker.read_text().split())
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    for each in (pid, grandchild):
        with suppress(ProcessLookupError, PermissionError):
            os.kill(each, signal.SIGKILL)


# --------------------------------------------------------------------------- stdin EOF


@pytest.mark.parametrize("child_args", [[], ["--ignore-term"]], ids=["ignores-eof", "ignores-eof-and-sigterm"])
async def test_stdin_eof_exits_and_leaves_no_child(
    tmp_path: Path, anyio_backend_name: str, child_args: list[str]
) -> None:
    """The client closes stdin: serve exits 0 before the SDK client would send SIGTERM, its child's group gone."""
    async with running_serve(tmp_path, anyio_backend_name, *child_args) as serve:
        ids = await serve.session_with_ready_child()
        await serve.close_stdin()
        assert await serve.exits() == 0
        assert_child_gone(ids, serve)


# --------------------------------------------------------------------------- signals


async def test_sigterm_during_start_up_stops_the_child(tmp_path: Path, anyio_backend_name: str) -> None:
    """SIGTERM while the child is still starting (it never answers initialize): its group is gone, serve exits 0."""
    async with running_serve(tmp_path, anyio_backend_name, "--ignore-term", "--mute") as serve:
        ids = await serve.child()
        serve.process.send_signal(signal.SIGTERM)
        assert await serve.exits() == 0
        assert_child_gone(ids, serve)
        assert not any("child 'stay' ready" in line for line in serve.log)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_while_serving_stops_the_child(tmp_path: Path, anyio_backend_name: str, signum: int) -> None:
    """SIGTERM or SIGINT with the session up and the child ready: every child process gone, serve exits 0."""
    async with running_serve(tmp_path, anyio_backend_name, "--ignore-term") as serve:
        ids = await serve.session_with_ready_child()
        serve.process.send_signal(signum)
        assert await serve.exits() == 0
        assert_child_gone(ids, serve)


async def test_sigterm_during_shutdown_stops_the_child(tmp_path: Path, anyio_backend_name: str) -> None:
    """What the SDK client does to a slow server: stdin closed, then SIGTERM while serve shuts down."""
    async with running_serve(tmp_path, anyio_backend_name, "--ignore-term") as serve:
        ids = await serve.session_with_ready_child()
        await serve.close_stdin()
        await serve.logged(r"stdin closed: shutting down")
        serve.process.send_signal(signal.SIGTERM)
        assert await serve.exits() == 0
        assert_child_gone(ids, serve)


async def test_a_second_signal_leaves_nothing_behind(tmp_path: Path, anyio_backend_name: str) -> None:
    """SIGINT, then SIGTERM once serve says it is shutting down: still no child left, serve exits 0."""
    async with running_serve(tmp_path, anyio_backend_name, "--ignore-term") as serve:
        ids = await serve.child()
        await serve.logged(r"child 'stay' ready")
        serve.process.send_signal(signal.SIGINT)
        await serve.logged(r"received SIGINT: shutting down")
        serve.process.send_signal(signal.SIGTERM)
        assert await serve.exits() == 0
        assert_child_gone(ids, serve)
