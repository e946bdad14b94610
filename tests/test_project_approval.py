"""Servers of a project's ``./.mcp.json`` start only once the user approved them (issue 20, item 1).

Approval is read from the bridge's own configuration and from Claude Code's records
(``~/.claude.json`` per project, ``~/.claude/settings.json``); those files are read, never
written. Files the user named, and user-level files, count as approved.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.children import (
    ApprovalRecords,
    ChildrenConfig,
    ConfigSource,
    claude_code_records,
    default_sources,
    load_children_config,
)
from bridge.errors import BadRequestError
from bridge.messages import CallChildTool, ChildServerInfo, ChildServersMessage, ListChildServers
from bridge.runtime import ActorRef
from bridge.settings import ChildSettings
from tests._util import eventually, eventually_async
from tests.peers import ProcessLeakCheck
from tests.test_child_servers import child_servers_actor

DEADLINE = 30  # a safety net against hangs only

# A child that leaves a mark when it starts: what "the server was started" means here.
MARKING_SERVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import anyio
    from mcp.server.mcpserver import MCPServer

    Path(sys.argv[1]).write_text("started")
    server = MCPServer("marking")


    @server.tool()
    async def ping() -> str:
        return "pong"


    anyio.run(server.run_stdio_async)
    """
)


class Machine:
    """A home directory with Claude Code's files, and a project directory with its ``.mcp.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.project = root / "project"
        self.home.mkdir()
        self.project.mkdir()
        self.script = root / "marking.py"
        self.script.write_text(MARKING_SERVER)

    def server(self, name: str, **fields: Any) -> dict[str, Any]:
        """A marking child: it writes ``<name>.started`` in the root when it starts."""
        return {"command": sys.executable, "args": [str(self.script), str(self.mark(name))], **fields}

    def mark(self, name: str) -> Path:
        return self.root / f"{name}.started"

    def write_project(self, servers: dict[str, Any]) -> Path:
        path = self.project / ".mcp.json"
        path.write_text(json.dumps({"mcpServers": servers}))
        return path

    def claude_json(self, document: dict[str, Any], *, base: Path | None = None) -> Path:
        path = (base or self.home) / ".claude.json"
        path.write_text(json.dumps(document))
        return path

    def claude_settings(self, document: dict[str, Any]) -> Path:
        path = self.home / ".claude" / "settings.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(document))
        return path

    def records(self, *approved: str, environ: dict[str, str] | None = None) -> ApprovalRecords:
        claude_config, claude_settings = claude_code_records(environ or {}, self.home)
        return ApprovalRecords(
            approved=frozenset(approved), claude_config=claude_config, claude_settings=claude_settings
        )

    def sources(self, *explicit: str, environ: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
        return default_sources(explicit, environ=environ or {}, cwd=cwd or self.project, home=self.home)

    def load(
        self,
        *approved: str,
        environ: dict[str, str] | None = None,
        cwd: Path | None = None,
        explicit: tuple[str, ...] = (),
    ) -> ChildrenConfig:
        environ = environ or {}
        return load_children_config(
            self.sources(*explicit, environ=environ, cwd=cwd),
            environ=environ,
            approvals=self.records(*approved, environ=environ),
        )


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


# --------------------------------------------------------------------------- what counts as approval


def test_a_project_server_nobody_approved_is_not_started_and_says_how_to_approve(machine: Machine) -> None:
    path = machine.write_project({"cloned": machine.server("cloned", eager=True)})
    config = machine.load()
    assert config.servers == {}
    assert config.enabled() == {}
    how = config.needs_approval["cloned"]
    assert str(path) in how
    assert "approved_project_servers" in how
    assert "Claude Code" in how
    assert config.origins["cloned"] == str(path)


def test_the_bridges_own_list_approves_a_project_server_by_name(machine: Machine) -> None:
    machine.write_project({"mine": machine.server("mine"), "other": machine.server("other")})
    config = machine.load("mine")
    assert list(config.servers) == ["mine"]
    assert list(config.needs_approval) == ["other"]


def test_claude_codes_per_project_record_approves_the_names_it_lists(machine: Machine) -> None:
    machine.write_project({"a": machine.server("a"), "b": machine.server("b")})
    record = {"enabledMcpjsonServers": ["a"], "disabledMcpjsonServers": [], "hasTrustDialogAccepted": True}
    machine.claude_json({"projects": {str(machine.project): record, "/elsewhere": {"enabledMcpjsonServers": ["b"]}}})
    config = machine.load()
    assert list(config.servers) == ["a"]
    assert list(config.needs_approval) == ["b"]  # approved for another project only


def test_enable_all_project_servers_approves_every_name_but_a_disabled_one(machine: Machine) -> None:
    machine.write_project({"a": machine.server("a"), "b": machine.server("b")})
    record = {"enableAllProjectMcpServers": True, "disabledMcpjsonServers": ["b"]}
    machine.claude_json({"projects": {str(machine.project): record}})
    config = machine.load("b")  # even the bridge's own list does not override a "disabled" in Claude Code
    assert list(config.servers) == ["a"]
    assert "disabledMcpjsonServers" in config.needs_approval["b"]


def test_claude_codes_user_settings_approve_for_every_project(machine: Machine) -> None:
    machine.write_project({"a": machine.server("a"), "b": machine.server("b")})
    machine.claude_settings({"enabledMcpjsonServers": ["b"]})
    assert list(machine.load().servers) == ["b"]


def test_claude_config_dir_moves_claude_codes_records(machine: Machine) -> None:
    machine.write_project({"a": machine.server("a")})
    elsewhere = machine.root / "claude-config"
    elsewhere.mkdir()
    machine.claude_json({"projects": {str(machine.project): {"enabledMcpjsonServers": ["a"]}}}, base=elsewhere)
    assert list(machine.load(environ={"CLAUDE_CONFIG_DIR": str(elsewhere)}).servers) == ["a"]
    assert list(machine.load().servers) == []  # not in ~/.claude.json


def test_a_project_reached_through_a_link_matches_its_real_path(machine: Machine) -> None:
    machine.write_project({"a": machine.server("a")})
    link = machine.root / "link"
    link.symlink_to(machine.project)
    machine.claude_json({"projects": {str(machine.project): {"enabledMcpjsonServers": ["a"]}}})
    assert list(machine.load(cwd=link).servers) == ["a"]


def test_the_projects_own_claude_settings_approve_nothing(machine: Machine) -> None:
    """``.claude/settings*.json`` ship with the project as easily as its ``.mcp.json``."""
    machine.write_project({"a": machine.server("a")})
    for name in ("settings.json", "settings.local.json"):
        path = machine.project / ".claude" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"enableAllProjectMcpServers": True, "enabledMcpjsonServers": ["a"]}))
    assert list(machine.load().needs_approval) == ["a"]


@pytest.mark.parametrize("document", ["{not json", "[1, 2]", '{"projects": []}', '{"projects": {"%s": 7}}'])
def test_an_unreadable_record_approves_nothing_and_breaks_nothing(machine: Machine, document: str) -> None:
    machine.write_project({"a": machine.server("a")})
    (machine.home / ".claude.json").write_text(document.replace("%s", str(machine.project)))
    config = machine.load()
    assert list(config.needs_approval) == ["a"]
    assert config.errors == ()


def test_files_the_user_named_and_user_files_count_as_approved(machine: Machine) -> None:
    named = machine.root / "named.json"
    named.write_text(json.dumps({"mcpServers": {"named": machine.server("named")}}))
    via_env = machine.root / "env.json"
    via_env.write_text(json.dumps({"mcpServers": {"via-env": machine.server("via-env")}}))
    (machine.home / ".mcp.json").write_text(json.dumps({"mcpServers": {"user": machine.server("user")}}))
    (machine.home / ".lmstudio").mkdir()
    (machine.home / ".lmstudio" / "mcp.json").write_text(json.dumps({"mcpServers": {"lms": machine.server("lms")}}))
    config = machine.load(explicit=(str(named),), environ={"MCP_JSON_PATH": str(via_env)})
    assert sorted(config.servers) == ["lms", "named", "user", "via-env"]
    assert config.needs_approval == {}


def test_the_project_file_named_by_the_user_counts_as_approved(machine: Machine) -> None:
    path = machine.write_project({"a": machine.server("a")})
    assert list(machine.load(environ={"MCP_JSON_PATH": str(path)}).servers) == ["a"]
    assert list(machine.load(explicit=(".mcp.json",)).servers) == ["a"]


def test_dot_mcp_json_in_the_home_directory_is_the_users_own(machine: Machine) -> None:
    (machine.home / ".mcp.json").write_text(json.dumps({"mcpServers": {"user": machine.server("user")}}))
    sources = machine.sources(cwd=machine.home)
    assert [s.origin for s in sources if s.path == machine.home / ".mcp.json"] == ["user"]
    assert list(machine.load(cwd=machine.home).servers) == ["user"]


def test_claude_codes_files_are_read_never_written(machine: Machine) -> None:
    machine.write_project({"a": machine.server("a")})
    config_path = machine.claude_json({"projects": {str(machine.project): {"enabledMcpjsonServers": ["a"]}}})
    settings_path = machine.claude_settings({"theme": "dark"})
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (config_path, settings_path)}
    machine.load()
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before
    assert sorted(os.listdir(machine.home)) == [".claude", ".claude.json"]


# --------------------------------------------------------------------------- the running bridge


class Bridge:
    def __init__(self, actor: ActorRef[ChildServersMessage]) -> None:
        self.actor = actor

    async def servers(self) -> dict[str, ChildServerInfo]:
        listing = await self.actor.ask(ListChildServers())
        return {info.name: info for info in listing.servers}


@asynccontextmanager
async def running_bridge(machine: Machine, *approved: str) -> AsyncIterator[Bridge]:
    """A ChildServersActor in the project directory, watching its files, with ``HOME`` at the fake home."""
    settings = ChildSettings(
        call_timeout=20.0, startup_timeout=15.0, stop_grace=2.0, watch=True, approved_project_servers=list(approved)
    )
    environ = {"HOME": str(machine.home)}
    sources: list[ConfigSource] = machine.sources(environ=environ)
    async with child_servers_actor(settings, sources, environ) as (actor, _):
        yield Bridge(actor)


@pytest.fixture(autouse=True)
def no_leftover_processes(process_leak_check: ProcessLeakCheck) -> ProcessLeakCheck:
    return process_leak_check


async def test_an_eager_server_of_an_unapproved_project_file_never_starts(machine: Machine) -> None:
    """Regression: before, every ``eager`` server of ``./.mcp.json`` started with the bridge."""
    machine.write_project(
        {"approved": machine.server("approved", eager=True), "cloned": machine.server("cloned", eager=True)}
    )
    async with running_bridge(machine, "approved") as bridge:
        await eventually(machine.mark("approved").exists, within=DEADLINE)  # eager servers have been started
        servers = await bridge.servers()
        assert servers["cloned"].state == "needs_approval"
        assert "approved_project_servers" in (servers["cloned"].note or "")
        with pytest.raises(BadRequestError) as caught:
            await bridge.actor.ask(CallChildTool(server="cloned", tool="ping", arguments={}), timeout=20)
        assert caught.value.details["state"] == "needs_approval"
    assert not machine.mark("cloned").exists()


async def test_a_project_file_written_while_running_waits_for_approval_then_starts(machine: Machine) -> None:
    """What a local model with a filesystem tool could write is listed, not started, until Claude Code approves it."""
    async with running_bridge(machine) as bridge:
        machine.write_project({"planted": machine.server("planted", eager=True)})

        async def listed_as_needing_approval() -> bool:
            info = (await bridge.servers()).get("planted")
            return info is not None and info.state == "needs_approval"

        await eventually_async(listed_as_needing_approval, within=DEADLINE)
        assert not machine.mark("planted").exists()
        machine.claude_json({"projects": {str(machine.project): {"enabledMcpjsonServers": ["planted"]}}})
        await eventually(machine.mark("planted").exists, within=DEADLINE)  # approved: now it starts (eager)
        assert (await bridge.servers())["planted"].state != "needs_approval"
