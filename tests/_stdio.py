"""``lmstudio-bridge serve`` as a real stdio subprocess, for the tests that talk to one: the simulator it is
pointed at, the environment it runs in, an MCP client session to it, the raw JSON-RPC lines a test sends
itself, and reading what comes back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
import pytest
import sniffio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult

from bridge.sim.testing import SimProcess, sim_process

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def tool_call(request_id: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A raw ``tools/call`` request."""
    params = {"name": name, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


# --------------------------------------------------------------------------- the simulator


@asynccontextmanager
async def sim_with(tmp_path: Path, config: dict[str, Any]) -> AsyncIterator[SimProcess]:
    """The simulator in its own process, configured by ``config`` (written to ``tmp_path / "sim.json"``)."""
    path = tmp_path / "sim.json"
    path.write_text(json.dumps(config))
    async with sim_process(["--config", str(path)]) as process:
        yield process


def sim_fixture(config: dict[str, Any]) -> Callable[..., AsyncIterator[SimProcess]]:
    """A ``sim`` fixture for a test module: the simulator with ``config``, one per test."""

    @pytest.fixture
    async def sim(tmp_path: Path) -> AsyncIterator[SimProcess]:
        async with sim_with(tmp_path, config) as process:
            yield process

    return sim


async def sim_stats(sim: SimProcess) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sim.url) as client:
        stats: dict[str, Any] = (await client.get("/__sim/stats")).json()
        return stats


# --------------------------------------------------------------------------- serve and an MCP session to it


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment without the user's LM Studio settings, with a home that has no config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LMSTUDIO", "MCP_JSON"))}
    env["HOME"] = str(tmp_path)
    env["XDG_CONFIG_HOME"] = str(tmp_path / ".config")
    return env


def serve_argv(*args: str) -> list[str]:
    """``-m bridge serve ARGS`` on the event loop the calling test runs on, so that a test's trio twin runs
    the bridge on trio too, not only its own client (asyncio outside an event loop)."""
    try:
        backend = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        backend = "asyncio"
    return ["-m", "bridge", "serve", *args, "--backend", backend]


def serve_args(url: str, *extra: str) -> list[str]:
    return serve_argv("--base-url", url, "--no-child-servers", *extra)


@asynccontextmanager
async def stdio_session(
    params: StdioServerParameters, errlog: TextIO, *, read_timeout_seconds: float = 60
) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session to the server ``params`` starts (its stderr to ``errlog``)."""
    async with (
        stdio_client(params, errlog=errlog) as (read, write),
        ClientSession(read, write, read_timeout_seconds=read_timeout_seconds) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def session_for(url: str, tmp_path: Path, errlog: TextIO, *extra: str) -> AsyncIterator[ClientSession]:
    """A session to ``serve`` pointed at ``url``, without child servers, in a clean environment."""
    params = StdioServerParameters(command=sys.executable, args=serve_args(url, *extra), env=clean_env(tmp_path))
    async with stdio_session(params, errlog) as session:
        yield session


async def call(session: ClientSession, name: str, args: dict[str, Any], **kw: Any) -> CallToolResult:
    result = await session.call_tool(name, args, **kw)
    assert isinstance(result, CallToolResult)
    return result


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert block.type == "text"
    return block.text


def data(result: CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None
    structured: dict[str, Any] = result.structured_content
    return structured


# --------------------------------------------------------------------------- serve on raw pipes


async def start_raw(url: str, tmp_path: Path, *extra: str) -> Any:
    return await anyio.open_process(
        [sys.executable, *serve_args(url, *extra)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(tmp_path),
    )


async def send(process: Any, *messages: dict[str, Any]) -> None:
    for message in messages:
        await process.stdin.send(json.dumps(message).encode() + b"\n")


async def read_message(stdout: Any, buffer: bytearray) -> dict[str, Any]:
    while b"\n" not in buffer:
        buffer += await stdout.receive()
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    message: dict[str, Any] = json.loads(line)
    return message


async def initialize(process: Any, buffer: bytearray) -> dict[str, Any]:
    """Send ``initialize``; its reply, which must be the first message back."""
    await send(process, INITIALIZE)
    reply = await read_message(process.stdout, buffer)
    assert reply["id"] == 1
    return reply


async def drain(stream: Any) -> bytes:
    out = bytearray()
    try:
        while True:
            out += await stream.receive()
    except (anyio.EndOfStream, anyio.ClosedResourceError):
        return bytes(out)
