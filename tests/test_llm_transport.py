"""The bridge's HTTP/1.1 transport against a scripted TCP server: framing, keep-alive, failures, limits, TLS."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import httpx
import pytest
import trustme

from bridge.llm._client import _abandon
from bridge.llm._transport import HTTP11Transport

Handler = Callable[["Peer"], Awaitable[None]]


@dataclass
class Peer:
    """One accepted connection, seen from the server side."""

    stream: anyio.abc.ByteStream
    index: int
    buffer: bytearray = field(default_factory=bytearray)

    async def line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            try:
                self.buffer += await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None
        end = self.buffer.index(b"\r\n")
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    async def exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer += await self.stream.receive()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def request(self) -> tuple[bytes, dict[bytes, bytes], bytes] | None:
        """The next request (line, lower-cased headers, body), or None when the client closed."""
        first = await self.line()
        if first is None:
            return None
        headers: dict[bytes, bytes] = {}
        while line := await self.line():
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while (size := int(await self.line() or b"0", 16)) > 0:
                body += await self.exact(size)
                await self.line()
            await self.line()
        else:
            body = await self.exact(int(headers.get(b"content-length", b"0")))
        return first, headers, body

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)


@dataclass
class Server:
    url: str
    peers: list[Peer] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def serving(handler: Handler, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server = Server(url=f"{'https' if tls else 'http'}://127.0.0.1:{port}")

    accepted: list[anyio.abc.ByteStream] = []

    async def accept(stream: anyio.abc.ByteStream) -> None:
        if tls is not None:
            from anyio.streams.tls import TLSStream

            try:
                stream = await TLSStream.wrap(stream, server_side=True, ssl_context=tls, standard_compatible=False)
            except (ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream):
                return  # the client refused our certificate
        peer = Peer(stream, len(server.peers))
        server.peers.append(peer)
        async with stream:
            await handler(peer)

    async def accept_all() -> None:
        while True:
            stream = await listener.listeners[0].accept()  # type: ignore[attr-defined]
            accepted.append(stream)  # closed at the end even if its task never got to run
            tg.start_soon(accept, stream)

    try:
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(accept_all)
            yield server
            tg.cancel_scope.cancel()
    finally:
        for stream in accepted:
            await anyio.aclose_forcefully(stream)


def ok(body: bytes = b"hello", *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def answer_each(peer: Peer, reply: Callable[[bytes], bytes] = lambda body: ok(body)) -> None:
    """Echo server: answer every request on the connection with ``reply(request body)``."""
    while (request := await peer.request()) is not None:
        await peer.send(reply(request[2]))


@asynccontextmanager
async def client(**kwargs: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = HTTP11Transport(**kwargs)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0)) as http:
        yield http


# --------------------------------------------------------------------------- framing and keep-alive


async def test_content_length_answers_reuse_one_connection() -> None:
    async with serving(answer_each) as server, client() as http:
        for i in range(3):
            response = await http.post(f"{server.url}/v1/x?q={i}", content=b"ping %d" % i)
            assert response.status_code == 200
            assert response.content == b"ping %d" % i
    assert len(server.peers) == 1


async def test_request_line_and_headers_are_sent_as_given() -> None:
    seen: list[tuple[bytes, dict[bytes, bytes], bytes]] = []

    async def record(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            seen.append(request)
            await peer.send(ok())

    async with serving(record) as server, client() as http:
        await http.post(f"{server.url}/v1/chat?a=b%20c", content=b"{}", headers={"x-key": "v"})
    line, headers, body = seen[0]
    assert line == b"POST /v1/chat?a=b%20c HTTP/1.1"
    assert headers[b"host"] == server.url.removeprefix("http://").encode()
    assert headers[b"x-key"] == b"v"
    assert body == b"{}"


async def test_chunked_answer_with_extensions_and_trailers() -> None:
    async def chunked(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n"
                b"6\r\n world\r\n"
                b"0\r\nX-Trailer: yes\r\n\r\n"
            )

    async with serving(chunked) as server, client() as http:
        first = await http.get(server.url)
        second = await http.get(server.url)
    assert first.content == b"hello world"
    assert second.content == b"hello world"
    assert len(server.peers) == 1


async def test_streamed_chunks_arrive_as_they_are_sent() -> None:
    """The client sees each SSE frame before the server sends the next one."""
    go_on = anyio.Event()

    async def sse(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        await peer.send(b"d\r\ndata: first\n\n\r\n")
        await go_on.wait()
        await peer.send(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
        await answer_each(peer)

    async with serving(sse) as server, client() as http:
        async with http.stream("POST", server.url, content=b"{}") as response:
            lines = response.aiter_lines()
            assert await lines.__anext__() == "data: first"
            go_on.set()
            rest = [line async for line in lines]
        assert rest == ["", "data: second", ""]
        assert (await http.post(server.url, content=b"again")).content == b"again"
    assert len(server.peers) == 1


async def test_a_stream_closed_after_its_last_frame_keeps_the_connection() -> None:
    """Reading up to ``[DONE]`` and closing: the terminal chunk already received lets the connection be reused."""

    async def sse(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nc\r\ndata: [DONE]\r\n0\r\n\r\n")

    async with serving(sse) as server, client() as http:
        for _ in range(3):
            async with http.stream("POST", server.url, content=b"{}") as response:
                lines = response.aiter_lines()
                async for line in lines:
                    if line == "data: [DONE]":
                        break
                await _abandon(lines)
    assert len(server.peers) == 1


async def test_body_to_the_end_of_the_connection_is_read_and_not_reused() -> None:
    async def close_delimited(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\n\r\nall of it")

    async with serving(close_delimited) as server, client() as http:
        assert (await http.get(server.url)).content == b"all of it"
        assert (await http.get(server.url)).content == b"all of it"
    assert len(server.peers) == 2


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_answers_that_end_the_connection_are_not_reused(head: bytes) -> None:
    async def once(peer: Peer) -> None:
        await peer.request()
        await peer.send(head)

    async with serving(once) as server, client() as http:
        assert (await http.get(server.url)).content == b"ok"
        assert (await http.get(server.url)).content == b"ok"
    assert len(server.peers) == 2


async def test_interim_100_continue_is_skipped_and_204_has_no_body() -> None:
    async def interim(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        await answer_each(peer)

    async with serving(interim) as server, client() as http:
        response = await http.post(server.url, content=b"x")
        assert response.status_code == 204
        assert response.content == b""
        assert (await http.post(server.url, content=b"next")).content == b"next"
    assert len(server.peers) == 1


async def test_chunked_upload_is_sent_chunked() -> None:
    bodies: list[bytes] = []

    async def record(peer: Peer) -> None:
        request = await peer.request()
        assert request is not None
        bodies.append(request[2])
        await peer.send(ok())

    async def parts() -> AsyncIterator[bytes]:
        yield b"one,"
        yield b"two"

    async with serving(record) as server, client() as http:
        await http.post(server.url, content=parts())
    assert bodies == [b"one,two"]


# --------------------------------------------------------------------------- stale and broken connections


async def test_idle_connection_closed_by_the_server_is_not_used() -> None:
    async def one_then_close(peer: Peer) -> None:
        request = await peer.request()
        assert request is not None
        await peer.send(ok(request[2]))  # says keep-alive, then closes anyway

    async with serving(one_then_close) as server, client() as http:
        assert (await http.post(server.url, content=b"a")).content == b"a"
        await anyio.sleep(0.05)  # the FIN reaches the client
        assert (await http.post(server.url, content=b"b")).content == b"b"
    assert len(server.peers) == 2


async def test_reused_connection_that_dies_unanswered_is_retried_once_on_a_new_one() -> None:
    received: list[bytes] = []

    async def drop_second(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            received.append(request[2])
            if peer.index == 0 and len(received) == 2:
                return  # read the request, close without a word
            await peer.send(ok(request[2]))

    async with serving(drop_second) as server, client() as http:
        assert (await http.post(server.url, content=b"a")).content == b"a"
        assert (await http.post(server.url, content=b"b")).content == b"b"
    assert received == [b"a", b"b", b"b"]
    assert len(server.peers) == 2


async def test_new_connection_closed_unanswered_is_a_protocol_error() -> None:
    async def hang_up(peer: Peer) -> None:
        await peer.request()

    async with serving(hang_up) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="without a full response"):
            await http.post(server.url, content=b"x")
    assert len(server.peers) == 1


async def test_body_cut_short_is_a_protocol_error() -> None:
    async def short(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")

    async with serving(short) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="before the end of the response body"):
            await http.get(server.url)


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "did not answer in HTTP/1.x"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "bad Content-Length"),
    ],
    ids=["not-http", "header", "chunk-size", "two-lengths"],
)
async def test_malformed_answers_are_protocol_errors(reply: bytes, match: str) -> None:
    async def bad(peer: Peer) -> None:
        await peer.request()
        await peer.send(reply)
        await anyio.sleep_forever()

    async with serving(bad) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match=match):
            await http.get(server.url)


async def test_refused_connection_is_a_connect_error() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")


async def test_unknown_scheme_is_unsupported() -> None:
    async with client() as http:
        with pytest.raises(httpx.UnsupportedProtocol, match="use http"):
            await http.get("ftp://127.0.0.1/")


# --------------------------------------------------------------------------- cancellation and the connection limit


async def test_closing_a_stream_early_drops_its_connection() -> None:
    ended = anyio.Event()

    async def endless(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
                while True:
                    await peer.send(b"6\r\ndata: \r\n")
                    await anyio.sleep(0.001)
            ended.set()
        else:
            await answer_each(peer)

    async with serving(endless) as server, client() as http:
        async with http.stream("GET", server.url) as response:
            chunks = response.aiter_raw()
            async for _ in chunks:
                break
            await _abandon(chunks)
        with anyio.fail_after(5):
            await ended.wait()
        assert (await http.post(server.url, content=b"z")).content == b"z"
    assert len(server.peers) == 2


async def test_cancelled_request_frees_its_connection_slot() -> None:
    answered = anyio.Event()

    async def slow_first(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.line()  # the client gives up: EOF
            answered.set()
        else:
            await answer_each(peer)

    async with serving(slow_first) as server, client(max_connections=1) as http:
        with anyio.move_on_after(0.2) as scope:
            await http.get(server.url)
        assert scope.cancelled_caught
        with anyio.fail_after(5):
            await answered.wait()  # the server saw the connection close
            assert (await http.post(server.url, content=b"next")).content == b"next"


async def test_requests_past_the_limit_wait_for_a_response_to_close() -> None:
    order: list[str] = []

    async with serving(answer_each) as server, client(max_connections=1) as http:
        async with http.stream("POST", server.url, content=b"first") as response:  # body left unread: still leased

            async def second() -> None:
                order.append("second starts")
                await http.post(server.url, content=b"second")
                order.append("second done")

            async with anyio.create_task_group() as tg:
                tg.start_soon(second)
                await anyio.sleep(0.05)
                order.append("first closes")
                await response.aclose()
    assert order == ["second starts", "first closes", "second done"]


async def test_idle_connections_expire() -> None:
    async with serving(answer_each) as server, client(keepalive_expiry=0.0) as http:
        await http.get(server.url)
        await anyio.sleep(0.01)
        await http.get(server.url)
    assert len(server.peers) == 2


async def test_closed_transport_refuses_requests_and_closes_idle_connections() -> None:
    closed = anyio.Event()

    async def note_close(peer: Peer) -> None:
        await answer_each(peer)
        closed.set()

    async with serving(note_close) as server:
        transport = HTTP11Transport()
        async with httpx.AsyncClient(transport=transport) as http:
            await http.get(server.url)
        with anyio.fail_after(5):
            await closed.wait()
        with pytest.raises(RuntimeError, match="closed"):
            await transport.handle_async_request(httpx.Request("GET", server.url))


# --------------------------------------------------------------------------- TLS


async def test_https_with_a_trusted_certificate() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with serving(answer_each, tls=server_context) as server, client(ssl_context=client_context) as http:
        assert (await http.post(f"{server.url}/v1", content=b"secret")).content == b"secret"
        assert (await http.post(f"{server.url}/v1", content=b"again")).content == b"again"
    assert len(server.peers) == 1


async def test_https_with_an_unknown_certificate_is_a_connect_error() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)

    async def serve(peer: Peer) -> None:
        await answer_each(peer)

    async with serving(serve, tls=server_context) as server, client() as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(server.url)
