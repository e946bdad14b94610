"""A tiny real MCP server for the demo: the child whose tools a simulated model uses.

Run: ``python -m bridge.sim.demo_tools`` (stdio). It needs nothing beyond the bridge's own
dependencies, so ``lmstudio-bridge demo`` can show an autonomous run on a fresh machine.
"""

from __future__ import annotations

import datetime
import zoneinfo

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("workshop")


@server.tool()
async def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


@server.tool()
async def get_time(timezone: str = "UTC") -> str:
    """The current time in an IANA time zone, e.g. Europe/Paris."""
    return datetime.datetime.now(zoneinfo.ZoneInfo(timezone)).isoformat(timespec="seconds")


@server.tool()
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


def main() -> None:
    anyio.run(server.run_stdio_async)


if __name__ == "__main__":
    main()
