"""An MCP server that writes lines that are not JSON-RPC to its stdout (the wire).

``argv[1]`` is ``before`` (garbage before serving), ``after`` (the ``spew``
tool writes garbage mid-session) or ``both`` (default). The garbage is a
banner, a JSON line that is not JSON-RPC, and invalid UTF-8.
"""

from __future__ import annotations

import io
import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

GARBAGE = [b"Starting garbage server v1.0...\n", b'{"hello": "world"}\n', b"\xff\xfe not utf-8\n"]

server = MCPServer("garbage")


@server.tool()
async def spew(lines: int = 3) -> str:
    """Write garbage lines to the wire, then answer normally."""
    for index in range(lines):
        os.write(1, GARBAGE[index % len(GARBAGE)])
    return f"spewed {lines}"


@server.tool()
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


async def serve() -> None:
    # An explicit stdout keeps fd 1 on the wire (by default the SDK points it at
    # stderr while serving), so that `spew` really corrupts the stream.
    wire = anyio.wrap_file(io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), encoding="utf-8"))
    async with stdio_server(stdout=wire) as (read, write):
        lowlevel = server._lowlevel_server
        await lowlevel.run(read, write, lowlevel.create_initialization_options())


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "both"
    if mode in ("before", "both"):
        for line in GARBAGE:
            os.write(1, line)
    anyio.run(serve)
