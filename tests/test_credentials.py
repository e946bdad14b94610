"""Credentials: ``user:pass@`` in a server URL reaches the server as Basic auth by every way of configuring the
bridge, and neither it nor the API key ever shows: not in server names, results, errors or logs (issue 20, item 5).

The simulator is told to demand the credentials (``basic_auth``, ``api_token``), so a call that succeeds is a
call whose ``Authorization`` header arrived; what the bridge shows and logs is searched for the secrets.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import anyio
import httpx
import msgspec
import pytest
from mcp import Client, ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult

from bridge.app import open_bridge
from bridge.cli import build_parser, flags_from_args, main
from bridge.config import CliFlags, load_config
from bridge.errors import ConfigError
from bridge.server_address import normalize_base_url, redact_url
from bridge.settings import BridgeSettings, ServerSettings, server_name
from bridge.sim import CallTools, Say, SimConfig, SimModel, SimServer, ToolCallSpec
from bridge.sim.testing import sim_process
from tests._stdio import clean_env
from tests._util import CHILDREN, free_port, mcp_server

QWEN = "qwen/qwen3-coder-30b"
GEMMA = "google/gemma-3-12b"
EMBED = "text-embedding-nomic"
USER = "bridge"
PASSWORD = "cAnAry-pw:7f@9/z"  # needs percent-encoding in a URL: ':', '@' and '/'
USERINFO = f"{USER}:{quote(PASSWORD, safe='')}"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
CANARY_KEY = "sk-cAnAry-key-5d41402abc4b2a76"
SECRETS = ("cAnAry", quote(PASSWORD, safe=""), BASIC, CANARY_KEY)
"""Nothing the bridge shows or logs may hold one of these ("cAnAry" catches a piece of either secret)."""


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} found in {where}: {text[max(0, text.find(secret) - 200) :][:400]!r}"


def shown(result: CallToolResult) -> str:
    """Everything a client sees of a tool result."""
    return json.dumps(result.model_dump(mode="json"), ensure_ascii=False)


def sim_config(**overrides: Any) -> SimConfig:
    models = (
        SimModel(id=QWEN, loaded=True, reply_tokens=6),
        SimModel(id=GEMMA, loaded=False, reply_tokens=6),
        SimModel(id=EMBED, type="embeddings", loaded=True, embedding_dim=8),
    )
    return SimConfig(models=models, auto_evict=False, **overrides)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record of every logger (the bridge's, httpx's, httpcore's, the SDK's) at DEBUG."""
    with caplog.at_level(logging.DEBUG):
        yield caplog


# --------------------------------------------------------------------------- the address, alone


def test_the_configuration_keeps_credentials_for_the_client_and_names_the_server_without_them() -> None:
    config = load_config(CliFlags(base_url=f"http://{USERINFO}@gpu.lan:1234/v1"), environ={})
    (server,) = config.settings.servers
    assert server.url == f"http://{USERINFO}@gpu.lan:1234"
    assert server.name == "gpu.lan:1234"
    assert normalize_base_url(server.url) == "http://gpu.lan:1234"
    assert server_name(ServerSettings(url=f"http://{USERINFO}@gpu.lan:1234")) == "gpu.lan:1234"


@pytest.mark.parametrize(
    "url",
    [
        f"http://{USERINFO}@gpu.lan:99999",  # port out of range
        f"ftp://{USERINFO}@gpu.lan:1234",  # not http
        f"http://{USER}:{PASSWORD}@gpu.lan:1234",  # unescaped: urllib reads a port out of the password
        f"{USER}:{PASSWORD}@gpu.lan:x",
    ],
)
def test_a_bad_url_is_refused_without_showing_its_credentials(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(CliFlags(base_url=url), environ={})
    assert "***@gpu.lan" in refused.value.message
    assert_no_secret("the configuration error", str(refused.value) + repr(refused.value.details))
    assert main(["check", "--base-url", url]) == 2
    out = capsys.readouterr()
    assert "***@gpu.lan" in out.err
    assert_no_secret("the command's output", out.out + out.err)


def test_redact_url() -> None:
    assert redact_url("http://u:p@h:1/v1") == "http://***@h:1/v1"
    assert redact_url("u:p@h:1") == "***@h:1"
    assert redact_url("http://u:p/a@b@h:1") == "http://***@h:1"
    assert redact_url("http://h:1/v1") == "http://h:1/v1"


# --------------------------------------------------------------------------- every way of configuring


def configured(how: str, url: str, tmp_path: Path) -> tuple[CliFlags, dict[str, str]]:
    """The flags and environment that configure the one server ``url`` the way ``how`` says."""
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}
    hostport = url.removeprefix("http://")
    host, _, port = hostport.rpartition(":")
    toml = tmp_path / "bridge.toml"
    if how == "toml [[servers]]":
        toml.write_text(f'[[servers]]\nurl = "{url}"\n')
        return flags("--config", str(toml)), env
    if how == "toml servers list":
        toml.write_text(f'servers = ["{url}"]\n')
        return CliFlags(), {**env, "LMSTUDIO_BRIDGE_CONFIG": str(toml)}
    if how == "--server":
        return flags("--server", url), env
    if how == "--base-url":
        return flags("--base-url", f"{url}/v1"), env
    if how == "--host/--port":
        return flags("--host", host, "--port", port), env
    if how == "LMSTUDIO_BASE_URL":
        return CliFlags(), {**env, "LMSTUDIO_BASE_URL": url}
    if how == "LMSTUDIO_BRIDGE_SERVERS":
        return CliFlags(), {**env, "LMSTUDIO_BRIDGE_SERVERS": f"{url}, http://127.0.0.1:{free_port()}"}
    if how == "LMSTUDIO_HOST/LMSTUDIO_PORT":
        return CliFlags(), {**env, "LMSTUDIO_HOST": host, "LMSTUDIO_PORT": port}
    raise AssertionError(how)


def flags(*argv: str) -> CliFlags:
    return flags_from_args(build_parser().parse_args(["serve", *argv]))


WAYS = [
    "toml [[servers]]",
    "toml servers list",
    "--server",
    "--base-url",
    "--host/--port",
    "LMSTUDIO_BASE_URL",
    "LMSTUDIO_BRIDGE_SERVERS",
    "LMSTUDIO_HOST/LMSTUDIO_PORT",
]


@asynccontextmanager
async def bridge_client(settings: BridgeSettings) -> AsyncIterator[Client]:
    async with (
        open_bridge(settings, child_servers=False) as bridge,
        Client(mcp_server(bridge), mode="legacy") as client,
    ):
        yield client


@pytest.mark.parametrize("how", WAYS)
async def test_credentials_in_the_url_reach_the_server_by_every_way_of_configuring(
    how: str, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    """A proxy that wants Basic auth answers; the server is named ``host:port``; no secret shows or is logged."""
    async with SimServer(sim_config(basic_auth=f"{USER}:{PASSWORD}")) as sim:
        hostport = sim.url.removeprefix("http://")
        cli_flags, env = configured(how, f"http://{USERINFO}@{hostport}", tmp_path)
        settings = load_config(cli_flags, environ=env).settings
        settings = msgspec.structs.replace(settings, listing_timeout=5.0)
        with anyio.fail_after(60):
            async with bridge_client(settings) as client:
                chat = await client.call_tool("chat_completion", {"prompt": "hi", "model": QWEN})
                models = await client.call_tool("list_models", {})
                results = [chat, models] + [await client.call_tool(t, {}) for t in ("bridge_status", "health_check")]
        assert sim.stats.total.requests == 1
    assert not chat.is_error, shown(chat)
    assert "Reply to: hi" in shown(chat)
    listed = models.structured_content
    assert listed is not None
    assert {m["server"] for m in listed["models"] if m["id"] == QWEN} == {hostport}
    for result in results:
        assert_no_secret("a tool result", shown(result))
    assert_no_secret("the logs at DEBUG", debug_logs.text)


async def test_the_urls_credentials_win_over_the_api_key_for_every_server(tmp_path: Path) -> None:
    """``LMSTUDIO_API_KEY`` is for servers that name no credentials of their own; a URL with them names its own."""
    async with SimServer(sim_config(basic_auth=f"{USER}:{PASSWORD}")) as sim:
        env = {"HOME": str(tmp_path), "LMSTUDIO_API_KEY": CANARY_KEY, "LMSTUDIO_BASE_URL": url_with_userinfo(sim.url)}
        settings = load_config(environ=env).settings
        assert settings.servers[0].api_key is None
        with anyio.fail_after(60):
            async with bridge_client(settings) as client:
                chat = await client.call_tool("chat_completion", {"prompt": "hi", "model": QWEN})
    assert not chat.is_error, shown(chat)


def url_with_userinfo(url: str, userinfo: str = USERINFO) -> str:
    return url.replace("://", f"://{userinfo}@", 1)


# --------------------------------------------------------------------------- errors


async def test_a_server_that_is_down_is_reported_without_its_credentials(debug_logs: pytest.LogCaptureFixture) -> None:
    url = url_with_userinfo(f"http://127.0.0.1:{free_port()}")
    settings = load_config(CliFlags(base_url=url), environ={}).settings
    with anyio.fail_after(60):
        async with bridge_client(settings) as client:
            chat = await client.call_tool("chat_completion", {"prompt": "hi"})
            results = [chat] + [await client.call_tool(t, {}) for t in ("health_check", "bridge_status", "list_models")]
    assert chat.is_error
    assert chat.structured_content is not None
    assert chat.structured_content["code"] == "backend_unavailable"
    assert "127.0.0.1" in shown(chat)
    for result in results:
        assert_no_secret("a tool result", shown(result))
    assert_no_secret("the logs at DEBUG", debug_logs.text)


async def test_wrong_credentials_are_refused_without_showing_them(debug_logs: pytest.LogCaptureFixture) -> None:
    async with SimServer(sim_config(basic_auth="bridge:the-right-one")) as sim:
        settings = load_config(CliFlags(base_url=url_with_userinfo(sim.url)), environ={}).settings
        with anyio.fail_after(60):
            async with bridge_client(settings) as client:
                chat = await client.call_tool("chat_completion", {"prompt": "hi", "model": QWEN})
                health = await client.call_tool("health_check", {})
    assert chat.is_error
    assert "want of valid credentials" in shown(health)
    for result in (chat, health):
        assert_no_secret("a tool result", shown(result))
    assert_no_secret("the logs at DEBUG", debug_logs.text)


def test_check_shows_no_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    """``lmstudio-bridge check --json`` against a closed port with credentials in the URL."""
    url = url_with_userinfo(f"http://127.0.0.1:{free_port()}")
    assert main(["check", "--json", "--base-url", url, "--log-level", "DEBUG"]) == 1
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["servers"][0]["url"].startswith("http://127.0.0.1:")
    assert_no_secret("check's output", out.out + out.err)


# --------------------------------------------------------------------------- the canary: every tool at DEBUG

# Each tool the bridge lists, with calls that succeed (True) and calls that fail (False). A tool missing here fails
# the test: give a new tool its calls.
CALLS: dict[str, list[tuple[dict[str, Any], bool]]] = {
    "health_check": [({}, True)],
    "list_models": [({}, True), ({"model_type": "llm", "refresh": True}, True)],
    "get_current_model": [({}, True)],
    "chat_completion": [
        ({"prompt": "hi", "model": QWEN, "system_prompt": "Be brief."}, True),
        ({"prompt": "hi", "model": "no/such-model"}, False),
        ({"prompt": "hi", "max_tokens": "many"}, False),
        ({"prompt": "hi", "model": QWEN, "background": True}, True),
    ],
    "text_completion": [({"prompt": "Once", "model": QWEN}, True), ({"prompt": "Once", "model": "no/such"}, False)],
    "generate_embeddings": [({"text": ["a", "b"], "model": EMBED}, True), ({"text": "a", "model": "no/such"}, False)],
    "create_response": [({"input": "hi", "model": QWEN}, True), ({"input": 3}, False)],
    "batch_chat": [({"prompts": ["a", "b"], "models": [QWEN, GEMMA]}, True), ({"prompts": []}, False)],
    "load_model": [({"model": GEMMA}, True), ({"model": "no/such-model"}, False)],
    "unload_model": [({"model": GEMMA}, True), ({"model": "no/such-model"}, False)],
    "bridge_status": [({}, True)],
    "list_available_mcps": [({}, True)],
    "autonomous_with_mcp": [
        ({"mcp_name": "echo", "task": "Echo 'hi' with the echo tool.", "model": QWEN}, True),
        ({"mcp_name": "no-such-server", "task": "x"}, False),
    ],
    "autonomous_with_multiple_mcps": [({"mcp_names": ["echo"], "task": "Say hi.", "model": QWEN}, True)],
    "autonomous_discover_and_execute": [({"task": "Say hi.", "model": QWEN}, True), ({}, False)],
    "list_jobs": [({}, True)],
    "job_status": [({"job_id": "job_unknown"}, False)],
    "job_result": [({"job_id": "job_unknown", "wait_s": 0}, False)],
    "cancel_job": [({"job_id": "job_unknown"}, False)],
}


async def test_canary_credentials_appear_nowhere_when_every_tool_runs_at_debug(
    tmp_path: Path,
    anyio_backend_name: str,
    errlog: TextIO,
) -> None:
    """``serve`` with a canary API key and a canary password in a URL, at DEBUG, runs every tool it lists (calls
    that succeed and calls that fail, a child server's tool included): the canaries are in no result, no progress
    or log message sent to the client, no line of stderr and no file the bridge wrote."""
    home = tmp_path / "home"
    home.mkdir()
    sim_dir = tmp_path / "sim"
    sim_dir.mkdir()
    sim_json = msgspec.to_builtins(sim_config(api_token=CANARY_KEY, basic_auth=f"{USER}:{PASSWORD}"))
    (sim_dir / "sim.json").write_text(json.dumps(sim_json))
    mcp_json = home / "mcp.json"
    child = {"command": sys.executable, "args": [str(CHILDREN / "echo_server.py"), anyio_backend_name]}
    mcp_json.write_text(json.dumps({"mcpServers": {"echo": child}}))
    toml = home / "bridge.toml"
    toml.write_text(f'[children]\nconfig_paths = ["{mcp_json}"]\ndiscover = false\nwatch = false\n')
    async with sim_process(["--config", str(sim_dir / "sim.json")]) as sim:
        env = {
            **clean_env(home),
            # One server through the key, the same simulator under another name through the URL's credentials.
            "LMSTUDIO_BRIDGE_SERVERS": f"{sim.url},{url_with_userinfo(f'http://localhost:{sim.port}')}",
            "LMSTUDIO_API_KEY": CANARY_KEY,
            "LMSTUDIO_BRIDGE_LOG_LEVEL": "DEBUG",
        }
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "bridge", "serve", "--config", str(toml), "--backend", anyio_backend_name],
            env=env,
        )
        seen: list[str] = []

        async def on_log(params: Any) -> None:
            seen.append(json.dumps(params.model_dump(mode="json")))

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(message or "")

        with anyio.fail_after(240):
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write, read_timeout_seconds=60, logging_callback=on_log) as session,
            ):
                await session.initialize()
                listed = {t.name for t in (await session.list_tools()).tools}
                assert listed == set(CALLS), f"give every tool its calls: {sorted(listed ^ set(CALLS))}"
                health = await session.call_tool("health_check", {})
                assert health.structured_content is not None
                assert [s["reachable"] for s in health.structured_content["servers"]] == [True, True], shown(health)
                results: list[tuple[str, bool, CallToolResult]] = []
                for name, calls in CALLS.items():
                    for args, ok in calls:
                        if name == "autonomous_with_mcp" and ok:
                            await script(sim.url, [CallTools([ToolCallSpec("echo", {"text": "hi"})]), Say("Done.")])
                        result = await session.call_tool(name, args, progress_callback=on_progress)
                        results.append((name, ok, result))
    unexpected = [(name, shown(result)) for name, ok, result in results if ok == result.is_error]
    assert unexpected == []
    echo_run = next(result for name, ok, result in results if name == "autonomous_with_mcp" and ok)
    assert echo_run.structured_content is not None
    assert [(c["tool"], c["ok"]) for c in echo_run.structured_content["tool_calls"]] == [("echo", True)]
    for name, _, result in results:
        assert_no_secret(f"the result of {name}", shown(result))
    for message in seen:
        assert_no_secret("a message sent to the client", message)
    errlog.flush()
    stderr = read_file(Path(errlog.name))
    assert "DEBUG" in stderr  # the level took
    assert_no_secret("serve's stderr at DEBUG", stderr)
    for path in home.rglob("*"):
        if path.is_file():
            assert_no_secret(str(path), read_file(path))


def read_file(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


async def script(url: str, turns: list[Any]) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        body = {"model": QWEN, "turns": [msgspec.to_builtins(t) for t in turns]}
        (await client.post("/__sim/script", json=body)).raise_for_status()
