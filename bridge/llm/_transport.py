"""A lean HTTP/1.1 transport for httpx, made for many streamed requests to one local server.

httpx's default transport (httpcore over h11) spends about a millisecond of CPU on
each streamed request and walks its whole connection pool every time a request
starts or a response closes; at a few hundred requests a second to a local model
server that was most of the bridge's own CPU. This transport plugs into httpx's one
extension seam (:class:`httpx.AsyncBaseTransport`), so httpx's request and
response objects and its exception classes stay as they are (``LLMClient`` calls
it directly, without httpx's client layer; an ``httpx.AsyncClient`` works too). It
speaks what LLM servers speak: HTTP/1.1 over TCP or TLS; bodies framed by
Content-Length, chunked encoding or the end of the connection; keep-alive with a
last-in-first-out idle list per origin. It does not do proxies, HTTP/2 or upgrades.

A pooled connection the server has closed is noticed before reuse when the
socket shows it, and otherwise when the request on it gets no answer at all: then
the request is sent once more on a new connection (nothing of it reached the
model, since the server answered nothing).
"""

from __future__ import annotations

import contextlib
import select
import ssl
from collections.abc import AsyncIterator
from typing import Final

import anyio
import anyio.abc
import httpx

__all__ = ["HTTP11Transport"]

_READ_SIZE: Final = 65536
_MAX_HEAD: Final = 64 * 1024
_MAX_LINE: Final = 8 * 1024
_MORE: Final = object()  # the parser needs more bytes
_END: Final = object()  # the body is complete

_Origin = tuple[str, str, int]


class _StaleConnectionError(Exception):
    """A reused connection turned out closed before the server answered anything."""


class _Connection:
    __slots__ = ("buffer", "idle_since", "origin", "raw", "reused", "stream", "tls")

    def __init__(self, stream: anyio.abc.ByteStream, origin: _Origin, *, tls: bool) -> None:
        self.stream = stream
        self.raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        self.origin = origin
        self.tls = tls
        self.buffer = bytearray()
        self.idle_since = 0.0
        self.reused = False

    async def fill(self) -> bool:
        """Read what the socket has into the buffer; False at the end of the stream."""
        try:
            data = await self.stream.receive(_READ_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError, OSError):
            return False
        self.buffer += data
        return True

    def take_line(self, limit: int) -> bytes | None:
        """One line without its ending, or None when the buffer does not hold a whole one."""
        end = self.buffer.find(b"\n")
        if end < 0:
            if len(self.buffer) > limit:
                raise httpx.RemoteProtocolError(f"a line of the response is longer than {limit} bytes")
            return None
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def looks_closed(self) -> bool:
        """True when the server has closed (or written to) an idle connection."""
        raw = self.raw
        if raw is None or raw.fileno() < 0:
            return True
        if self.tls:
            return False  # TLS may have records (session tickets) waiting; a dead one shows at use
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(raw.fileno(), select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([raw], [], [], 0)
        return bool(readable)


class _BodyParser:
    """Cuts a response body out of a connection's buffer: Content-Length, chunked, or to the end."""

    __slots__ = ("_chunked", "_remaining", "_state")

    def __init__(self, *, chunked: bool, length: int | None) -> None:
        self._chunked = chunked
        self._remaining = length if length is not None else -1
        self._state = "size" if chunked else "data"

    @property
    def until_close(self) -> bool:
        return not self._chunked and self._remaining < 0

    def next(self, conn: _Connection) -> bytes | object:
        """A piece of body, ``_MORE`` or ``_END``."""
        buffer = conn.buffer
        while True:
            if self._state == "data":
                if self._remaining == 0:
                    if not self._chunked:
                        return _END
                    self._state = "crlf"
                    continue
                if not buffer:
                    return _MORE
                take = len(buffer) if self._remaining < 0 else min(len(buffer), self._remaining)
                piece = bytes(buffer[:take])
                del buffer[:take]
                if self._remaining > 0:
                    self._remaining -= take
                return piece
            line = conn.take_line(_MAX_LINE)
            if line is None:
                return _MORE
            if self._state == "size":
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise httpx.RemoteProtocolError(f"bad chunk size {size_text[:40]!r} in the response") from None
                if size < 0:
                    raise httpx.RemoteProtocolError("negative chunk size in the response")
                if size == 0:
                    self._state = "trailer"
                else:
                    self._remaining, self._state = size, "data"
            elif self._state == "crlf":
                if line:
                    raise httpx.RemoteProtocolError("a chunk of the response is longer than its size says")
                self._state = "size"
            elif not line:  # "trailer": fields until a blank line
                self._state = "done"
                return _END


class _ResponseBody(httpx.AsyncByteStream):
    """The body of one response; closing it returns the connection to the pool or closes it."""

    def __init__(
        self, transport: HTTP11Transport, conn: _Connection, parser: _BodyParser | None, *, keep_alive: bool
    ) -> None:
        self._transport = transport
        self._conn = conn
        self._parser = parser
        self._keep_alive = keep_alive
        self._complete = parser is None
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._closed:
            raise httpx.StreamClosed()
        parser = self._parser
        if parser is None:
            return
        while not self._complete:
            piece = parser.next(self._conn)
            if piece is _END:
                self._complete = True
            elif piece is _MORE:
                if not await self._conn.fill():
                    if parser.until_close:
                        self._complete = True
                        self._keep_alive = False
                    else:
                        raise httpx.RemoteProtocolError(
                            "the server closed the connection before the end of the response body"
                        )
            else:
                assert isinstance(piece, bytes)
                yield piece

    def _finish_from_buffer(self) -> None:
        """Finish the body from bytes already received (the end of a stream read up to ``[DONE]``)."""
        parser = self._parser
        if parser is None or parser.until_close:
            return
        with contextlib.suppress(httpx.RemoteProtocolError):
            while True:
                piece = parser.next(self._conn)
                if piece is _END:
                    self._complete = True
                    return
                if piece is _MORE:
                    return

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._complete:
            self._finish_from_buffer()
        reusable = self._complete and self._keep_alive and not self._conn.buffer
        await self._transport._release(self._conn, reusable=reusable)


def _keep_alive(version: bytes, connection: list[bytes]) -> bool:
    tokens = {t.strip().lower() for value in connection for t in value.split(b",")}
    if version == b"HTTP/1.1":
        return b"close" not in tokens
    return b"keep-alive" in tokens


class HTTP11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive, for :class:`httpx.AsyncClient`.

    Args:
        max_connections: Connections open at once across all origins; a request
            past it waits (inside the caller's own deadline) for one to free up.
        keepalive_expiry: Seconds an idle connection is kept for reuse: below the
            5 s after which Node servers (LM Studio) close idle connections.
        ssl_context: For ``https`` origins; made on first use when not given.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._limit = anyio.Semaphore(max_connections, fast_acquire=True)
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the HTTP transport is closed")
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"{url.scheme!r} URLs are not supported; use http:// or https://")
        origin: _Origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        head, body = await _encode_request(request)
        await self._limit.acquire()
        try:
            return await self._send(request, origin, head, body)
        except BaseException:
            self._limit.release()
            raise

    async def _send(self, request: httpx.Request, origin: _Origin, head: bytes, body: list[bytes]) -> httpx.Response:
        fresh = False
        while True:
            conn = None if fresh else await self._take_idle(origin)
            if conn is None:
                conn = await self._connect(origin, request)
            try:
                return await self._exchange(request, conn, head, body)
            except _StaleConnectionError:
                await self._discard(conn)
                fresh = True
            except BaseException:
                await self._discard(conn)
                raise

    async def _exchange(
        self, request: httpx.Request, conn: _Connection, head: bytes, body: list[bytes]
    ) -> httpx.Response:
        try:
            await conn.stream.send(head + body[0] if body else head)
            for part in body[1:]:
                await conn.stream.send(part)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError, OSError) as exc:
            if conn.reused:
                raise _StaleConnectionError from exc
            raise httpx.WriteError(f"sending the request failed: {exc or type(exc).__name__}") from exc
        version, status, reason, headers = await self._read_head(conn)
        names = [(name.lower(), value) for name, value in headers]
        keep_alive = _keep_alive(version, [v for n, v in names if n == b"connection"])
        parser = _body_parser(request.method, status, names)
        if parser is not None and parser.until_close:
            keep_alive = False
        stream = _ResponseBody(self, conn, parser, keep_alive=keep_alive)
        return httpx.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={"http_version": version, "reason_phrase": reason},
        )

    async def _read_head(self, conn: _Connection) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]]:
        answered = False
        while True:
            size = 0
            lines: list[bytes] = []
            while True:
                line = conn.take_line(_MAX_HEAD)
                if line is None:
                    if not await conn.fill():
                        if conn.reused and not answered and not conn.buffer:
                            raise _StaleConnectionError
                        raise httpx.RemoteProtocolError("the server closed the connection without a full response")
                    answered = True
                    continue
                size += len(line) + 2
                if size > _MAX_HEAD:
                    raise httpx.RemoteProtocolError(f"the response head is longer than {_MAX_HEAD} bytes")
                if not line:
                    if lines:
                        break
                    continue  # tolerate blank lines before the status line
                lines.append(line)
            version, status, reason = _status_line(lines[0])
            headers: list[tuple[bytes, bytes]] = []
            for field in lines[1:]:
                name, sep, value = field.partition(b":")
                if not sep or not name or name != name.strip():
                    raise httpx.RemoteProtocolError(f"bad header line {field[:60]!r} in the response")
                headers.append((name, value.strip()))
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue and other interim answers: the real one follows
            return version, status, reason, headers

    async def _take_idle(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = anyio.current_time()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since <= self._keepalive_expiry and not conn.looks_closed():
                conn.reused = True
                return conn
            await self._discard(conn)
        return None

    async def _connect(self, origin: _Origin, request: httpx.Request) -> _Connection:
        await self._reap()
        scheme, host, port = origin
        timeouts = request.extensions.get("timeout", {})
        connect_timeout = timeouts.get("connect")
        tls = scheme == "https"
        try:
            with anyio.fail_after(connect_timeout):
                stream: anyio.abc.ByteStream
                if tls:
                    if self._ssl_context is None:
                        self._ssl_context = httpx.create_ssl_context()
                    stream = await anyio.connect_tcp(
                        host, port, ssl_context=self._ssl_context, tls_hostname=host, tls_standard_compatible=False
                    )
                else:
                    stream = await anyio.connect_tcp(host, port)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} took longer than {connect_timeout} s") from exc
        except (OSError, ssl.SSLError, anyio.BrokenResourceError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return _Connection(stream, origin, tls=tls)

    async def _release(self, conn: _Connection, *, reusable: bool) -> None:
        self._limit.release()
        if reusable and not self._closed:
            conn.idle_since = anyio.current_time()
            conn.reused = False
            self._idle.setdefault(conn.origin, []).append(conn)
        else:
            await self._discard(conn)

    async def _discard(self, conn: _Connection) -> None:
        await anyio.aclose_forcefully(conn.stream)

    async def _reap(self) -> None:
        """Close idle connections past their expiry (the oldest sit at the front of each list)."""
        now = anyio.current_time()
        for idle in self._idle.values():
            while idle and now - idle[0].idle_since > self._keepalive_expiry:
                await self._discard(idle.pop(0))

    async def aclose(self) -> None:
        """Close every idle connection; responses still open close theirs when they are closed."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await self._discard(conn)


async def _encode_request(request: httpx.Request) -> tuple[bytes, list[bytes]]:
    """The request line and headers, and the body's parts (read up front so a stale retry can resend them)."""
    target = request.url.raw_path or b"/"
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), target)]
    lines.extend(b"%s: %s" % (name, value) for name, value in request.headers.raw)
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
    parts: list[bytes] = []
    stream = request.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        raise TypeError("an async httpx client sends async request bodies only")
    async for part in stream:
        if not part:
            continue
        parts.append(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
    if chunked:
        parts.append(b"0\r\n\r\n")
    if len(parts) > 1 and not chunked:
        parts = [b"".join(parts)]
    return head, parts


def _status_line(line: bytes) -> tuple[bytes, int, bytes]:
    version, _, rest = line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(
            f"the server did not answer in HTTP/1.x (got {line[:60]!r}); is the base URL an HTTP LLM server?"
        )
    return version, int(code), reason


def _body_parser(method: str, status: int, names: list[tuple[bytes, bytes]]) -> _BodyParser | None:
    """How the body is framed (RFC 9112 section 6.3), or None when there is none."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return None
    codings = [t.strip().lower() for n, v in names if n == b"transfer-encoding" for t in v.split(b",")]
    if codings:
        return _BodyParser(chunked=codings[-1] == b"chunked", length=None)
    lengths = {v.strip() for n, v in names if n == b"content-length"}
    if not lengths:
        return _BodyParser(chunked=False, length=None)
    if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
        raise httpx.RemoteProtocolError(f"bad Content-Length in the response: {sorted(lengths)!r}")
    return _BodyParser(chunked=False, length=int(lengths.pop()))
