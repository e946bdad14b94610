"""Autonomous runs end to end: simulator models scripted to use real child MCP servers' tools."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from bridge.app import Bridge, open_bridge
from bridge.llm import ChatMessage
from bridge.messages import CallChildTool, Chat, ListChildServers, RunResult, RunTask
from bridge.settings import BridgeSettings, ChildSettings, RetrySettings, ServerSettings
from bridge.sim import CallTools, Raw, Say, SimConfig, SimModel, SimServer, ToolCallSpec
from tests._util import CHILDREN, eventually_async

MODEL = "sim/planner"


def mcp_json(tmp_path: Path, servers: dict[str, list[str]]) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(
        json.dumps({"mcpServers": {name: {"command": argv[0], "args": argv[1:]} for name, argv in servers.items()}})
    )
    return path


def echo_server() -> list[str]:
    return [sys.executable, str(CHILDREN / "echo_server.py")]


def planner_settings(sim_url: str, mcp_json: Path) -> BridgeSettings:
    """The simulator at ``sim_url`` (quick retries) and the child servers ``mcp_json`` configures."""
    return BridgeSettings(
        servers=[ServerSettings(url=sim_url, name="sim")],
        retry=RetrySettings(attempts=2, wait_initial=0.01, wait_max=0.05),
        children=ChildSettings(config_paths=[str(mcp_json)], discover=False, watch=False, call_timeout=20),
    )


@asynccontextmanager
async def running(
    tmp_path: Path, servers: dict[str, list[str]], models: tuple[SimModel, ...] | None = None, **sim: Any
) -> AsyncIterator[tuple[SimServer, Bridge]]:
    config = SimConfig(models=models or (SimModel(id=MODEL, loaded=True, context_length=8192),), **sim)
    settings_path = mcp_json(tmp_path, servers)
    async with SimServer(config) as sim, open_bridge(planner_settings(sim.url, settings_path)) as bridge:
        assert bridge.planner is not None
        yield sim, bridge


async def run(bridge: Bridge, task: str = "do it", **fields: Any) -> RunResult:
    assert bridge.planner is not None
    return await bridge.planner.ask(RunTask(task=task, model=MODEL, **fields), timeout=60)


async def test_clean_two_round_run_with_a_real_child(tmp_path: Path, time_server: list[str]) -> None:
    """Round 1 calls get_current_time on mcp-server-time; round 2 answers. The trace says so."""
    async with running(tmp_path, {"time": time_server}) as (sim, bridge):
        sim.script(
            MODEL,
            [CallTools([ToolCallSpec("get_current_time", {"timezone": "UTC"})]), Say("It is noon in UTC.")],
        )
        result = await run(bridge, "What time is it in UTC?", servers=["time"])
        assert result.stop_reason == "final_answer"
        assert result.answer == "It is noon in UTC."
        assert result.rounds == 2
        [call] = result.tool_calls
        assert (call.server, call.tool, call.ok) == ("time", "get_current_time", True)
        assert call.arguments == {"timezone": "UTC"}
        second = sim.requests(MODEL)[1].messages
        assistant = next(m for m in second if m["role"] == "assistant")
        assert assistant["content"] == ""
        tool_message = next(m for m in second if m["role"] == "tool")
        assert tool_message["tool_call_id"] == assistant["tool_calls"][0]["id"]
        assert "UTC" in tool_message["content"]


@pytest.mark.parametrize(
    "turn",
    [
        Raw('<tool_call>{"name": "echo", "arguments": {"text": "hermes"}}</tool_call>'),
        CallTools([ToolCallSpec("echo", {"text": "hermes"})], style="text"),
        Raw("<function=echo><parameter=text>hermes</parameter></function>"),
        Raw('Let me call it:\n```json\n{"name": "echo", "arguments": {"text": "hermes"}}\n```'),
        Raw(
            '<think>maybe <tool_call>{"name": "echo", "arguments": {"text": "no"}}</tool_call></think>'
            '<tool_call>{"name": "echo", "arguments": {"text": "hermes"}}</tool_call>'
        ),
    ],
    ids=["hermes", "lmstudio-text", "qwen-coder", "fenced-json", "not-from-think"],
)
async def test_tool_calls_in_text_forms_are_recovered(tmp_path: Path, turn: Any) -> None:
    """Calls the server left in the text are recovered (never from reasoning) and run."""
    async with running(tmp_path, {"echo": echo_server()}) as (sim, bridge):
        sim.script(MODEL, [turn, Say("done")])
        result = await run(bridge)
        assert result.stop_reason == "final_answer"
        assert [(c.tool, c.arguments, c.ok) for c in result.tool_calls] == [("echo", {"text": "hermes"}, True)]


async def test_almost_json_arguments_are_repaired(tmp_path: Path) -> None:
    """Arguments with single quotes and a trailing comma are repaired, not refused."""
    async with running(tmp_path, {"echo": echo_server()}) as (sim, bridge):
        sim.script(MODEL, [CallTools([ToolCallSpec("echo", "{'text': 'fixed',}")]), Say("done")])
        result = await run(bridge)
        assert result.tool_calls[0].ok
        assert result.tool_calls[0].arguments == {"text": "fixed"}


async def test_schema_failure_is_explained_and_corrected_next_round(tmp_path: Path) -> None:
    """Arguments that fail the schema are answered to the model precisely, not sent to the child."""
    async with running(tmp_path, {"echo": echo_server()}) as (sim, bridge):
        sim.script(
            MODEL,
            [
                CallTools([ToolCallSpec("add", {"a": 1})]),
                CallTools([ToolCallSpec("add", {"a": 1, "b": 2})]),
                Say("3"),
            ],
        )
        result = await run(bridge)
        assert [c.ok for c in result.tool_calls] == [False, True]
        assert result.tool_calls[0].error == "arguments failed the tool's schema"
        feedback = next(m for m in sim.requests(MODEL)[1].messages if m["role"] == "tool")["content"]
        assert "`b` is required" in feedback
        assert result.answer == "3"


async def test_tool_error_result_is_fed_back_marked_as_error(tmp_path: Path) -> None:
    """A tool answering isError is reported to the model as an error, and recorded as not ok."""
    async with running(tmp_path, {"echo": echo_server()}) as (sim, bridge):
        sim.script(MODEL, [CallTools([ToolCallSpec("fail", {})]), Say("it failed")])
        result = await run(bridge)
        assert result.tool_calls[0].ok is False
        feedback = next(m for m in sim.requests(MODEL)[1].messages if m["role"] == "tool")["content"]
        assert feedback.startswith("Error:")


async def test_a_loop_is_caught_on_the_third_identical_call(tmp_path: Path) -> None:
    """The same call with the same arguments a third time stops the run with stop_reason loop."""
    async with running(tmp_path, {"echo": echo_server()}) as (sim, bridge):
        same = CallTools([ToolCallSpec("echo", {"text": "again"})])
        sim.script(MODEL, [same, same, same, Say("never")])
        result = await run(bridge)
        assert result.stop_reason == "loop"
        assert result.rounds == 3
        assert len([c for c in result.tool_calls if c.ok]) == 2


async def test_time_budget_returns_the_partial_run(tmp_path: Path) -> None:
    """When the time budget runs out mid-tool-call, the run stops with what it has."""
    async with running(tmp_path, {"echo": echo_server()}) as (sim, bridge):
        sim.script(MODEL, [Raw('Let me wait. <tool_call>{"name": "sleep", "arguments": {"seconds": 30}}</tool_call>')])
        result = await run(bridge, max_rounds=5, time_budget=2.0)
        assert result.stop_reason == "time_budget"
        assert result.rounds == 1
        assert result.answer == "Let me wait."


async def test_cancelling_a_run_cancels_its_tool_call_and_the_bridge_serves_on(tmp_path: Path) -> None:
    """A cancelled run stops its running tool call; the child and the bridge keep working."""
    async with running(tmp_path, {"echo": echo_server()}) as (sim, bridge):
        sim.script(MODEL, [CallTools([ToolCallSpec("sleep", {"seconds": 30})])])
        assert bridge.children is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, bridge)
            await eventually_async(lambda: sleeps(bridge, "running=1 cancelled=0"))
            tg.cancel_scope.cancel()
        await eventually_async(lambda: sleeps(bridge, "running=0 cancelled=1"))  # the child's own call stopped
        answer = await bridge.children.ask(CallChildTool(server="echo", tool="echo", arguments={"text": "alive"}))
        assert answer.text == "alive"


async def sleeps(bridge: Bridge, expected: str) -> bool:
    assert bridge.children is not None
    answer = await bridge.children.ask(CallChildTool(server="echo", tool="sleeps", arguments={}))
    return answer.text == expected


async def test_child_dying_mid_run_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    """A child that crashes on a call gives that call an error; the run continues and ends cleanly."""
    crash = [sys.executable, str(CHILDREN / "crash_on_nth.py"), "1"]
    async with running(tmp_path, {"crashy": crash}) as (sim, bridge):
        listing = await bridge.children.ask(ListChildServers()) if bridge.children else None
        assert listing is not None
        sim.script(MODEL, [CallTools([ToolCallSpec("work", {"text": "x"})]), Say("the tool broke")])
        result = await run(bridge)
        assert result.stop_reason == "final_answer"
        assert result.tool_calls[0].ok is False
        assert "child_server_down" in (result.tool_calls[0].error or "")


async def test_fifty_concurrent_runs_are_isolated(tmp_path: Path, time_server: list[str]) -> None:
    """50 runs at once over 4 models and 2 child servers: each trace holds only its own calls and model."""
    models = tuple(
        SimModel(id=f"sim/m{i}", loaded=True, auto_tool_calls=True, parallel=4, reply_tokens=3) for i in range(4)
    )
    async with running(tmp_path, {"echo": echo_server(), "time": time_server}, models) as (sim, bridge):
        assert bridge.planner is not None
        results: dict[int, RunResult] = {}

        async def one(i: int) -> None:
            task = RunTask(task=f"run {i}", model=f"sim/m{i % 4}", servers=[("echo", "time")[i % 2]])
            assert bridge.planner is not None
            results[i] = await bridge.planner.ask(task, timeout=120)

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
        assert len(results) == 50
        for i, result in results.items():
            assert result.model == f"sim/m{i % 4}"
            assert result.stop_reason == "final_answer"
            assert len(result.tool_calls) == 1
            assert {c.server for c in result.tool_calls} == {("echo", "time")[i % 2]}
        assert sum(len(sim.requests(f"sim/m{i}")) for i in range(4)) == 100


async def test_real_llama_run_calls_get_current_time(tmp_path: Path, llama_server: Any, time_server: list[str]) -> None:
    """SmolLM2 with a tool-capable template and a few-shot prompt completes a run that calls get_current_time."""
    from tests.peers import tool_use_few_shot

    shots = tool_use_few_shot("Madrid")
    path = mcp_json(tmp_path, {"time": time_server})
    settings = BridgeSettings(
        servers=[ServerSettings(url=llama_server.base_url, name="llama")],
        children=ChildSettings(config_paths=[str(path)], discover=False, watch=False),
    )
    async with open_bridge(settings) as bridge:
        assert bridge.planner is not None
        result = await bridge.planner.ask(
            RunTask(
                task=shots[-1]["content"],
                servers=["time"],
                system_prompt=shots[0]["content"],
                examples=shots[1:-1],
                temperature=0,
                max_tokens=64,
                max_rounds=3,
            ),
            timeout=120,
        )
    assert result.tool_calls
    assert result.tool_calls[0].tool == "get_current_time"
    assert result.tool_calls[0].ok
    assert result.rounds >= 2
    assert result.model == llama_server.model


async def test_direct_chat_still_works_beside_runs(tmp_path: Path) -> None:
    """The planner shares the registry with plain chats."""
    async with running(tmp_path, {"echo": echo_server()}) as (_, bridge):
        reply = await bridge.registry.ask(Chat(model=MODEL, messages=[ChatMessage(role="user", content="hi")]))
        assert reply.content
