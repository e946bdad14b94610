"""The LLM client's HTTP (httpx's transport, set up in ``bridge.llm._http``) against a scripted TCP server.

What the bridge relies on: frames arrive as they are sent, a POST is never sent twice,
a cancelled call drops its connection, header values are checked, proxies and
``SSL_CERT_FILE`` from the environment are honoured, loopback servers are reached directly.
"""

from __future__ import annotations

import gc
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc
import pytest
import trustme

from bridge.errors import ConfigError, ErrorCode, LLMConnectionError
from bridge.llm import ChatMessage, ChatRequest, LLMClient
from bridge.llm._http import tls_context

Handler = Callable[["Peer"], Awaitable[None]]


@dataclass
class Peer:
    """One accepted connection, seen from the server side."""

    stream: anyio.abc.ByteStream
    index: int
    server: Server
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
        self.server.requests.append((first, headers, body))
        return first, headers, body

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)


@dataclass
class Server:
    url: str
    peers: list[Peer] = field(default_factory=list)
    requests: list[tuple[bytes, dict[bytes, bytes], bytes]] = field(default_factory=list)


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
        peer = Peer(stream, len(server.peers), server)
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


REQUEST = ChatRequest(model="m", messages=[ChatMessage(role="user", content="hello")], max_tokens=4)
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def frame(content: str, finish: str | None = None) -> bytes:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
END = chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"


def chat_answer(text: str = "hi") -> bytes:
    return STREAM_HEAD + chunk(frame(text, "stop")) + END


async def answer_each(peer: Peer) -> None:
    """Answer every request on the connection with a whole chat stream."""
    while await peer.request() is not None:
        await peer.send(chat_answer())


def first_connection(handler: Handler) -> Handler:
    """``handler`` on the first connection; every later one gets whole answers."""

    async def serve(peer: Peer) -> None:
        await (handler if peer.index == 0 else answer_each)(peer)

    return serve


@pytest.fixture(autouse=True)
def no_proxy_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# --------------------------------------------------------------------------- streaming and keep-alive


async def test_frames_reach_the_caller_as_they_are_sent() -> None:
    """The first frame is seen before the server sends the second (nothing buffers a stream)."""
    seen_first = anyio.Event()

    async def stream(peer: Peer) -> None:
        await peer.request()
        await peer.send(STREAM_HEAD + chunk(frame("first ")))
        await seen_first.wait()
        await peer.send(chunk(frame("second", "stop")) + END)

    async def progress(_: object) -> None:
        seen_first.set()

    async with serving(stream) as server, LLMClient(server.url) as llm:
        with anyio.fail_after(10):
            outcome = await llm.chat(REQUEST, on_progress=progress)
    assert outcome.content == "first second"


async def test_successive_calls_share_one_connection_and_send_the_bridges_headers() -> None:
    async with serving(answer_each) as server, LLMClient(server.url, api_key="sk-1") as llm:
        for _ in range(3):
            assert (await llm.chat(REQUEST)).content == "hi"
    assert len(server.peers) == 1
    line, headers, body = server.requests[0]
    assert line == b"POST /v1/chat/completions HTTP/1.1"
    assert headers[b"authorization"] == b"Bearer sk-1"
    assert headers[b"accept-encoding"] == b"identity"  # a compressed stream would arrive in lumps
    assert json.loads(body)["stream"] is True


# --------------------------------------------------------------------------- never twice, and typed failures


async def test_a_post_is_sent_once_when_a_reused_connection_dies_unanswered() -> None:
    """The server may have started generating: re-sending would run the generation twice."""

    async def drop_second(peer: Peer) -> None:
        assert await peer.request() is not None
        await peer.send(chat_answer())
        await peer.request()  # read the second request, then close without a word

    async with serving(drop_second) as server, LLMClient(server.url) as llm:
        assert (await llm.chat(REQUEST)).content == "hi"
        with pytest.raises(LLMConnectionError) as caught:
            await llm.chat(REQUEST)
    assert len(server.requests) == 2  # one each: the second was not sent again
    assert len(server.peers) == 1
    assert caught.value.retryable  # the caller (the worker's retry policy) decides


async def test_after_a_connection_closed_unanswered_each_request_has_its_own() -> None:
    """A server that closes kept-alive connections without saying so (llama.cpp's) is asked with
    ``Connection: close`` from then on: no later request is sent on a connection it may drop."""

    async def drop_second(peer: Peer) -> None:
        assert await peer.request() is not None
        await peer.send(chat_answer())
        await peer.request()  # read the second request, then close without a word

    async with serving(first_connection(drop_second)) as server, LLMClient(server.url) as llm:
        assert (await llm.chat(REQUEST)).content == "hi"
        with pytest.raises(LLMConnectionError) as caught:
            await llm.chat(REQUEST)
        for _ in range(2):
            assert (await llm.chat(REQUEST)).content == "hi"
    assert caught.value.details["reason"] == "closed_unanswered"
    assert "closed the connection without answering" in caught.value.message
    assert [headers.get(b"connection") for _, headers, _ in server.requests] == [None, None, b"close", b"close"]
    assert len(server.peers) == 3  # the last two requests each on a connection of its own


async def test_a_server_that_dies_while_the_body_is_sent_leaves_nothing_unfinalised() -> None:
    """A write that fails mid-body is a typed error and leaves no body iterator for the GC.

    httpx's own body stream is an async generator; a failed write leaves it suspended, and
    trio reports it when it is collected (encode/httpx#3686), as a warning in whichever test
    runs next. Seen when a server was killed mid-run (test_multi_server).
    """

    async def hang_up_after_the_headers(peer: Peer) -> None:
        while await peer.line():
            pass  # the request line and headers; the body is left unread, so closing resets

    big = ChatRequest(model="m", messages=[ChatMessage(role="user", content="x" * 8_000_000)], max_tokens=4)
    async with serving(hang_up_after_the_headers) as server, LLMClient(server.url) as llm:
        with pytest.raises(LLMConnectionError) as caught:
            await llm.chat(big)
    assert caught.value.retryable
    del caught
    gc.collect()  # what the warning needs: the failed request's body collected inside this test
    await anyio.lowlevel.checkpoint()


async def test_refused_connection_is_a_retryable_backend_unavailable() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    async with LLMClient(f"http://127.0.0.1:{port}") as llm:
        with pytest.raises(LLMConnectionError) as caught:
            await llm.chat(REQUEST)
    assert caught.value.code == ErrorCode.BACKEND_UNAVAILABLE
    assert caught.value.retryable
    assert "Is the LLM server running" in caught.value.message


@pytest.mark.parametrize("key", ["sk-1\r\nX-Injected: 1", "sk-1\n", "clé"], ids=["crlf", "trailing-lf", "non-ascii"])
async def test_an_api_key_that_is_not_one_header_value_is_refused_before_anything_is_sent(key: str) -> None:
    async with serving(answer_each) as server:
        with pytest.raises(ConfigError, match="cannot go into an HTTP header"):
            async with LLMClient(server.url, api_key=key) as llm:
                await llm.chat(REQUEST)
    assert server.requests == []


# --------------------------------------------------------------------------- cancellation and the connection limit


async def test_a_call_cancelled_mid_stream_closes_its_connection() -> None:
    """The server sees the connection end (so it stops generating); the next call gets a new one."""
    ended = anyio.Event()

    async def endless(peer: Peer) -> None:
        await peer.request()
        await peer.send(STREAM_HEAD)
        with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
            while True:
                await peer.send(chunk(frame("x")))
                await anyio.lowlevel.checkpoint()
        ended.set()

    async with serving(first_connection(endless)) as server, LLMClient(server.url) as llm:
        with anyio.CancelScope() as scope:

            async def cancel(_: object) -> None:
                scope.cancel()

            await llm.chat(REQUEST, on_progress=cancel)
        assert scope.cancelled_caught
        with anyio.fail_after(10):
            await ended.wait()
        assert (await llm.chat(REQUEST)).content == "hi"
    assert len(server.peers) == 2


async def test_a_cancelled_call_frees_its_connection_slot() -> None:
    """With one connection allowed, a call cancelled before any answer leaves it to the next call."""
    got_it = anyio.Event()
    saw_close = anyio.Event()

    async def silent_first(peer: Peer) -> None:
        await peer.request()
        got_it.set()
        await peer.line()  # returns at EOF: the client gave up
        saw_close.set()

    async with serving(first_connection(silent_first)) as server, LLMClient(server.url, max_connections=1) as llm:
        async with anyio.create_task_group() as tg:

            async def first() -> None:
                await llm.chat(REQUEST)

            tg.start_soon(first)
            with anyio.fail_after(10):
                await got_it.wait()
            tg.cancel_scope.cancel()
        with anyio.fail_after(10):
            await saw_close.wait()
            assert (await llm.chat(REQUEST)).content == "hi"


# --------------------------------------------------------------------------- proxies


async def test_a_remote_server_is_reached_through_the_proxy_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with serving(answer_each) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with LLMClient("http://llm.invalid:1234") as llm:
            assert (await llm.chat(REQUEST)).content == "hi"
    assert proxy.requests[0][0] == b"POST http://llm.invalid:1234/v1/chat/completions HTTP/1.1"


async def test_no_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    async with serving(answer_each) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "llm.invalid")
        async with LLMClient("http://llm.invalid:1234") as llm:
            with pytest.raises(LLMConnectionError):  # tried directly: the name does not resolve
                await llm.chat(REQUEST)
    assert proxy.requests == []


async def test_a_loopback_server_is_reached_directly_whatever_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A corporate proxy cannot reach the user's own localhost, where LM Studio almost always is."""
    async with serving(answer_each) as proxy, serving(answer_each) as server:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        async with LLMClient(server.url) as llm:
            assert (await llm.chat(REQUEST)).content == "hi"
    assert proxy.requests == []
    assert server.requests[0][0] == b"POST /v1/chat/completions HTTP/1.1"


# --------------------------------------------------------------------------- TLS


def tls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_https_trusts_the_ca_in_ssl_cert_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    async with serving(answer_each, tls=tls_server_context(ca)) as server, LLMClient(server.url) as llm:
        assert (await llm.chat(REQUEST)).content == "hi"
        assert (await llm.chat(REQUEST)).content == "hi"
    assert len(server.peers) == 1


def test_only_an_https_server_has_roots_loaded_and_both_contexts_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    """An http:// server never speaks TLS, so no roots are loaded for it; its context still verifies, so TLS
    met anyway would fail, never pass unchecked."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    plain, tls = tls_context("http://127.0.0.1:1234"), tls_context("https://127.0.0.1:1234")
    assert plain.cert_store_stats()["x509_ca"] == 0
    assert tls.cert_store_stats()["x509_ca"] > 0
    assert all(c.verify_mode == ssl.CERT_REQUIRED and c.check_hostname for c in (plain, tls))


async def test_https_with_an_untrusted_certificate_says_how_to_trust_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    async with serving(answer_each, tls=tls_server_context(trustme.CA())) as server, LLMClient(server.url) as llm:
        with pytest.raises(LLMConnectionError) as caught:
            await llm.chat(REQUEST)
    assert not caught.value.retryable  # trying again cannot make the certificate trusted
    assert "SSL_CERT_FILE" in caught.value.message
    assert server.requests == []
