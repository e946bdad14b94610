"""Helpers shared by tests."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio

from bridge.frontend import BridgeMCPServer, BridgeSlot, ToolCatalog, create_server

if TYPE_CHECKING:
    from bridge.app import Bridge

CHILDREN = Path(__file__).parent / "_children"
"""The small MCP servers and scripts the tests start as child processes."""

TOOL_CATALOG: Final = ToolCatalog()
"""One catalog for every in-process server of a test worker, as a shared bridge has one for its sessions:
the SDK builds each tool's argument model once instead of for every test (~80 ms of CPU a server)."""


def mcp_server(bridge: Bridge | BridgeSlot, **options: Any) -> BridgeMCPServer:
    """:func:`~bridge.frontend.create_server` with the tests' shared :data:`TOOL_CATALOG`."""
    return create_server(bridge, catalog=TOOL_CATALOG, **options)


async def eventually(predicate: Callable[[], bool], *, within: float = 10.0) -> None:
    """Wait until ``predicate()`` holds; fail the test if it does not within ``within`` seconds.

    A bound on a wait, not a timing assertion: it only turns a hang into a failure.
    """
    with anyio.fail_after(within):
        while not predicate():
            await anyio.sleep(0.001)


async def eventually_async(predicate: Callable[[], Awaitable[bool]], *, within: float = 10.0) -> None:
    """:func:`eventually` for a check that has to ask something (an actor, a child server)."""
    with anyio.fail_after(within):
        while not await predicate():
            await anyio.sleep(0.01)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
