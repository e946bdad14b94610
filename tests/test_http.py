"""``serve --http`` as a real process: the SDK's Streamable HTTP app behind the user's bearer token, both protocol
revisions, Host and Origin checked, loopback only unless asked; against the simulator in another process."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bridge.errors import ConfigError
from bridge.frontend._http import parse_listen_address
from bridge.http_token import http_token
from bridge.sim.testing import SimProcess
from tests._stdio import INITIALIZE, clean_env, data, serve_argv
from tests.test_frontend_stdio import sim  # noqa: F401  (sim: the simulator fixture)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """asyncio only: ``serve --http`` runs on asyncio (uvicorn does), so a trio twin would test only the
    test's own HTTP client."""
    return "asyncio"


JSON_RPC_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


class HttpBridge:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@asynccontextmanager
async def http_bridge(sim_url: str, tmp_path: Path, *extra: str) -> AsyncIterator[HttpBridge]:
    env = clean_env(tmp_path)
    command = [sys.executable, *serve_argv("--http", "127.0.0.1:0", "--base-url", sim_url, *extra)]
    process = await anyio.open_process(command, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    async with process:
        assert process.stderr is not None
        seen = b""
        with anyio.fail_after(60):
            while (found := re.search(rb"serving MCP at (\S+)", seen)) is None:
                try:
                    seen += await process.stderr.receive()
                except anyio.EndOfStream:
                    raise AssertionError(f"serve --http exited: {seen.decode(errors='replace')}") from None
        try:
            yield HttpBridge(found.group(1).decode(), http_token(env))
        finally:
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(15):
                assert await process.wait() == 0


@pytest.fixture
async def bridge_http(sim: SimProcess, tmp_path: Path) -> AsyncIterator[HttpBridge]:  # noqa: F811
    async with http_bridge(sim.url, tmp_path, "--no-child-servers") as served:
        yield served


async def test_a_request_without_the_token_is_refused(bridge_http: HttpBridge) -> None:
    async with httpx.AsyncClient() as client:
        missing = await client.post(bridge_http.url, json=INITIALIZE, headers=JSON_RPC_HEADERS)
        wrong = await client.post(
            bridge_http.url, json=INITIALIZE, headers={**JSON_RPC_HEADERS, "authorization": "Bearer nope"}
        )
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert "lmstudio-bridge token" in missing.json()["message"]


async def test_a_foreign_origin_or_host_is_refused(bridge_http: HttpBridge) -> None:
    """DNS rebinding: a page on another origin, or a name that only resolves to loopback, gets nowhere."""
    headers = {**JSON_RPC_HEADERS, **bridge_http.auth}
    async with httpx.AsyncClient() as client:
        origin = await client.post(bridge_http.url, json=INITIALIZE, headers={**headers, "origin": "http://evil.test"})
        host = await client.post(bridge_http.url, json=INITIALIZE, headers={**headers, "host": "evil.test:80"})
        fine = await client.post(bridge_http.url, json=INITIALIZE, headers=headers)
    assert origin.status_code == 403
    assert host.status_code == 421
    assert fine.status_code == 200


# On trio the SDK's legacy HTTP client (mcp 2.3, httpx2) leaves its server-sent-events GET stream to the
# garbage collector when the session closes: a ResourceWarning of the client library, not of the bridge.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(("mode", "revision"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
async def test_both_protocol_revisions_complete_a_tool_call(bridge_http: HttpBridge, mode: str, revision: str) -> None:
    http = httpx2.AsyncClient(headers=bridge_http.auth, timeout=60)
    async with http, Client(streamable_http_client(bridge_http.url, http_client=http), mode=mode) as client:  # type: ignore[arg-type]
        assert client.protocol_version == revision
        result = await client.call_tool("chat_completion", {"prompt": "hi", "model": "qwen/qwen3-coder-30b"})
        assert not result.is_error
        assert "Reply to: hi" in result.content[0].text  # type: ignore[union-attr]
        status = data(await client.call_tool("bridge_status", {}))
        assert status["models"][0]["model"] == "qwen/qwen3-coder-30b"


async def test_a_non_loopback_address_is_refused_unless_asked(sim: SimProcess, tmp_path: Path) -> None:  # noqa: F811
    command = [sys.executable, *serve_argv("--http", "0.0.0.0:0", "--base-url", sim.url)]
    done = await anyio.run_process(command, env=clean_env(tmp_path), check=False)
    assert done.returncode == 2
    assert b"--allow-remote" in done.stderr


def test_listen_addresses_are_read_as_users_write_them() -> None:
    assert parse_listen_address("8765") == ("127.0.0.1", 8765)
    assert parse_listen_address("localhost:1") == ("localhost", 1)
    assert parse_listen_address("[::1]:9") == ("::1", 9)


def test_the_token_is_made_once_and_kept_private(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    first, second = http_token(env), http_token(env)
    assert first == second
    assert len(first) >= 32
    path = tmp_path / ".config" / "lmstudio-bridge" / "http-token"
    assert (path.stat().st_mode & 0o777) == 0o600
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        http_token(env)
