"""Newline-delimited messages over a socket stream, the framing MCP's stdio transport uses."""

from __future__ import annotations

from typing import Final, Self

import anyio
from anyio.abc import ByteStream
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["LINE_LIMIT", "SocketLines", "SocketWire"]

LINE_LIMIT: Final = 64 << 20
"""Bytes one message may take; a batch of prompts can be large, a runaway peer should not be unbounded."""


class SocketLines:
    """The lines of a stream as ``str`` (newline kept), until the peer closes its side; ``eof`` is then set."""

    def __init__(self, buffered: BufferedByteReceiveStream) -> None:
        self._buffered = buffered
        self.eof = anyio.Event()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        try:
            line = await self._buffered.receive_until(b"\n", LINE_LIMIT)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.eof.set()
            raise StopAsyncIteration from None
        except anyio.DelimiterNotFound:
            self.eof.set()
            raise ValueError(f"a message longer than {LINE_LIMIT} bytes; the connection is closed") from None
        return line.decode("utf-8", errors="replace") + "\n"


class SocketWire:
    """Whole lines out to a stream; a peer that went away makes writes no-ops, not errors."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self.broken = False

    async def write(self, text: str | bytes) -> None:
        if self.broken:
            return
        try:
            await self._stream.send(text.encode("utf-8") if isinstance(text, str) else text)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.broken = True

    async def flush(self) -> None:
        """Each write is sent whole: nothing is buffered."""
