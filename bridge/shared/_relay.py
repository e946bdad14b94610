"""``serve --shared``: this session's stdio, relayed byte for byte to the user's shared bridge.

The relay is what Claude Code starts, so it stays small and quick: it imports
neither the mcp SDK nor the LLM client, attaches with one line (its directory,
environment and child-server settings) and then copies messages both ways.
Seen from the client it is ``serve``: stdin EOF ends the session (the bridge
answers what it can within ``EOF_GRACE``) and the relay exits.
"""

from __future__ import annotations

import logging
from typing import Final

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from bridge.fdio import StdinLines, StdoutWire
from bridge.settings import BridgeSettings
from bridge.shared._attach import Attach, encode_attach
from bridge.shared._lines import SocketLines
from bridge.shared._paths import SharedPaths
from bridge.shared._start import connect_or_start

__all__ = ["relay"]

log = logging.getLogger("bridge.shared")

EOF_LINGER: Final = 1.0
"""Seconds after stdin EOF for the bridge's last answers to come through before the relay exits."""


async def relay(settings: BridgeSettings, paths: SharedPaths, attach: Attach) -> None:
    """Attach to (or start) the shared bridge of ``paths`` and relay this process's stdio to it."""
    stream = await connect_or_start(settings, paths)
    stdin = StdinLines.claim()
    stdout = StdoutWire.claim()
    try:
        async with stream:
            await stream.send(encode_attach(attach))
            await _copy_both_ways(stream, stdin, stdout)
    finally:
        stdout.release()
        stdin.release()


async def _copy_both_ways(stream: SocketStream, stdin: StdinLines, stdout: StdoutWire) -> None:
    async with anyio.create_task_group() as tg:

        async def downstream() -> None:
            async for line in SocketLines(BufferedByteReceiveStream(stream)):
                await stdout.write(line)
            if not stdin.eof.is_set():
                log.warning("the shared bridge closed the session")
            tg.cancel_scope.cancel()

        tg.start_soon(downstream)
        try:
            async for line in stdin:
                await stream.send(line.encode("utf-8") if line.endswith("\n") else f"{line}\n".encode())
            await stream.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            log.warning("the shared bridge went away")
            tg.cancel_scope.cancel()
            return
        tg.cancel_scope.deadline = anyio.current_time() + EOF_LINGER
