"""One connection to a child MCP server: its transport, its MCP session's handlers, its state.

This module holds every use of the mcp SDK's private client modules (mcp 2.x):
``mcp.client._transport`` for the transports' stream protocols (not exported),
and ``mcp.shared._httpx_utils.create_mcp_http_client``, the SDK's own default
HTTP client, which the streamable HTTP transport needs handed in to carry headers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, Final

import anyio
from mcp import ClientSession
from mcp import types as mcp_types
from mcp.client._transport import ReadStream, WriteStream  # the transports' own stream protocols
from mcp.client.session import IncomingMessage
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client  # the SDK's default client, with our headers
from mcp.shared.message import SessionMessage as WireMessage

from bridge.children._parse import ServerConfig
from bridge.children.process import ChildOutputError, ProcessGroups, StdioChild, open_stdio_child
from bridge.errors import ChildServerDownError
from bridge.messages import ChildToolInfo

__all__ = ["ChildConnection", "WatchedReadStream", "WireMessage", "open_transport"]


class WatchedReadStream:
    """The child's read stream as the session sees it, calling ``on_end`` the moment it ends.

    A wrapper rather than a forwarding task: no extra hop per message.
    """

    __slots__ = ("_inner", "_on_end")

    def __init__(self, inner: ReadStream[WireMessage | Exception], on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    @property
    def last_context(self) -> Any:  # the dispatcher reads the sender's context from the transport's stream
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> WireMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    def __aiter__(self) -> WatchedReadStream:
        return self

    async def __anext__(self) -> WireMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._on_end()
        await self._inner.aclose()

    async def __aenter__(self) -> WatchedReadStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class ChildConnection:
    """One started child (or remote server) and its MCP session: what the session actor serves from."""

    __slots__ = (
        "child",
        "end_reason",
        "ended",
        "invalid_lines",
        "last_activity",
        "last_invalid",
        "log",
        "ready_at",
        "served",
        "session",
        "tools",
        "tools_changed",
    )

    def __init__(self, server: str) -> None:
        self.log = logging.getLogger(f"bridge.children.{server}")
        self.child: StdioChild | None = None
        self.session: ClientSession | None = None
        self.tools: list[ChildToolInfo] = []
        self.tools_changed = anyio.Event()
        self.ended = anyio.Event()
        self.end_reason: ChildServerDownError | None = None
        self.ready_at: float | None = None
        self.served = False
        self.last_activity = anyio.current_time()
        self.invalid_lines = 0
        self.last_invalid: str | None = None

    def end(self, reason: ChildServerDownError | None = None) -> None:
        """The connection is over (``reason`` says why, when we know better than the child's exit)."""
        if not self.ended.is_set():
            self.end_reason = reason
            self.ended.set()

    def stable(self, stable_after: float) -> bool:
        """Whether it served a request, or stayed up ``stable_after`` seconds: its failure does not count twice."""
        if self.ready_at is None:
            return False
        return self.served or anyio.current_time() - self.ready_at >= stable_after

    @property
    def pid(self) -> int | None:
        return None if self.child is None else self.child.pid

    async def on_message(self, message: IncomingMessage) -> None:
        """The session's message handler: runs on its read loop, so it must not wait on the session."""
        if isinstance(message, ChildOutputError):
            self.invalid_lines += 1
            self.last_invalid = f"{message.line!r} ({message.reason})"
        elif isinstance(message, Exception):
            self.log.warning("transport error: %s", message)
        elif isinstance(message, mcp_types.ToolListChangedNotification):
            self.tools_changed.set()

    async def on_log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        level = _LOG_LEVELS.get(params.level, logging.INFO)
        self.log.log(level, "%s%s", f"{params.logger}: " if params.logger else "", params.data)


_LOG_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "emergency": logging.CRITICAL,
}


async def open_transport(
    config: ServerConfig,
    stack: AsyncExitStack,
    connection: ChildConnection,
    *,
    grace: float,
    groups: ProcessGroups | None,
) -> tuple[ReadStream[WireMessage | Exception], WriteStream[WireMessage]]:
    """Start the child (stdio) or connect to it (http, sse), for as long as ``stack`` is open."""
    if config.transport == "stdio":
        child = await stack.enter_async_context(
            open_stdio_child(config, grace=grace, term_timeout=grace, groups=groups)
        )
        connection.child = child
        return child.streams
    assert config.url is not None, "the config parser requires a url for remote servers"
    headers = dict(config.headers) or None
    if config.transport == "http":
        http = await stack.enter_async_context(create_mcp_http_client(headers=headers))
        streams = await stack.enter_async_context(streamable_http_client(config.url, http_client=http))
    else:
        streams = await stack.enter_async_context(sse_client(config.url, headers=headers))
    read: ReadStream[WireMessage | Exception] = streams[0]
    write: WriteStream[WireMessage] = streams[1]
    return read, write
