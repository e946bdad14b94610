"""The autonomous tools from a real MCP client over real stdio: serve as a subprocess, the simulator and
a real child MCP server (mcp-server-time) each in their own process."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import httpx
import msgspec
import pytest
from mcp import StdioServerParameters
from mcp.types import CallToolResult

from bridge.sim import CallTools, Say, ToolCallSpec
from tests._stdio import clean_env, serve_argv, sim_with, stdio_session

MODEL = "sim/agent"
SIM_CONFIG = {"models": [{"id": MODEL, "loaded": True}]}


def config_files(tmp_path: Path, sim_url: str, time_server: list[str]) -> Path:
    mcp = tmp_path / "mcp.json"
    mcp.write_text(json.dumps({"mcpServers": {"time": {"command": time_server[0], "args": time_server[1:]}}}))
    toml = tmp_path / "bridge.toml"
    toml.write_text(
        f'servers = ["{sim_url}"]\n'
        f'default_model = "{MODEL}"\n'
        "[children]\n"
        f'config_paths = ["{mcp}"]\n'
        "discover = false\n"
        "watch = false\n"
    )
    return toml


async def script(url: str, turns: list[Any]) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        body = {"model": MODEL, "turns": [msgspec.to_builtins(t) for t in turns]}
        (await client.post("/__sim/script", json=body)).raise_for_status()


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("autonomous_with_mcp", {"mcp_name": "time"}),
        ("autonomous_with_multiple_mcps", {"mcp_names": ["time"]}),
        ("autonomous_discover_and_execute", {}),
    ],
)
async def test_autonomous_tools_over_stdio(
    tmp_path: Path, time_server: list[str], errlog: TextIO, tool: str, args: dict[str, Any]
) -> None:
    """Each autonomous tool runs a local model over a child server's tools and returns answer + trace."""
    async with sim_with(tmp_path, SIM_CONFIG) as sim:
        toml = config_files(tmp_path, sim.url, time_server)
        await script(
            sim.url,
            [CallTools([ToolCallSpec("get_current_time", {"timezone": "UTC"})]), Say("It is noon in UTC.")],
        )
        params = StdioServerParameters(
            command=sys.executable, args=serve_argv("--config", str(toml)), env=clean_env(tmp_path)
        )
        await _run(params, errlog, tool, args)


async def _run(params: StdioServerParameters, errlog: TextIO, tool: str, args: dict[str, Any]) -> None:
    async with stdio_session(params, errlog) as session:
        result = await session.call_tool(tool, {"task": "What time is it in UTC?", **args})
        assert isinstance(result, CallToolResult)
        assert not result.is_error, result.content
        data = result.structured_content
        assert data is not None
        assert data["stop_reason"] == "final_answer"
        assert data["answer"] == "It is noon in UTC."
        assert [(c["server"], c["tool"], c["ok"]) for c in data["tool_calls"]] == [("time", "get_current_time", True)]
        block = result.content[0]
        assert block.type == "text"
        assert block.text.startswith("It is noon in UTC.")
        assert "round 1: time.get_current_time ok" in block.text


async def test_autonomous_tool_with_an_unknown_server_is_a_typed_error(
    tmp_path: Path, time_server: list[str], errlog: TextIO
) -> None:
    """Naming a child server that is not configured gives isError with a code, not a crash."""
    async with sim_with(tmp_path, SIM_CONFIG) as sim:
        toml = config_files(tmp_path, sim.url, time_server)
        params = StdioServerParameters(
            command=sys.executable, args=serve_argv("--config", str(toml)), env=clean_env(tmp_path)
        )
        async with stdio_session(params, errlog) as session:
            result = await session.call_tool("autonomous_with_mcp", {"mcp_name": "nope", "task": "x"})
            assert isinstance(result, CallToolResult)
            assert result.is_error
            assert result.structured_content is not None
            assert result.structured_content["code"] in {"child_server_down", "bad_request"}
