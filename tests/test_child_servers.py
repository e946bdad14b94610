"""ChildServersActor: the configured servers, routing, partial listings, hot reload, self-exclusion.

The configuration is a real ``mcpServers`` file in ``tmp_path``; the servers
are real processes (``tests/_children``, ``mcp-server-time``, or a small
server written for the test). No test asserts how long anything took.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from bridge.actors.child_servers import ChildServersActor
from bridge.actors.mcp_session import SessionPolicy
from bridge.children import ConfigSource
from bridge.errors import BadRequestError, BridgeError, ConfigError, ErrorCode
from bridge.messages import (
    CallChildTool,
    ChildServerInfo,
    ChildServersMessage,
    ChildToolResult,
    ListChildServers,
    ListChildTools,
)
from bridge.runtime import ActorRef, ChildSpec, SupervisorRef, SupervisorSpec, open_supervisor
from bridge.settings import ChildSettings
from tests._util import CHILDREN
from tests.peers import ProcessLeakCheck

DEADLINE = 30  # a safety net against hangs only
POLICY = SessionPolicy(ping_interval=60.0, backoff_initial=0.02, backoff_max=0.1, max_restarts=2)

# A server for the hot-reload tests: `env` shows which configuration started it, `gate`
# holds a call in flight until the test creates a file, so no timing is involved.
GATE_SERVER = textwrap.dedent(
    """
    import os
    from pathlib import Path

    import anyio
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("gate")


    @server.tool()
    async def env(name: str) -> str:
        return os.environ.get(name, "")


    @server.tool()
    async def gate(path: str) -> str:
        while not Path(path).exists():
            await anyio.sleep(0.01)
        return "opened"


    anyio.run(server.run_stdio_async)
    """
)


def stdio(script_name: str, *args: str, **fields: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(CHILDREN / script_name), *args], **fields}


def argv_entry(argv: list[str]) -> dict[str, Any]:
    return {"command": argv[0], "args": argv[1:]}


def write(path: Path, servers: dict[str, Any]) -> None:
    path.write_text(json.dumps({"mcpServers": servers}))


class Harness:
    """A ChildServersActor reading one config file, with its sessions supervisor."""

    def __init__(self, actor: ActorRef[ChildServersMessage], sessions: SupervisorRef, config: Path) -> None:
        self.actor = actor
        self.sessions = sessions
        self.config = config

    async def call(self, server: str, tool: str, **arguments: Any) -> ChildToolResult:
        return await self.actor.ask(CallChildTool(server=server, tool=tool, arguments=arguments), timeout=20)

    async def servers(self) -> dict[str, ChildServerInfo]:
        listing = await self.actor.ask(ListChildServers())
        return {info.name: info for info in listing.servers}

    async def call_when_available(self, server: str, tool: str, **arguments: Any) -> ChildToolResult:
        """Call until the server is routed (a reload may not have been seen yet)."""
        with anyio.fail_after(DEADLINE):
            while True:
                try:
                    return await self.call(server, tool, **arguments)
                except BadRequestError:
                    await anyio.sleep(0.01)


@asynccontextmanager
async def child_servers(tmp_path: Path, servers: dict[str, Any], *, watch: bool = False) -> AsyncIterator[Harness]:
    config = tmp_path / "mcp.json"
    write(config, servers)
    settings = ChildSettings(call_timeout=20.0, startup_timeout=15.0, stop_grace=2.0, watch=watch)
    sources = [ConfigSource(path=config, origin="explicit", required=True)]
    async with child_servers_actor(settings, sources, {}) as (actor, sessions):
        yield Harness(actor, sessions, config)


@asynccontextmanager
async def child_servers_actor(
    settings: ChildSettings, sources: list[ConfigSource], environ: dict[str, str]
) -> AsyncIterator[tuple[ActorRef[ChildServersMessage], SupervisorRef]]:
    """A ChildServersActor under a test supervisor, with the supervisor of its sessions (within DEADLINE)."""
    with anyio.fail_after(DEADLINE):
        async with open_supervisor("test") as supervisor:
            sessions = await supervisor.start_child(SupervisorSpec("sessions", intensity=10, period=1.0))
            spec: ChildSpec[ChildServersMessage] = ChildSpec(
                "children",
                lambda: ChildServersActor(
                    settings, sessions, sources=sources, environ=environ, policy=POLICY, watch_interval=0.05
                ),
            )
            yield await supervisor.start_child(spec), sessions


@pytest.fixture(autouse=True)
def no_leftover_processes(process_leak_check: ProcessLeakCheck) -> ProcessLeakCheck:
    """Every test here starts children: none may outlive it."""
    return process_leak_check


# -- listing and routing ------------------------------------------------------------------------------


async def test_every_configured_server_is_listed_with_its_state(tmp_path: Path) -> None:
    """Enabled, disabled, self-referencing (skipped, with the reason) and invalid entries all show up."""
    servers = {
        "echo": stdio("echo_server.py"),
        "off": {**stdio("echo_server.py"), "disabled": True},
        "myself": {"command": "uvx", "args": ["lmstudio-bridge"]},
        "broken": {"command": "srv", "args": "--port 80"},
    }
    async with child_servers(tmp_path, servers) as harness:
        listing = await harness.actor.ask(ListChildServers())
    rows = {info.name: info for info in listing.servers}
    assert [info.name for info in listing.servers] == ["broken", "echo", "myself", "off"]
    assert (rows["echo"].state, rows["echo"].transport, rows["echo"].source) == (
        "not_started",
        "stdio",
        str(tmp_path / "mcp.json"),
    )
    assert rows["off"].state == "disabled"
    assert rows["myself"].state == "skipped"
    assert rows["myself"].note is not None
    assert "is lmstudio-bridge itself" in rows["myself"].note
    assert rows["broken"].state == "failed"
    assert rows["broken"].last_error is not None
    assert "key 'args' must be a list of strings" in rows["broken"].last_error
    assert any("key 'args' must be a list of strings" in error for error in listing.errors)
    # skipped and invalid entries say which file to fix, like every other row
    assert rows["myself"].source == rows["broken"].source == str(tmp_path / "mcp.json")


async def test_calls_are_routed_to_the_named_server(
    tmp_path: Path, time_server: list[str], process_leak_check: ProcessLeakCheck
) -> None:
    """CallChildTool reaches the server by name; the listing then shows it ready with its tools."""
    servers = {"time": {"command": time_server[0], "args": time_server[1:]}, "echo": stdio("echo_server.py")}
    async with child_servers(tmp_path, servers) as harness:
        result = await harness.call("time", "get_current_time", timezone="UTC")
        assert (result.server, result.tool, result.is_error) == ("time", "get_current_time", False)
        assert result.structured_content is not None
        assert result.structured_content["timezone"] == "UTC"
        rows = await harness.servers()
        assert (rows["time"].state, rows["echo"].state) == ("ready", "not_started")
        assert rows["time"].tool_count == 2
        assert rows["time"].pid is not None


async def test_unknown_disabled_and_skipped_servers_are_refused_clearly(tmp_path: Path) -> None:
    """Each refusal says why: unknown (listing the known ones), disabled, skipped, or invalid."""
    servers = {
        "echo": stdio("echo_server.py"),
        "off": {**stdio("echo_server.py"), "disabled": True},
        "myself": {"command": "lmstudio-bridge"},
        "broken": {"command": "srv", "args": "--port 80"},
    }
    async with child_servers(tmp_path, servers) as harness:
        with pytest.raises(BadRequestError, match=r"no child MCP server is named 'nope'; the ones available: 'echo'\."):
            await harness.call("nope", "x")
        with pytest.raises(BadRequestError, match=r"child server 'off' is disabled in .*mcp\.json; set \"disabled\""):
            await harness.call("off", "x")
        with pytest.raises(BadRequestError, match=r"child server 'myself' is not started: .* lmstudio-bridge itself"):
            await harness.call("myself", "x")
        with pytest.raises(ConfigError, match=r"child server 'broken' cannot be used: .*key 'args'"):
            await harness.call("broken", "x")


async def test_tools_of_all_servers_are_listed_with_partial_errors(
    tmp_path: Path, everything_server: list[str]
) -> None:
    """ListChildTools asks every server at once; one that cannot start is an entry in errors, not a failure."""
    servers = {"everything": argv_entry(everything_server), "db": stdio("exit_at_once.py")}
    async with child_servers(tmp_path, servers) as harness:
        catalog = await harness.actor.ask(ListChildTools(), timeout=20)
        assert [listing.server for listing in catalog.servers] == ["everything"]
        assert {"echo", "get-sum"} <= {tool.name for tool in catalog.servers[0].tools}
        assert list(catalog.errors) == ["db"]
        assert catalog.errors["db"].code == ErrorCode.CHILD_SERVER_DOWN
        assert "cannot open database" in catalog.errors["db"].message
        named = await harness.actor.ask(ListChildTools(servers=["everything", "nope"]), timeout=20)
        assert [listing.server for listing in named.servers] == ["everything"]
        assert named.errors["nope"].code == ErrorCode.BAD_REQUEST


# -- hot reload ---------------------------------------------------------------------------------------


async def test_an_added_server_becomes_callable(tmp_path: Path, everything_server: list[str]) -> None:
    """Writing a new server into the file makes it callable without restarting anything."""
    first = {"echo": stdio("echo_server.py")}
    async with child_servers(tmp_path, first, watch=True) as harness:
        write(harness.config, {**first, "added": argv_entry(everything_server)})
        result = await harness.call_when_available("added", "echo", message="new")
        assert (result.server, result.text) == ("added", "Echo: new")
        assert (await harness.servers())["added"].state == "ready"


async def test_a_removed_server_is_stopped(
    tmp_path: Path, everything_server: list[str], process_leak_check: ProcessLeakCheck
) -> None:
    """Removing a server from the file stops its child and makes the name unknown."""
    async with child_servers(tmp_path, {"echo": argv_entry(everything_server)}, watch=True) as harness:
        assert (await harness.call("echo", "echo", message="up")).text == "Echo: up"
        process_leak_check.sample()
        write(harness.config, {})
        with anyio.fail_after(DEADLINE):
            while "echo" in await harness.servers():
                await anyio.sleep(0.01)
        with pytest.raises(BadRequestError, match=r"no child MCP server is named 'echo'"):
            await harness.call("echo", "echo", message="gone")
        with anyio.fail_after(DEADLINE):
            while harness.sessions.which_children():
                await anyio.sleep(0.01)
        process_leak_check.check()


async def test_a_changed_server_restarts_and_calls_in_flight_finish_on_the_old_one(
    tmp_path: Path, process_leak_check: ProcessLeakCheck
) -> None:
    """A changed entry gets a new session for new calls; a call already running completes on the old child."""
    server_script = tmp_path / "gate_server.py"
    server_script.write_text(GATE_SERVER)
    gate = tmp_path / "open-the-gate"

    def entry(version: str) -> dict[str, Any]:
        return {"command": sys.executable, "args": [str(server_script)], "env": {"VERSION": version}}

    async with child_servers(tmp_path, {"gated": entry("1")}, watch=True) as harness:
        assert (await harness.call("gated", "env", name="VERSION")).text == "1"
        results: list[ChildToolResult | BridgeError] = []

        async def held_call() -> None:
            try:
                results.append(await harness.call("gated", "gate", path=str(gate)))
            except BridgeError as exc:
                results.append(exc)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(held_call)
            with anyio.fail_after(DEADLINE):
                while harness.sessions.which_children()[0].in_flight != 1:
                    await anyio.sleep(0.01)
            write(harness.config, {"gated": entry("2")})
            with anyio.fail_after(DEADLINE):
                while (await harness.call("gated", "env", name="VERSION")).text != "2":
                    await anyio.sleep(0.01)
            assert results == []  # still held on the old child
            assert [info.name for info in harness.sessions.which_children()] == ["gated", "gated#2"]
            gate.touch()
        assert len(results) == 1
        assert isinstance(results[0], ChildToolResult)
        assert results[0].text == "opened"
        with anyio.fail_after(DEADLINE):
            while [info.name for info in harness.sessions.which_children()] != ["gated#2"]:
                await anyio.sleep(0.01)


async def test_a_broken_config_file_keeps_the_last_good_configuration(
    tmp_path: Path, everything_server: list[str]
) -> None:
    """A file that stops parsing: its servers stay, and the error is listed until the file is fixed."""
    servers = {"echo": argv_entry(everything_server)}
    async with child_servers(tmp_path, servers, watch=True) as harness:
        harness.config.write_text('{"mcpServers": {"echo": ')
        with anyio.fail_after(DEADLINE):
            while not (listing := await harness.actor.ask(ListChildServers())).errors:
                await anyio.sleep(0.01)
        assert any("not valid JSON" in error for error in listing.errors)
        assert any("keeping its last good configuration" in error for error in listing.errors)
        assert [info.name for info in listing.servers] == ["echo"]
        assert (await harness.call("echo", "echo", message="still there")).text == "Echo: still there"
        write(harness.config, servers)
        with anyio.fail_after(DEADLINE):
            while (await harness.actor.ask(ListChildServers())).errors:
                await anyio.sleep(0.01)
