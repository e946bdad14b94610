"""The HTTP client under :class:`~bridge.llm.LLMClient`: httpx's own transport, set up once here.

What it takes from the environment is what httpx takes: ``HTTP_PROXY`` /
``HTTPS_PROXY`` / ``ALL_PROXY`` with ``NO_PROXY``, and ``SSL_CERT_FILE`` /
``SSL_CERT_DIR`` (else certifi's roots). One exception: loopback servers are
always reached directly, since a corporate proxy in the environment cannot
reach the user's own ``localhost`` and LM Studio almost always lives there.
A request is sent once: httpx never re-sends a request that may have reached the
server, so a generation is never started twice behind the caller's back.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx

__all__ = ["LOOPBACK_HOSTS", "RequestBody", "http_client", "tls_context"]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")

KEEPALIVE_EXPIRY_S = 2.0
"""An idle connection is dropped by the client before the server drops it. Node (LM Studio),
uvicorn (llama-cpp-python, LiteLLM, vLLM) and cpp-httplib (llama.cpp) all close idle
connections after 5 s, httpx's own default: at equal timeouts a request now and then goes out
on a connection the server is closing and fails with "disconnected without a response"
(seen on the real llama.cpp server, about 1 request in 250)."""


def tls_context(base_url: str) -> ssl.SSLContext:
    """How the client checks the server's certificate: httpx's own context (certifi's roots, or
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``) for an ``https://`` server, built once for every transport.

    An ``http://`` server never speaks TLS to the client, so its context verifies as strictly but
    holds no roots: TLS it met anyway would fail, never pass unchecked. Loading the roots costs
    ~20 ms of CPU per transport, which every bridge start and every session paid twice for nothing
    (most servers are plain http on loopback). A proxy's own TLS is httpcore's, with its own roots.
    """
    if httpx.URL(base_url).scheme == "https":
        return httpx.create_ssl_context(trust_env=True)
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def http_client(
    *, max_connections: int, tls: ssl.SSLContext, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """A pooled client with no client-wide timeouts: each request carries its own (see ``_budgets``)."""
    if transport is not None:  # given by the caller (tests pass httpx.MockTransport): used for everything
        return httpx.AsyncClient(transport=transport, timeout=None, trust_env=False)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=KEEPALIVE_EXPIRY_S
    )
    direct = httpx.AsyncHTTPTransport(limits=limits, verify=tls)
    return httpx.AsyncClient(
        limits=limits,
        timeout=None,
        trust_env=True,
        verify=tls,
        mounts={f"all://{host}": direct for host in LOOPBACK_HOSTS},
    )


class RequestBody(httpx.AsyncByteStream):
    """A request body sent as one chunk, iterated by an object rather than an async generator.

    httpx's own body stream (``content=bytes``) is an async generator. When a write
    fails mid-body (the server died), httpcore leaves it suspended, and trio reports
    every such generator when it is collected (encode/httpx#3686), in whatever code
    runs then. A plain iterator has nothing to finalise. Put it in place of the
    stream of a request built with ``content=`` (which sets ``Host`` and
    ``Content-Length``); ``Request(stream=...)`` would set neither.
    """

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Once(self.body)


class _Once:
    """Yields one chunk, then stops."""

    def __init__(self, chunk: bytes) -> None:
        self._chunk: bytes | None = chunk

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> bytes:
        chunk, self._chunk = self._chunk, None
        if chunk is None:
            raise StopAsyncIteration
        return chunk
