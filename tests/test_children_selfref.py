"""Self-exclusion: the bridge never starts itself as its own child."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.children import (
    PARENT_PID_ENV,
    ConfigSource,
    child_environment,
    load_children_config,
    nested_parent_pid,
    self_reference,
)

SELF = [
    ("lmstudio-bridge", []),
    ("/home/u/.venv/bin/lmstudio-bridge", ["--config", "x.toml"]),
    ("C:\\Users\\u\\bin\\LMStudio-Bridge.exe", []),
    ("uvx", ["lmstudio-bridge"]),
    ("uvx", ["lmstudio-bridge@latest"]),
    ("uvx", ["--from", "lmstudio-bridge==0.1.0", "lmstudio-bridge"]),
    ("uvx", ["--from=lmstudio_bridge", "serve"]),
    ("uv", ["run", "lmstudio-bridge"]),
    ("pipx", ["run", "lmstudio-bridge[test]"]),
    ("uv", ["run", "--directory", "/src/lmstudio-bridge", "python", "-m", "other"]),
    ("python", ["-m", "bridge"]),
    ("python3.11", ["-u", "-m", "bridge.cli", "--verbose"]),
    ("python", ["-mbridge"]),
    ("python", ["-c", "from bridge.cli import main; main()"]),
    ("sh", ["-c", "cd /srv && exec lmstudio-bridge --port 1"]),
]

NOT_SELF = [
    ("mcp-server-time", ["--local-timezone", "UTC"]),
    ("npx", ["-y", "@modelcontextprotocol/server-everything"]),
    ("lmstudio-bridge-helper", []),
    ("node", ["/opt/lmstudio-bridge-server.js"]),
    ("python", ["-m", "bridgekeeper"]),
    ("python", ["-m", "other.bridge"]),
    ("python", ["/src/mybridge.cli.py"]),
    ("python", ["/src/lmstudio-bridge/examples/echo_server.py"]),
    ("python", ["-m", "mcp_server_git", "--module", "bridge"]),
]


@pytest.mark.parametrize(("command", "args"), SELF)
def test_recognises_the_bridge(command: str, args: list[str]) -> None:
    """Every usual way of running lmstudio-bridge is recognised."""
    assert self_reference(command, args) is not None


@pytest.mark.parametrize(("command", "args"), NOT_SELF)
def test_leaves_other_servers_alone(command: str, args: list[str]) -> None:
    """Look-alike names and unrelated servers are not taken for the bridge."""
    assert self_reference(command, args) is None


def test_self_entry_is_skipped_with_a_reason(tmp_path: Path) -> None:
    """The bridge's own entry is reported in `skipped`, not started; the others are kept."""
    path = tmp_path / "mcp.json"
    servers = {"me": {"command": "uvx", "args": ["lmstudio-bridge"]}, "time": {"command": "mcp-server-time"}}
    path.write_text(json.dumps({"mcpServers": servers}))
    config = load_children_config([ConfigSource(path=path, origin="explicit")], environ={})
    assert list(config.servers) == ["time"]
    assert config.skipped == {
        "me": f"server 'me' in {path} is lmstudio-bridge itself: its command line runs lmstudio-bridge "
        "('lmstudio-bridge')"
    }
    assert config.errors == ()


def test_self_check_sees_expanded_values(tmp_path: Path) -> None:
    """A command hidden behind ${VAR} is still recognised."""
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"me": {"command": "${BRIDGE}"}}}))
    config = load_children_config([ConfigSource(path=path, origin="explicit")], environ={"BRIDGE": "lmstudio-bridge"})
    assert list(config.skipped) == ["me"]


def test_children_get_the_marker() -> None:
    """Every child's environment carries this bridge's pid, over the server's own env."""
    env = child_environment({"A": "1", PARENT_PID_ENV: "forged"})
    assert env[PARENT_PID_ENV] == str(os.getpid())
    assert env["A"] == "1"
    assert env["PATH"] == os.environ["PATH"]


def test_nested_bridge_starts_no_children(tmp_path: Path) -> None:
    """A bridge whose environment names a live parent bridge skips every server, saying why."""
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"time": {"command": "mcp-server-time"}}}))
    sources = [ConfigSource(path=path, origin="explicit")]
    parent = os.getppid()
    config = load_children_config(sources, environ={PARENT_PID_ENV: str(parent)})
    assert config.servers == {}
    assert config.skipped["time"].startswith(f"this bridge was started by another lmstudio-bridge (pid {parent}")
    allowed = load_children_config(sources, environ={PARENT_PID_ENV: str(parent)}, allow_nested=True)
    assert list(allowed.servers) == ["time"]


def test_stale_or_odd_markers_are_ignored() -> None:
    """A marker naming a dead process, this process, or garbage does not count."""
    with subprocess.Popen([sys.executable, "-c", "pass"]) as dead:
        dead.wait()
    assert nested_parent_pid({PARENT_PID_ENV: str(dead.pid)}) is None
    assert nested_parent_pid({PARENT_PID_ENV: str(os.getpid())}) is None
    assert nested_parent_pid({PARENT_PID_ENV: "not-a-pid"}) is None
    assert nested_parent_pid({}) is None
    assert nested_parent_pid({PARENT_PID_ENV: str(os.getppid())}) == os.getppid()
