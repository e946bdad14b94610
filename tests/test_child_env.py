"""A child server gets a minimal environment: the mcp SDK's safe names, what its configuration passes
through, its own ``env`` and the nesting marker; never the bridge's API key or other secrets."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import get_default_environment
from mcp.types import CallToolResult

from bridge.children import (
    PARENT_PID_ENV,
    ChildrenConfig,
    ConfigSource,
    ServerConfig,
    child_environment,
    diff_configs,
    load_children_config,
    open_stdio_child,
)
from tests._util import CHILDREN
from tests.peers import ProcessLeakCheck

DEADLINE = 20  # a safety net against hangs only
CANARY = "canary-secret"
BASE = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/someone",
    "LMSTUDIO_API_KEY": CANARY,
    "MY_TOKEN": "token-value",
    "OTHER": "x",
}


def load(tmp_path: Path, entry: dict[str, Any]) -> ChildrenConfig:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"s": entry}}))
    return load_children_config([ConfigSource(path=path, origin="explicit")], environ={})


def text(result: object) -> str:
    assert isinstance(result, CallToolResult)
    content = result.content[0]
    assert content.type == "text"
    return content.text


# -- child_environment --------------------------------------------------------------------------


def test_secrets_in_the_base_do_not_reach_the_child() -> None:
    env = child_environment({}, BASE)
    assert "LMSTUDIO_API_KEY" not in env
    assert CANARY not in env.values()
    assert "MY_TOKEN" not in env
    assert "OTHER" not in env
    assert (env["PATH"], env["HOME"]) == (BASE["PATH"], BASE["HOME"])


def test_passthrough_names_come_from_the_base_and_unset_ones_are_absent() -> None:
    env = child_environment({}, BASE, ("MY_TOKEN", "NOT_SET"))
    assert env["MY_TOKEN"] == "token-value"
    assert "NOT_SET" not in env
    assert "LMSTUDIO_API_KEY" not in env


def test_the_servers_env_wins_and_the_marker_wins_over_it() -> None:
    env = child_environment({"PATH": "/opt/bin", "MY_TOKEN": "mine", PARENT_PID_ENV: "forged"}, BASE, ("MY_TOKEN",))
    assert env["PATH"] == "/opt/bin"
    assert env["MY_TOKEN"] == "mine"
    assert env[PARENT_PID_ENV] == str(os.getpid())


def test_exported_shell_functions_are_not_inherited() -> None:
    """As in the SDK: a value starting ``()`` is a bash function, a classic injection route."""
    assert "SHELL" not in child_environment({}, {**BASE, "SHELL": "() { :; }; echo pwned"})


def test_without_inherited_the_base_is_ours_and_matches_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our own environment filtered by the SDK's list is exactly what the SDK's helper gives."""
    monkeypatch.setenv("LMSTUDIO_API_KEY", CANARY)
    env = child_environment({})
    assert "LMSTUDIO_API_KEY" not in env
    assert {k: v for k, v in env.items() if k != PARENT_PID_ENV} == get_default_environment()


# -- configuration ------------------------------------------------------------------------------


def test_env_passthrough_is_parsed_literally(tmp_path: Path) -> None:
    config = load(tmp_path, {"command": "c", "env_passthrough": ["MY_TOKEN", "${NOT_EXPANDED}"]})
    assert config.servers["s"].env_passthrough == ("MY_TOKEN", "${NOT_EXPANDED}")
    assert load(tmp_path, {"command": "c"}).servers["s"].env_passthrough == ()


@pytest.mark.parametrize(
    ("value", "key", "problem"),
    [
        ("MY_TOKEN", "env_passthrough", "must be a list of variable names, not a string"),
        ({"MY_TOKEN": "1"}, "env_passthrough", "must be a list of variable names, not an object"),
        (["A", 3], "env_passthrough[1]", "must be a variable name, not a number"),
        ([""], "env_passthrough[0]", "must be a variable name, not ''"),
        (["A=1"], "env_passthrough[0]", "must be a variable name, not 'A=1'"),
    ],
)
def test_a_bad_env_passthrough_is_a_config_error(tmp_path: Path, value: object, key: str, problem: str) -> None:
    config = load(tmp_path, {"command": "c", "env_passthrough": value})
    assert config.invalid == {"s": f"{tmp_path / 'mcp.json'}: server 's': key {key!r} {problem}"}
    assert config.servers == {}


def test_changing_env_passthrough_restarts_the_child() -> None:
    old = ChildrenConfig(servers={"s": ServerConfig(name="s", transport="stdio", command="c")})
    new = ChildrenConfig(
        servers={"s": ServerConfig(name="s", transport="stdio", command="c", env_passthrough=("MY_TOKEN",))}
    )
    assert diff_configs(old, new).changed == ("s",)


# -- a real child -------------------------------------------------------------------------------


async def test_a_real_child_sees_neither_the_api_key_nor_unlisted_secrets(
    monkeypatch: pytest.MonkeyPatch, process_leak_check: ProcessLeakCheck, anyio_backend: str
) -> None:
    monkeypatch.setenv("LMSTUDIO_API_KEY", CANARY)
    monkeypatch.setenv("MY_TOKEN", "token-value")
    monkeypatch.setenv("OTHER_SECRET", "other-value")
    config = ServerConfig(
        name="echo",
        transport="stdio",
        command=sys.executable,
        args=(str(CHILDREN / "echo_server.py"), anyio_backend),
        env_passthrough=("MY_TOKEN",),
    )
    with anyio.fail_after(DEADLINE):
        async with (
            open_stdio_child(config, grace=0.5, term_timeout=0.5) as child,
            ClientSession(*child.streams) as session,
        ):
            await session.initialize()
            seen = {
                name: text(await session.call_tool("env", {"name": name}))
                for name in ("LMSTUDIO_API_KEY", "OTHER_SECRET", "MY_TOKEN", "PATH", PARENT_PID_ENV)
            }
    assert seen["LMSTUDIO_API_KEY"] == ""
    assert seen["OTHER_SECRET"] == ""
    assert seen["MY_TOKEN"] == "token-value"
    assert seen["PATH"] == os.environ["PATH"]
    assert seen[PARENT_PID_ENV] == str(os.getpid())
