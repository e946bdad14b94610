"""A well-behaved stdio MCP server for the children tests.

Tools: ``echo``, ``add``, ``sleep(seconds)``, ``sleeps`` (how many sleeps run and were cancelled),
``fail`` (answers with ``isError``), ``count`` (how many times it was called), ``env(name)`` and
``cwd()`` (to check what the bridge passed down). Usage:
``python echo_server.py [asyncio|trio]``.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent

server = MCPServer("echo")
calls = 0
sleeping = 0  # sleep calls running now
cancelled_sleeps = 0  # sleep calls the client cancelled


@server.tool()
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then say so."""
    global sleeping, cancelled_sleeps
    sleeping += 1
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        cancelled_sleeps += 1
        raise
    finally:
        sleeping -= 1
    return f"slept {seconds}"


@server.tool()
async def sleeps() -> str:
    """What the sleep tool is doing: 'running=N cancelled=M'."""
    return f"running={sleeping} cancelled={cancelled_sleeps}"


@server.tool()
async def fail() -> CallToolResult:
    """Report a tool error (isError), not a protocol error."""
    return CallToolResult(content=[TextContent(type="text", text="failed on purpose")], isError=True)


@server.tool()
async def count() -> int:
    """How many times this tool has been called, this call included."""
    global calls
    calls += 1
    return calls


@server.tool()
async def env(name: str) -> str:
    """The value of an environment variable in this process ('' if unset)."""
    return os.environ.get(name, "")


@server.tool()
async def cwd() -> str:
    """This process's working directory."""
    return os.getcwd()


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    anyio.run(server.run_stdio_async, backend=backend)


if __name__ == "__main__":
    main()
