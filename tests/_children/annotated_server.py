"""A stdio MCP server whose tools carry every kind of annotation, for the destructive-tools tests.

``read_notes`` (read-only), ``append_note`` (``destructiveHint: false``), ``delete_notes``
(``destructiveHint: true``), ``wipe_marked_read_only`` (destructive but also read-only: the
read-only mark wins, as the spec says the destructive hint only means something otherwise) and
``unmarked`` (no annotations).
"""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("annotated")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def read_notes() -> str:
    return "notes"


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
async def append_note(text: str) -> str:
    return f"appended {text}"


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
async def delete_notes() -> str:
    return "deleted"


@server.tool(annotations=ToolAnnotations(read_only_hint=True, destructive_hint=True))
async def wipe_marked_read_only() -> str:
    return "nothing wiped"


@server.tool()
async def unmarked() -> str:
    return "unmarked"


if __name__ == "__main__":
    anyio.run(server.run_stdio_async)
