"""MCP servers that stop answering.

Modes (``argv[1]``):

* ``tool``: serves normally, but the ``never`` tool never returns.
* ``frozen``: answers ``initialize`` by hand, then answers nothing at all (not
  even pings) and never notices that stdin closed; SIGTERM still kills it.
* ``stubborn``: serves normally, but ignores SIGTERM and keeps running after
  stdin closes: only SIGKILL stops it.
"""

from __future__ import annotations

import json
import signal
import sys
import time

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("hang")


@server.tool()
async def never() -> str:
    """Never return."""
    await anyio.sleep_forever()
    return "unreachable"


@server.tool()
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


def frozen() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("method") == "initialize":
            result = {
                "protocolVersion": request["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "frozen", "version": "0"},
            }
            sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}) + "\n")
            sys.stdout.flush()
            break
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "tool"
    if mode == "frozen":
        frozen()
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    anyio.run(server.run_stdio_async)
    if mode == "stubborn":
        sys.stderr.write("hang: stdin closed, staying alive anyway\n")
        sys.stderr.flush()
        while True:
            time.sleep(3600)
