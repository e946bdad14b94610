"""A small HTTP/1.1 server on anyio sockets, so the simulator runs on asyncio and trio alike.

It speaks just what LM Studio's clients need: request line and headers,
``Content-Length`` or chunked request bodies, keep-alive, ``Connection: close``,
fixed-length JSON replies and chunked streaming replies (SSE).

Each connection runs two tasks: a reader that pulls bytes off the socket as
soon as they arrive, and the server loop that parses and answers requests. The
reader is what notices a client leaving in the middle of a reply (EOF or a
reset): it marks the request ``client_gone`` and cancels the scope the
request's handler runs in, so generation stops at once — as LM Studio's
"Client disconnected. Stopping generation…" does.

Streaming output is buffered until the handler pauses (:meth:`StreamWriter.pause`)
or ends, then sent as one chunk: a reply produced at once costs one write, not
one per token.
"""

from __future__ import annotations

import contextlib
import http
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import anyio
import msgspec
from anyio.abc import Listener, SocketAttribute, SocketStream

__all__ = [
    "ClientGone",
    "DropConnection",
    "HttpApp",
    "HttpRequest",
    "Response",
    "StreamWriter",
    "StreamingResponse",
    "bound_port",
    "json_response",
    "listen",
    "serve_http",
]

log = logging.getLogger("bridge.sim")

_MAX_HEAD = 64 * 1024
_MAX_BODY = 256 * 1024 * 1024
_READ_SIZE = 256 * 1024
_SERVER_HEADER = b"X-Powered-By: Express\r\n"


class DropConnection(Exception):
    """Raised by a handler to close the socket at once, without (the rest of) a reply."""


class ClientGone(Exception):
    """The client closed the connection; raised where a write found it gone."""


class HttpRequest:
    """One parsed request.

    Attributes:
        method: Upper-case method.
        path: Percent-decoded path, without the query.
        query: Query parameters (each name to its list of values).
        headers: Lower-case names; a repeated header keeps its last value.
        body: The raw body (chunked bodies are already joined).
        client_gone: Set once the client closed the connection while this request was in flight.
        gone_at: ``anyio.current_time()`` when that was seen.
    """

    __slots__ = ("body", "client_gone", "gone_at", "headers", "method", "path", "query", "version")

    def __init__(
        self, method: str, path: str, query: dict[str, list[str]], version: str, headers: dict[str, str], body: bytes
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = body
        self.client_gone = False
        self.gone_at: float | None = None

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    def json(self) -> Any:
        """The body as JSON (``msgspec.DecodeError`` if it is not)."""
        return msgspec.json.decode(self.body)

    def mark_gone(self) -> None:
        if not self.client_gone:
            self.client_gone = True
            self.gone_at = anyio.current_time()


@dataclass(slots=True)
class Response:
    """A reply with a known length."""

    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, obj: object, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """A JSON reply (``obj`` encoded with msgspec)."""
    return Response(status, msgspec.json.encode(obj), headers=headers)


@dataclass(slots=True)
class StreamingResponse:
    """A chunked reply whose body is produced by ``body(writer)``.

    The server always calls ``body`` once it has this object (nothing can
    cancel in between), so cleanup in the body's ``finally`` always runs.
    """

    body: Callable[[StreamWriter], Awaitable[None]]
    status: int = 200
    content_type: str = "text/event-stream"
    headers: tuple[tuple[str, str], ...] = (("Cache-Control", "no-cache"),)


HttpApp = Callable[[HttpRequest], Awaitable[Response | StreamingResponse]]


class StreamWriter:
    """Buffers frames of a streaming reply and sends them as chunks. Strictly private: handed to handlers."""

    __slots__ = ("_conn", "_head", "_pending", "closing", "number")

    def __init__(self, conn: _Connection, head: bytes, number: int) -> None:
        self._conn = conn
        self._head: bytes | None = head
        self._pending: list[bytes] = []
        self.closing = False
        """Set by :meth:`close_after`: the connection serves nothing after this reply."""
        self.number = number
        """Which streamed reply on its connection this is, from 1."""

    def close_after(self) -> None:
        """End the connection after this reply, once the client sends more on it or leaves.

        The reply ends whole (terminating chunk and all), and the connection looks kept alive;
        the client's next request on it is read and never answered, as when a server closes a
        kept-alive connection just as the client reuses it.
        """
        self.closing = True

    def write(self, data: bytes) -> None:
        """Queue bytes; they go out on the next :meth:`flush`."""
        self._pending.append(data)

    async def flush(self) -> None:
        """Send the headers (first time) and everything queued, as one chunk."""
        await self._conn.send(self._take())

    async def pause(self, seconds: float) -> None:
        """Flush, then sleep: what a generator does between tokens."""
        await self.flush()
        if seconds > 0:
            await anyio.sleep(seconds)

    async def finish(self) -> None:
        await self._conn.send(self._take() + b"0\r\n\r\n")

    def _take(self) -> bytes:
        data = b"".join(self._pending)
        self._pending.clear()
        out = b"%x\r\n%b\r\n" % (len(data), data) if data else b""
        if self._head is not None:
            out, self._head = self._head + out, None
        return out


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


def _headers(pairs: tuple[tuple[str, str], ...]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in pairs)


_INTERNAL_ERROR = Response(
    500, msgspec.json.encode({"error": {"message": "Internal simulator error.", "type": "server_error"}})
)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Connection:
    """One client connection: the reader task and the request loop. Strictly private."""

    __slots__ = (
        "_app",
        "_buf",
        "_current",
        "_eof",
        "_on_request",
        "_scope",
        "_stream",
        "_streamed",
        "_unresponsive",
        "_wakeup",
    )

    def __init__(
        self, stream: SocketStream, app: HttpApp, unresponsive: Callable[[], bool], on_request: Callable[[], None]
    ) -> None:
        self._stream = stream
        self._app = app
        self._unresponsive = unresponsive
        self._on_request = on_request
        self._buf = bytearray()
        self._eof = False
        self._wakeup = anyio.Event()
        self._current: HttpRequest | None = None
        self._scope: anyio.CancelScope | None = None
        self._streamed = 0

    async def run(self) -> None:
        async with self._stream, anyio.create_task_group() as tg:
            tg.start_soon(self._read_loop)
            try:
                if self._unresponsive():
                    await self._until_eof()
                else:
                    await self._serve()
            finally:
                tg.cancel_scope.cancel()

    # --- reading ----------------------------------------------------------------
    async def _read_loop(self) -> None:
        while True:
            try:
                data = await self._stream.receive(_READ_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                break
            self._buf += data
            self._wakeup.set()
        self._eof = True
        if self._current is not None and self._scope is not None:
            self._current.mark_gone()
            self._scope.cancel()
        self._wakeup.set()

    async def _wait_data(self) -> None:
        """Wait for more bytes or EOF. The check-then-wait has no checkpoint in between, so no wakeup is lost."""
        if self._eof:
            raise _BadRequest(0, "connection closed")
        self._wakeup = anyio.Event()
        await self._wakeup.wait()

    async def _need(self, n: int) -> None:
        while len(self._buf) < n:
            await self._wait_data()

    async def _read_line(self) -> bytes:
        while (end := self._buf.find(b"\r\n")) < 0:
            if len(self._buf) > _MAX_HEAD:
                raise _BadRequest(400, "line too long")
            await self._wait_data()
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    async def _until_more_data(self) -> None:
        """Wait until the client sends something (its next request) or leaves; nothing is answered."""
        while not self._buf and not self._eof:
            self._wakeup = anyio.Event()
            await self._wakeup.wait()

    async def _until_eof(self) -> None:
        while not self._eof:
            self._buf.clear()
            self._wakeup = anyio.Event()
            await self._wakeup.wait()

    # --- the request loop ---------------------------------------------------------
    async def _serve(self) -> None:
        while True:
            try:
                request = await self._next_request()
            except _BadRequest as exc:
                if exc.status:
                    await self._send_quietly(self._render(Response(exc.status, b"", "text/plain"), keep_alive=False))
                return
            except ClientGone:  # while answering "Expect: 100-continue"
                return
            if request is None:
                return
            self._on_request()
            if not await self._handle(request):
                return

    async def _next_request(self) -> HttpRequest | None:
        while self._buf[:2] == b"\r\n":  # stray CRLF between requests is allowed (RFC 9112 §2.2)
            del self._buf[:2]
        start = 0
        while (end := self._buf.find(b"\r\n\r\n", start)) < 0:
            if len(self._buf) > _MAX_HEAD:
                raise _BadRequest(431, "request head too large")
            if self._eof:
                return None
            start = max(0, len(self._buf) - 3)
            await self._wait_data()
            while self._buf[:2] == b"\r\n":
                del self._buf[:2]
                start = 0
        head = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        request_line, *header_lines = head.split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(400, "bad request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, "bad header line")
            headers[name.lower()] = value.strip()
        if headers.get("expect", "").lower() == "100-continue":
            await self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await self._read_body(headers)
        raw_path, _, raw_query = target.partition("?")
        return HttpRequest(method.upper(), unquote(raw_path), parse_qs(raw_query), version, headers, body)

    async def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await self._read_chunked()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequest(400, "bad content-length") from None
        if not 0 <= length <= _MAX_BODY:
            raise _BadRequest(413, "body too large")
        await self._need(length)
        body = bytes(self._buf[:length])
        del self._buf[:length]
        return body

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            line = await self._read_line()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "bad chunk size") from None
            if size == 0:
                while await self._read_line():  # trailers, up to the empty line
                    pass
                return bytes(body)
            if len(body) + size > _MAX_BODY:
                raise _BadRequest(413, "body too large")
            await self._need(size + 2)
            body += self._buf[:size]
            del self._buf[: size + 2]

    async def _handle(self, request: HttpRequest) -> bool:
        """Answer one request; return whether the connection may serve another."""
        keep_alive = request.keep_alive
        self._current = request
        headers_sent = False
        closing = False
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._eof:  # the client sent its request and left at once
                    request.mark_gone()
                    scope.cancel()
                try:
                    response = await self._app(request)
                    if isinstance(response, StreamingResponse):
                        headers_sent = True  # from here on a failure can only cut the stream
                        self._streamed += 1
                        writer = StreamWriter(self, self._stream_head(response, keep_alive), self._streamed)
                        await response.body(writer)
                        await writer.finish()
                        closing = writer.closing
                    else:
                        await self.send(self._render(response, keep_alive))
                except (DropConnection, ClientGone):
                    return False
                except Exception:
                    log.exception("simulator handler failed on %s %s", request.method, request.path)
                    if not headers_sent:
                        await self._send_quietly(self._render(_INTERNAL_ERROR, keep_alive=False))
                    return False
        finally:
            self._current = None
            self._scope = None
        if closing:
            await self._until_more_data()
            return False
        return keep_alive and not request.client_gone and not self._eof

    # --- writing ------------------------------------------------------------------
    def _render(self, response: Response, keep_alive: bool) -> bytes:
        head = (
            _status_line(response.status)
            + _SERVER_HEADER
            + b"Content-Type: "
            + response.content_type.encode("latin-1")
            + b"\r\nContent-Length: %d\r\n" % len(response.body)
            + (b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n")
            + _headers(response.headers)
            + b"\r\n"
        )
        return head + response.body

    def _stream_head(self, response: StreamingResponse, keep_alive: bool) -> bytes:
        return (
            _status_line(response.status)
            + _SERVER_HEADER
            + b"Content-Type: "
            + response.content_type.encode("latin-1")
            + b"\r\nTransfer-Encoding: chunked\r\n"
            + (b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n")
            + _headers(response.headers)
            + b"\r\n"
        )

    async def send(self, data: bytes) -> None:
        """Write to the socket; a closed peer marks the request gone and raises :class:`ClientGone`."""
        if not data:
            return
        try:
            await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            if self._current is not None:
                self._current.mark_gone()
            raise ClientGone from exc

    async def _send_quietly(self, data: bytes) -> None:
        with contextlib.suppress(ClientGone):
            await self.send(data)


async def listen(host: str, port: int) -> Listener[SocketStream]:
    """Bind ``host:port`` (``0``: a free port); a plain ``OSError`` if it is taken."""
    return await anyio.create_tcp_listener(local_host=host, local_port=port)


def bound_port(listener: Listener[SocketStream]) -> int:
    return listener.extra(SocketAttribute.local_port)


async def serve_http(
    listener: Listener[SocketStream],
    app: HttpApp,
    *,
    unresponsive: Callable[[], bool] = lambda: False,
    on_request: Callable[[], None] = lambda: None,
) -> None:
    """Serve ``app`` on ``listener`` until cancelled, then close it.

    ``unresponsive()`` is asked per new connection: when true the connection is
    accepted and held open but never read from nor answered.
    """

    async def handle(stream: SocketStream) -> None:
        try:
            await _Connection(stream, app, unresponsive, on_request).run()
        except Exception:  # one broken connection must not take the server down
            log.exception("simulator connection failed")

    async with listener, anyio.create_task_group() as tg:
        await listener.serve(handle, task_group=tg)
