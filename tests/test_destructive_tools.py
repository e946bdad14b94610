"""Tools a child marks destructive are not handed to a local model unless the user says so (issue 20, item 3)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Bridge, open_bridge
from bridge.errors import ChildServerDownError
from bridge.frontend._format import run_output
from bridge.messages import RunResult, RunTask
from bridge.sim import CallTools, Say, SimConfig, SimModel, SimServer, ToolCallSpec
from tests.test_planner_runs import planner_settings

SERVER = [sys.executable, str(Path(__file__).parent / "_children" / "annotated_server.py")]
MODEL = "sim/planner"
OFFERED_BY_DEFAULT = ["append_note", "read_notes", "unmarked", "wipe_marked_read_only"]


@asynccontextmanager
async def running(tmp_path: Path, **definition: Any) -> AsyncIterator[tuple[SimServer, Bridge]]:
    path = tmp_path / "mcp.json"
    server = {"command": SERVER[0], "args": SERVER[1:], **definition}
    path.write_text(json.dumps({"mcpServers": {"notes": server}}))
    config = SimConfig(models=(SimModel(id=MODEL, loaded=True, context_length=8192),))
    async with SimServer(config) as sim, open_bridge(planner_settings(sim.url, path)) as bridge:
        yield sim, bridge


async def run(bridge: Bridge, **fields: Any) -> RunResult:
    assert bridge.planner is not None
    return await bridge.planner.ask(
        RunTask(task="tidy the notes", model=MODEL, servers=["notes"], **fields), timeout=60
    )


def offered(sim: SimServer) -> list[str]:
    """The tool names the model was given in the run's first request."""
    return sorted(tool["function"]["name"] for tool in sim.requests(MODEL)[0].body["tools"])


async def test_a_destructive_tool_is_withheld_and_the_trace_says_how_to_allow_it(tmp_path: Path) -> None:
    """Regression: before, delete_notes was offered to the model like any other tool."""
    async with running(tmp_path) as (sim, bridge):
        sim.script(MODEL, [Say("done")])
        result = await run(bridge)
        assert offered(sim) == OFFERED_BY_DEFAULT
    assert result.withheld_tools == ["notes__delete_notes"]
    text = run_output(result).text
    assert "withheld (marked destructive by their server): notes__delete_notes" in text
    assert "allow_tools" in text
    assert '"allow_destructive": true' in text


@pytest.mark.parametrize("allow", [["delete_notes"], ["notes__delete_notes"], ["notes/*"], ["*"]])
async def test_allow_tools_that_names_a_destructive_tool_offers_it(tmp_path: Path, allow: list[str]) -> None:
    async with running(tmp_path) as (sim, bridge):
        sim.script(MODEL, [CallTools([ToolCallSpec("delete_notes", {})]), Say("deleted")])
        result = await run(bridge, allow=allow)
        assert "delete_notes" in offered(sim)
    assert result.withheld_tools == []
    assert [(c.tool, c.ok) for c in result.tool_calls] == [("delete_notes", True)]


async def test_a_server_whose_definition_allows_destructive_tools_offers_them_all(tmp_path: Path) -> None:
    async with running(tmp_path, allow_destructive=True) as (sim, bridge):
        sim.script(MODEL, [Say("done")])
        result = await run(bridge)
        assert offered(sim) == sorted([*OFFERED_BY_DEFAULT, "delete_notes"])
    assert result.withheld_tools == []


async def test_a_withheld_tool_the_model_calls_anyway_is_refused_not_run(tmp_path: Path) -> None:
    async with running(tmp_path) as (sim, bridge):
        sim.script(MODEL, [CallTools([ToolCallSpec("delete_notes", {})]), Say("could not")])
        result = await run(bridge)
    [call] = result.tool_calls
    assert call.tool == "delete_notes"
    assert not call.ok  # unknown to the run: never sent to the child
    assert call.error == "unknown tool"


async def test_a_run_left_with_only_withheld_tools_says_why_and_how(tmp_path: Path) -> None:
    async with running(tmp_path) as (_, bridge):
        with pytest.raises(ChildServerDownError) as caught:
            await run(bridge, deny=OFFERED_BY_DEFAULT)
    assert "withheld as destructive: notes__delete_notes" in caught.value.message
    assert "allow_tools" in caught.value.message
    assert caught.value.details["withheld_tools"] == ["notes__delete_notes"]
