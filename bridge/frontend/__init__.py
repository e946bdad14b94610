"""The MCP front end: the server Claude Code talks to, over stdio.

* :func:`create_server` builds the ``MCPServer`` of a running bridge (one ``async`` tool per message); servers
  given one :class:`ToolCatalog` share what the SDK builds for each tool;
* :func:`serve_stdio` runs the bridge and serves it over stdin/stdout until stdin closes;
* :func:`configure_logging` sends logs to stderr, plain or as JSON lines.
"""

from __future__ import annotations

from bridge.frontend._batch import MAX_BATCH_ITEMS as MAX_BATCH_ITEMS
from bridge.frontend._batch import BatchItem as BatchItem
from bridge.frontend._format import DEFAULT_OUTPUT_LIMIT as DEFAULT_OUTPUT_LIMIT
from bridge.frontend._mcp_server import BridgeMCPServer as BridgeMCPServer
from bridge.frontend._mcp_server import ToolCatalog as ToolCatalog
from bridge.frontend._server import create_server as create_server
from bridge.frontend._slot import BridgeSlot as BridgeSlot
from bridge.frontend._stdio import serve_stdio as serve_stdio
from bridge.logs import configure_logging as configure_logging

__all__ = [
    "create_server",
    "serve_stdio",
    "configure_logging",
    "BridgeMCPServer",
    "BridgeSlot",
    "ToolCatalog",
    "BatchItem",
    "DEFAULT_OUTPUT_LIMIT",
    "MAX_BATCH_ITEMS",
]
