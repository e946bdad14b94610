"""An MCP server that dies hard on its Nth ``tools/call``.

N comes from ``argv[1]`` or ``$CRASH_ON_NTH`` (default 2). The crash is
``os._exit(9)`` after one line on stderr: no cleanup, no answer to the call.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("crash-on-nth")
crash_on = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CRASH_ON_NTH", "2"))
calls = 0


@server.tool()
async def work(text: str = "") -> str:
    """Do some work, unless this is call number N."""
    global calls
    calls += 1
    if calls >= crash_on:
        sys.stderr.write(f"crash_on_nth: crashing on call {calls}\n")
        sys.stderr.flush()
        os._exit(9)
    return f"call {calls} ok"


if __name__ == "__main__":
    anyio.run(server.run_stdio_async)
