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

import httpx

__all__ = ["LOOPBACK_HOSTS", "http_client"]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")

KEEPALIVE_EXPIRY_S = 2.0
"""An idle connection is dropped by the client before the server drops it. Node (LM Studio),
uvicorn (llama-cpp-python, LiteLLM, vLLM) and cpp-httplib (llama.cpp) all close idle
connections after 5 s, httpx's own default: at equal timeouts a request now and then goes out
on a connection the server is closing and fails with "disconnected without a response"
(seen on the real llama.cpp server, about 1 request in 250)."""


def http_client(*, max_connections: int, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A pooled client with no client-wide timeouts: each request carries its own (see ``_budgets``)."""
    if transport is not None:  # given by the caller (tests pass httpx.MockTransport): used for everything
        return httpx.AsyncClient(transport=transport, timeout=None, trust_env=False)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=KEEPALIVE_EXPIRY_S
    )
    direct = httpx.AsyncHTTPTransport(limits=limits)
    return httpx.AsyncClient(
        limits=limits,
        timeout=None,
        trust_env=True,
        mounts={f"all://{host}": direct for host in LOOPBACK_HOSTS},
    )
