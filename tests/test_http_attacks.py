"""``serve --http`` from the attacker's side (issue 20, item 6): no token, a wrong one, the token where the bridge
does not look for it, a foreign Origin, a DNS-rebinding Host, a non-loopback address. Every refusal keeps the
token to itself and starts no work: the attacks send tools/call on a live session, and the simulator behind the
bridge sees no request until the rightful client's call.

tests/test_http.py has the working paths (both protocol revisions, the token file).
"""

from __future__ import annotations

import hmac
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from bridge.frontend import _http
from bridge.http_token import http_token
from bridge.sim.testing import SimProcess
from tests._stdio import INITIALIZE, clean_env, serve_argv, sim_stats, tool_call
from tests._util import free_port
from tests.test_frontend_stdio import QWEN, sim  # noqa: F401  (sim: the simulator fixture)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """asyncio only: ``serve --http`` runs on asyncio (uvicorn does), so a trio twin would test only the
    test's own HTTP client."""
    return "asyncio"


JSON_RPC = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
CALL = tool_call(2, "chat_completion", {"prompt": "hi", "model": QWEN})


@dataclass
class Served:
    """A running ``serve --http`` at DEBUG: its URL, the user's token, and everything it wrote to stderr."""

    url: str
    token: str
    stderr: bytearray = field(default_factory=bytearray)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    @property
    def auth(self) -> dict[str, str]:
        return {**JSON_RPC, "authorization": f"Bearer {self.token}"}


@asynccontextmanager
async def serving(sim_url: str, tmp_path: Path, *extra: str, listen: str = "127.0.0.1:0") -> AsyncIterator[Served]:
    """``serve --http`` at DEBUG, its stderr read all along (a full pipe would stall it); SIGTERM at the end."""
    env = {**clean_env(tmp_path), "LMSTUDIO_BRIDGE_LOG_LEVEL": "DEBUG"}
    command = [sys.executable, *serve_argv("--http", listen, "--base-url", sim_url, "--no-child-servers")]
    process = await anyio.open_process([*command, *extra], env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    served = Served(url="", token=http_token(env))
    listening = anyio.Event()

    async def read_stderr() -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:
            served.stderr += chunk
            if not listening.is_set() and (found := re.search(rb"serving MCP at (\S+)", served.stderr)):
                served.url = found.group(1).decode()
                listening.set()
        listening.set()  # exited: the check below says so

    async with process, anyio.create_task_group() as tg:
        tg.start_soon(read_stderr)
        with anyio.fail_after(60):
            await listening.wait()
        assert served.url, f"serve --http did not start: {served.stderr.decode(errors='replace')}"
        try:
            yield served
        finally:
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(15):
                assert await process.wait() == 0


async def open_session(client: httpx.AsyncClient, served: Served) -> dict[str, str]:
    """The rightful client's session: what an attacker would replay. Returns the headers that go with it."""
    hello = await client.post(served.url, json=INITIALIZE, headers=served.auth)
    assert hello.status_code == 200, hello.text
    session = {"mcp-session-id": hello.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
    done = await client.post(
        served.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers={**served.auth, **session}
    )
    assert done.status_code == 202, done.text
    return session


def assert_keeps_the_token(served: Served, response: httpx.Response) -> None:
    seen = response.text + "".join(f"{k}: {v}\n" for k, v in response.headers.items())
    assert served.token not in seen


async def generations(sim: SimProcess) -> int:  # noqa: F811
    requests: int = (await sim_stats(sim))["total"]["requests"]
    return requests


# --------------------------------------------------------------------------- the token


async def test_without_the_right_token_nothing_gets_through_and_nothing_starts(
    sim: SimProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with serving(sim.url, tmp_path) as served, httpx.AsyncClient(timeout=30) as client:
        session = await open_session(client, served)
        token = served.token
        wrong_authorizations = [
            None,  # none at all
            "Bearer nope",
            "Bearer",
            f"Bearer {token[:-1]}",  # one character short
            f"Bearer {token}x",  # one too many
            f"Bearer {token[:-1]}{'A' if token[-1] != 'A' else 'B'}",  # the last one wrong
            token,  # no scheme
            f"Basic {token}",
            f"Bearer {token.upper() if token.upper() != token else token.lower()}",
        ]
        refused: list[httpx.Response] = []
        for authorization in wrong_authorizations:
            headers = {**JSON_RPC, **session}
            if authorization is not None:
                headers["authorization"] = authorization
            refused.append(await client.post(served.url, json=CALL, headers=headers))
        # The token anywhere but the Authorization header.
        for name in ("token", "access_token", "auth", "bearer"):
            refused.append(
                await client.post(served.url, params={name: token}, json=CALL, headers={**JSON_RPC, **session})
            )
        refused.append(
            await client.post(served.url, json=CALL, headers={**JSON_RPC, **session, "cookie": f"token={token}"})
        )
        refused.append(await client.post(served.url, json=CALL, headers={**JSON_RPC, **session, "x-api-key": token}))
        # Every method, every path.
        for method in ("GET", "DELETE", "PUT", "OPTIONS"):
            refused.append(await client.request(method, served.url, headers={**JSON_RPC, **session}))
        root = served.url.removesuffix("/mcp")
        for path in ("/", "/mcp/", "/docs", "/openapi.json", "/.well-known/oauth-protected-resource"):
            refused.append(await client.get(root + path))
        assert await generations(sim) == 0
        rightful = await client.post(served.url, json=CALL, headers={**served.auth, **session})
        assert rightful.status_code == 200, rightful.text
        assert "Reply to: hi" in rightful.text
        assert await generations(sim) == 1  # the same call with the token does reach the model
    for response in refused:
        assert response.status_code == 401, (response.request.method, response.request.url, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "lmstudio-bridge token" in response.json()["message"]
        assert_keeps_the_token(served, response)
    assert token.encode() not in served.stderr
    assert b"DEBUG" in served.stderr  # the level took: a leak would have had its chance


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request's header goes through ``hmac.compare_digest``, the right one and the wrong ones alike."""
    compared: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(_http.hmac, "compare_digest", spy)
    statuses = [
        run_asgi(_http.BearerToken(ok_app, "s3cret"), http_scope({b"authorization": value}))
        for value in (b"Bearer s3cret", b"Bearer s3cre", b"Bearer s3cret0")
    ]
    assert statuses == [200, 401, 401]
    assert compared == [(v, b"Bearer s3cret") for v in (b"Bearer s3cret", b"Bearer s3cre", b"Bearer s3cret0")]


def test_a_websocket_without_the_token_is_closed_before_the_app_sees_it() -> None:
    """uvicorn serves WebSockets once a WebSocket library is installed: the upgrade needs the token as well."""
    assert run_asgi(_http.BearerToken(ok_app, "s3cret"), {**http_scope({}), "type": "websocket"}) == "closed"
    allowed = {**http_scope({b"authorization": b"Bearer s3cret"}), "type": "websocket"}
    assert run_asgi(_http.BearerToken(ok_app, "s3cret"), allowed) == 200


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def http_scope(headers: dict[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/mcp", "headers": list(headers.items())}


def run_asgi(app: Any, scope: dict[str, Any]) -> int | str:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    if sent and sent[0]["type"] == "websocket.close":
        return "closed"
    status: int = sent[0]["status"]
    return status


# --------------------------------------------------------------------------- Origin and Host


async def test_a_foreign_origin_or_a_rebound_host_is_refused_even_with_the_token(
    sim: SimProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    """DNS rebinding: a page of another origin, or one that reaches loopback through its own name, gets nowhere,
    even if it had the token (a browser never sends it, but the bridge does not count on that)."""
    async with serving(sim.url, tmp_path) as served, httpx.AsyncClient(timeout=30) as client:
        session = await open_session(client, served)
        port, other = served.port, free_port()
        headers = {**served.auth, **session}
        origins = [
            "http://evil.example",
            f"http://evil.example:{port}",
            f"http://localhost.evil.example:{port}",
            f"http://127.0.0.1:{other}",  # another local server's page
            "null",  # a sandboxed frame, a file:// page
        ]
        hosts = [
            f"evil.example:{port}",
            f"localhost.evil.example:{port}",
            f"127.0.0.1.nip.io:{port}",
            f"127.0.0.1:{other}",
            "127.0.0.1",
            "evil.example",
        ]
        by_origin = [await client.post(served.url, json=CALL, headers={**headers, "origin": o}) for o in origins]
        by_host = [await client.post(served.url, json=CALL, headers={**headers, "host": h}) for h in hosts]
        opened = [
            await client.post(served.url, json=INITIALIZE, headers={**served.auth, "host": f"evil.example:{port}"}),
            await client.post(served.url, json=INITIALIZE, headers={**served.auth, "origin": "http://evil.example"}),
            await client.get(served.url, headers={**headers, "host": f"evil.example:{port}"}),
        ]
        assert await generations(sim) == 0
        own = await client.post(served.url, json=CALL, headers={**headers, "origin": f"http://localhost:{port}"})
        assert own.status_code == 200, own.text
        assert await generations(sim) == 1
    assert [r.status_code for r in by_origin] == [403] * len(origins)
    assert [r.status_code for r in by_host] == [421] * len(hosts)
    assert [r.status_code for r in opened] == [421, 403, 421]
    assert "mcp-session-id" not in opened[0].headers
    for response in by_origin + by_host + opened:
        assert_keeps_the_token(served, response)
    assert served.token.encode() not in served.stderr


# --------------------------------------------------------------------------- where it listens


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "example.com:0", "127.0.0.1.nip.io:0"])
async def test_an_address_beyond_loopback_is_refused_unless_asked(
    sim: SimProcess,  # noqa: F811
    tmp_path: Path,
    listen: str,
) -> None:
    command = [sys.executable, *serve_argv("--http", listen, "--base-url", sim.url)]
    with anyio.fail_after(60):
        done = await anyio.run_process(command, env=clean_env(tmp_path), check=False)
    assert done.returncode == 2
    assert b"--allow-remote" in done.stderr
    assert b"serving MCP" not in done.stderr


async def test_asked_to_listen_beyond_loopback_it_still_wants_the_token(
    sim: SimProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with (
        serving(sim.url, tmp_path, "--allow-remote", listen="0.0.0.0:0") as served,
        httpx.AsyncClient(timeout=30) as client,
    ):
        url = f"http://127.0.0.1:{served.port}/mcp"
        missing = await client.post(url, json=CALL, headers=JSON_RPC)
        wrong = await client.post(url, json=CALL, headers={**JSON_RPC, "authorization": "Bearer nope"})
        assert await generations(sim) == 0
    assert (missing.status_code, wrong.status_code) == (401, 401)
