"""The stdio wire: one JSON-RPC message per line, and what to do with lines that are not.

A child that prints a banner or debug output to stdout is common (the MCP
spec forbids it, servers do it anyway). Such a line must not crash the
connection: it becomes a :class:`ChildOutputError` *item* on the read stream,
exactly where ``mcp.client.stdio`` puts its parse errors, so the session hands
it to its ``message_handler`` (where it can be counted) and carries on.
"""

from __future__ import annotations

import mcp_types as types
import pydantic
from mcp.shared.message import SessionMessage

__all__ = ["MAX_LINE_BYTES", "ChildOutputError", "decode_line", "encode_message", "too_long"]

MAX_LINE_BYTES = 64 * 1024 * 1024
"""Default longest stdout line: a longer one is reported and dropped rather than buffered without bound."""

_QUOTE_CHARS = 200


class ChildOutputError(ValueError):
    """A line on a child's stdout that is not a JSON-RPC message.

    Never raised: it travels as an item of the read stream, the way the mcp
    SDK's own stdio transport reports unparseable lines.

    Attributes:
        server: The child's name.
        line: The start of the offending line (at most 200 characters).
        reason: Why it was rejected.
    """

    def __init__(self, server: str, line: str, reason: str) -> None:
        self.server = server
        self.line = line
        self.reason = reason
        super().__init__(f"child {server!r} wrote a line that is not JSON-RPC ({reason}): {line!r}")


def decode_line(server: str, raw: bytes) -> SessionMessage | ChildOutputError | None:
    """Parse one stdout line; ``None`` for a blank line (tolerated, as by the SDK)."""
    line = raw.strip()
    if not line:
        return None
    try:
        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except pydantic.ValidationError as exc:
        invalid_json = any(error["type"] == "json_invalid" for error in exc.errors())
        reason = "invalid JSON" if invalid_json else "JSON, but not a JSON-RPC message"
        return ChildOutputError(server, _quote(line), reason)
    return SessionMessage(message)


def too_long(server: str, start: bytes, limit: int) -> ChildOutputError:
    """The item reported for a line over ``limit`` bytes (the rest of the line is dropped)."""
    return ChildOutputError(server, _quote(start), f"line longer than {limit} bytes")


def encode_message(message: SessionMessage) -> bytes:
    """One line of JSON for the child's stdin (the same encoding as ``mcp.client.stdio``)."""
    return (message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n").encode()


def _quote(line: bytes) -> str:
    return line[: _QUOTE_CHARS * 4].decode("utf-8", errors="replace")[:_QUOTE_CHARS]
