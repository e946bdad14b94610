"""``serve --shared``: this session's stdio, relayed message by message to the user's shared bridge.

The relay is what Claude Code starts, so it stays small and quick: it imports
neither the mcp SDK nor the LLM client, attaches with one line (its directory,
environment and child-server settings) and then copies messages both ways.
Seen from the client it is ``serve``: stdin EOF ends the session (the bridge
answers what it can within ``EOF_GRACE``) and the relay exits.

Claude Code does not restart a stdio server that exits, so the relay outlives
its shared bridge: when the bridge goes away it answers every call in flight
with ``bridge_restarted`` (retryable), starts or finds a new bridge, and
replays the session's handshake there itself, so the client never sees a
second one. A relay that cannot reach any bridge answers each request with why.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final, Literal

import anyio
import msgspec
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from bridge.errors import ActorUnavailableError, BridgeError, BridgeRestartedError, error_fields, error_text
from bridge.fdio import StdinLines, StdoutWire
from bridge.settings import BridgeSettings
from bridge.shared._attach import Attach, encode_attach
from bridge.shared._lines import SocketLines
from bridge.shared._paths import SharedPaths
from bridge.shared._start import connect_or_start

__all__ = ["Conversation", "relay"]

log = logging.getLogger("bridge.shared")

EOF_LINGER: Final = 1.0
"""Seconds after stdin EOF for the bridge's last answers to come through before the relay exits."""
RESTARTS: Final = 5
RESTART_PERIOD: Final = 60.0
"""At most RESTARTS new bridges per RESTART_PERIOD seconds; past that, requests are answered with the error."""

ATTACH_ATTEMPTS: Final = 5
ATTACH_TIMEOUT: Final = 10.0
"""Seconds a bridge may take to acknowledge a session; a busy machine's bridge answers in milliseconds."""

_REPLAY_ID: Final = "lmstudio-bridge-relay:initialize"


class _Envelope(msgspec.Struct):
    """The two fields of a JSON-RPC message the relay looks at; the rest is not even parsed."""

    id: int | str | None = None
    method: str | None = None


_decode = msgspec.json.Decoder(_Envelope).decode


class Conversation:
    """What the relay must remember to hand a session to a new bridge: its handshake and its calls in flight."""

    def __init__(self) -> None:
        self.initialize: dict[str, Any] | None = None
        self.initialized: bytes | None = None
        self.in_flight: dict[int | str, str] = {}

    def upstream(self, line: bytes) -> None:
        """A message from the client, about to be sent to the bridge."""
        try:
            envelope = _decode(line)
        except msgspec.DecodeError:
            return  # a batch or garbage: the bridge answers it; nothing to replay
        if envelope.method is None:
            return
        if envelope.id is not None:
            self.in_flight[envelope.id] = envelope.method
            if envelope.method == "initialize":
                self.initialize = json.loads(line)
        elif envelope.method == "notifications/initialized":
            self.initialized = line
        elif envelope.method == "notifications/cancelled":
            request = json.loads(line).get("params", {}).get("requestId")
            if isinstance(request, int | str):
                self.in_flight.pop(request, None)  # no answer is due for it any more

    def downstream(self, line: bytes) -> bool:
        """A message from the bridge; ``False``: the answer to a replayed handshake, not for the client."""
        try:
            envelope = _decode(line)
        except msgspec.DecodeError:
            return True
        if envelope.method is None and envelope.id is not None:
            if envelope.id == _REPLAY_ID:
                return False
            self.in_flight.pop(envelope.id, None)
        return True

    def replay(self) -> list[bytes]:
        """The handshake again, for a new bridge (its answer is swallowed by :meth:`downstream`)."""
        if self.initialize is None:
            return []
        lines = [json.dumps({**self.initialize, "id": _REPLAY_ID}).encode() + b"\n"]
        if self.initialized is not None:
            lines.append(self.initialized)
        return lines

    def abandon(self, error: BridgeError) -> list[bytes]:
        """Answers with ``error`` for every request in flight, which are then forgotten."""
        answers = [answer(request, method, error) for request, method in self.in_flight.items()]
        self.in_flight.clear()
        return answers


def answer(request: int | str, method: str, error: BridgeError) -> bytes:
    """A tool call gets an ``isError`` result, as from the bridge; any other request a JSON-RPC error."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request}
    if method == "tools/call":
        message["result"] = {
            "content": [{"type": "text", "text": error_text(error)}],
            "structuredContent": error_fields(error),
            "isError": True,
        }
    else:
        message["error"] = {"code": -32603, "message": error_text(error), "data": error_fields(error)}
    return json.dumps(message).encode() + b"\n"


async def relay(settings: BridgeSettings, paths: SharedPaths, attach: Attach) -> None:
    """Attach to (or start) the shared bridge of ``paths`` and relay this process's stdio to it until stdin ends."""
    stdin = StdinLines.claim()
    stdout = StdoutWire.claim()
    conversation = Conversation()
    restarts: list[float] = []
    waiting: bytes | None = None  # the message that made a relay without a bridge start one
    try:
        while True:
            try:
                stream, received = await _attach(settings, paths, attach, conversation)
            except BridgeError as exc:
                log.warning("no shared bridge: %s", exc.message)
                if waiting is not None:  # it came while there was no bridge: it gets the reason
                    conversation.upstream(waiting)
                    waiting = None
                    for reply in conversation.abandon(exc):
                        await stdout.write(reply)
                    continue
                if await _refuse_until_asked(stdin, stdout, conversation, exc):
                    continue
                return
            async with stream:
                outcome = await _session(stream, received, stdin, stdout, conversation, waiting)
            waiting = None
            if outcome == "eof":
                return
            log.warning("the shared bridge went away; answering %d call(s) in flight", len(conversation.in_flight))
            gone = BridgeRestartedError(
                "the shared bridge stopped while this call ran; a new one is starting. Send the call again"
            )
            for line in conversation.abandon(gone):
                await stdout.write(line)
            now = anyio.current_time()
            restarts = [t for t in restarts if t > now - RESTART_PERIOD] + [now]
            if len(restarts) > RESTARTS:
                error = BridgeRestartedError(
                    f"the shared bridge stopped {len(restarts)} times within {RESTART_PERIOD:g} s; see {paths.log}",
                    retryable=False,
                )
                if not await _refuse_until_asked(stdin, stdout, conversation, error):
                    return
                restarts.clear()
            # A new bridge when the client next sends something, not at once: after `daemon stop`
            # an idle session does not bring a bridge straight back.
            waiting = await _next_line(stdin)
            if waiting is None:
                return
    finally:
        stdout.release()
        stdin.release()


async def _attach(
    settings: BridgeSettings, paths: SharedPaths, attach: Attach, conversation: Conversation
) -> tuple[SocketStream, BufferedByteReceiveStream]:
    """A connection the bridge has acknowledged, with the session's handshake replayed on it."""
    for _ in range(ATTACH_ATTEMPTS):
        stream = await connect_or_start(settings, paths)
        received = BufferedByteReceiveStream(stream)
        try:
            await stream.send(encode_attach(attach))
            with anyio.fail_after(ATTACH_TIMEOUT):
                ack = msgspec.json.decode(await received.receive_until(b"\n", 4096))
            if isinstance(ack, dict) and "attached" in ack:
                for line in conversation.replay():
                    await stream.send(line)
                return stream, received
        except (
            OSError,
            TimeoutError,
            msgspec.DecodeError,
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.DelimiterNotFound,
        ):
            pass  # a listener going away (a bridge killed a moment ago): look again
        await stream.aclose()
    raise ActorUnavailableError(
        f"the shared bridge on {paths.socket} accepts connections but does not attach sessions; see {paths.log}",
        retryable=True,
    )


async def _session(
    stream: SocketStream,
    received: BufferedByteReceiveStream,
    stdin: StdinLines,
    stdout: StdoutWire,
    conversation: Conversation,
    waiting: bytes | None = None,
) -> Literal["eof", "gone"]:
    """Relay (``waiting`` first) until stdin ends (``eof``) or the bridge goes away (``gone``)."""
    outcome: Literal["eof", "gone"] = "gone"
    async with anyio.create_task_group() as tg:

        async def downstream() -> None:
            async for text in SocketLines(received):
                line = text.encode("utf-8")
                if conversation.downstream(line):
                    await stdout.write(line)
            tg.cancel_scope.cancel()

        tg.start_soon(downstream)
        try:
            if waiting is not None:
                conversation.upstream(waiting)
                await stream.send(waiting)
            async for text in stdin:
                line = _line(text)
                conversation.upstream(line)
                await stream.send(line)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            tg.cancel_scope.cancel()
            return "gone"
        outcome = "eof"
        try:
            await stream.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            tg.cancel_scope.cancel()
        tg.cancel_scope.deadline = anyio.current_time() + EOF_LINGER
    return outcome


async def _refuse_until_asked(
    stdin: StdinLines, stdout: StdoutWire, conversation: Conversation, error: BridgeError
) -> bool:
    """No bridge: answer the next request with ``error``, then try again (``False``: stdin ended first)."""
    async for text in stdin:
        conversation.upstream(text.encode("utf-8"))
        replies = conversation.abandon(error)
        for reply in replies:
            await stdout.write(reply)
        if replies:
            return True
    return False


def _line(text: str) -> bytes:
    return (text if text.endswith("\n") else f"{text}\n").encode("utf-8")


async def _next_line(stdin: StdinLines) -> bytes | None:
    async for text in stdin:
        return _line(text)
    return None
