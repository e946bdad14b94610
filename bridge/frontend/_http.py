"""Serving MCP over Streamable HTTP: the SDK's app at ``/mcp``, behind a bearer token, on loopback unless asked.

The SDK's app serves both protocol revisions it knows (2025-11-25 with
sessions, 2026-07-28 without) and checks Host and Origin against the address
served (DNS rebinding: a web page cannot reach the bridge through a name that
resolves to loopback). In front of it a bearer token is always required: the
SDK's own auth is an OAuth resource server, which a local tool with one user
does not need, so a small ASGI check compares the header with the user's token.

uvicorn serves the app and runs on asyncio only; its own signal handling is
turned off, because the bridge's stop sequence (children first) owns the signals.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any, Final

import anyio
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings

from bridge.children.process import ProcessGroups
from bridge.errors import ConfigError
from bridge.frontend._format import DEFAULT_OUTPUT_LIMIT
from bridge.frontend._server import create_server
from bridge.frontend._slot import BridgeSlot
from bridge.frontend._stdio import stop_signal_receiver
from bridge.settings import BridgeSettings

__all__ = ["HTTP_PATH", "parse_listen_address", "serve_http"]

log = logging.getLogger("bridge.frontend")

HTTP_PATH: Final = "/mcp"
_LOOPBACK_NAMES: Final = ("localhost",)


def parse_listen_address(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[V6]:PORT``; the host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"--http wants [HOST:]PORT, e.g. 8765 or 127.0.0.1:8765, not {text!r}") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"--http port {number} is not a TCP port (0-65535)")
    return host, number


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BearerToken:
    """Refuse every HTTP request without ``Authorization: Bearer <token>`` (401), before the app sees it.

    A WebSocket upgrade (uvicorn serves them once a WebSocket library is installed) needs the
    token too: without it the socket is closed before it opens (uvicorn answers 403).
    """

    def __init__(self, app: Any, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if hmac.compare_digest(given, self._expected):
                await self._app(scope, receive, send)
            elif scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})  # policy violation
            else:
                body = json.dumps(
                    {
                        "error": "unauthorized",
                        "message": "this bridge needs 'Authorization: Bearer <token>'; "
                        "`lmstudio-bridge token` prints the token",
                    }
                ).encode()
                headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body})
            return
        await self._app(scope, receive, send)  # lifespan


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the bridge's own signal handling stops it (children first)


def _security(host: str, port: int) -> TransportSecuritySettings:
    names = {host, "127.0.0.1", "localhost", "[::1]"} if is_loopback(host) else {host}
    shown = {f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names}
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=sorted(f"{n}:{port}" for n in shown),
        allowed_origins=sorted(f"{scheme}://{n}:{port}" for n in shown for scheme in ("http", "https")),
    )


async def serve_http(
    settings: BridgeSettings,
    *,
    host: str,
    port: int,
    token: str,
    allow_remote: bool = False,
    child_servers: bool = True,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Run the bridge and serve it over HTTP on ``host:port`` until SIGTERM, SIGINT or SIGHUP.

    Raises:
        ConfigError: ``host`` is not a loopback address and ``allow_remote`` is off, or the
            port cannot be bound.
    """
    if not is_loopback(host) and not allow_remote:
        raise ConfigError(
            f"--http {host}:{port} would serve the bridge beyond this machine; pass --allow-remote if you mean it "
            "(the token is then all that guards your local models and child servers)"
        )
    try:
        listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    bound = listener.getsockname()[1]
    slot = BridgeSlot()
    server = create_server(slot, settings=settings, output_limit=output_limit)
    app = server.streamable_http_app(streamable_http_path=HTTP_PATH, transport_security=_security(host, bound))
    web = _Server(uvicorn.Config(BearerToken(app, token), lifespan="on", log_level="warning", access_log=False))
    groups = ProcessGroups()
    from bridge.app import open_bridge

    try:
        with stop_signal_receiver(True) as signals:
            async with open_bridge(settings, child_servers=child_servers, groups=groups) as bridge:
                slot.set(bridge)
                async with anyio.create_task_group() as tg:

                    async def stop_on_signal() -> None:
                        assert signals is not None  # asked for: the receiver is always open here
                        async for signum in signals:
                            log.info("received %s: shutting down", signal.Signals(signum).name)
                            web.should_exit = True

                    tg.start_soon(stop_on_signal)
                    url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}{HTTP_PATH}"
                    log.info("serving MCP over HTTP at %s", url)
                    if on_listening is not None:
                        on_listening(url)
                    await web.serve(sockets=[listener])
                    tg.cancel_scope.cancel()
    finally:
        listener.close()
        with anyio.CancelScope(shield=True):
            groups.close()
            await groups.stop_all(term_grace=0.5, kill_wait=0.2)
