"""Tool calls on llama-cpp-python's function-calling chat formats (the simulator's ``function_calling_format``).

There the tools reach the prompt only when ``tool_choice`` is given, and a streamed
request with tools is refused: with HTTP 500 "Automatic streaming tool choice is not
supported", or, as llama-cpp-python 0.3.36 does once the model picks a tool, with an empty
200 stream after which the server closes the connection. The bridge sends ``tool_choice:
"auto"`` whenever there are tools, asks again without streaming when refused (on a fresh
connection), and remembers that per server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.app import open_bridge
from bridge.llm import ChatMessage, FunctionSpec, Tool
from bridge.messages import Chat
from bridge.settings import RetrySettings, ServerSettings
from bridge.sim import SimConfig, SimModel, SimServer
from tests.test_llm_path import QWEN, settings_for, user
from tests.test_planner_runs import MODEL, echo_server, run, running

LOOKUP = Tool(function=FunctionSpec(name="lookup", parameters={"type": "object", "properties": {}}))
LLAMA_CPP_PYTHON_MODEL = SimModel(
    id=MODEL, loaded=True, context_length=8192, auto_tool_calls=True, function_calling_format=True, reply_tokens=4
)


REFUSALS: dict[str, dict[str, object]] = {
    "http_500": {},
    # llama-cpp-python 0.3.36: an empty 200 stream, then the connection closes.
    "empty_stream": {"streamed_tool_choice": "empty_stream", "close_after_empty_stream": True},
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
async def test_an_autonomous_run_calls_tools_on_a_function_calling_format(tmp_path: Path, refusal: str) -> None:
    """Regression: the planner streamed without tool_choice, so the model never saw the tools."""
    sim_config = REFUSALS[refusal]
    async with running(tmp_path, {"echo": echo_server()}, (LLAMA_CPP_PYTHON_MODEL,), **sim_config) as (sim, bridge):
        first = await run(bridge, "echo something", servers=["echo"])
        second = await run(bridge, "echo again", servers=["echo"])
        bodies = [r.body for r in sim.requests(MODEL)]
    for result in (first, second):
        assert result.stop_reason == "final_answer", result
        assert [c.ok for c in result.tool_calls] == [True]
    assert all(body.get("tool_choice") == "auto" for body in bodies)
    # The first turn was refused streamed and asked again; every later turn went unstreamed at once.
    assert [bool(body.get("stream")) for body in bodies] == [True, False, False, False, False]


async def test_a_plain_chat_without_tools_still_streams(tmp_path: Path) -> None:
    async with running(tmp_path, {"echo": echo_server()}, (LLAMA_CPP_PYTHON_MODEL,)) as (sim, bridge):
        reply = await bridge.registry.ask(Chat(model=MODEL, messages=[ChatMessage(role="user", content="hi")]))
        (request,) = sim.requests(MODEL)
    assert reply.finish_reason == "stop"
    assert request.body.get("stream") is True
    assert "tool_choice" not in request.body


async def test_an_empty_stream_for_a_streamed_tool_choice_is_asked_unstreamed_and_remembered() -> None:
    """Regression: llama-cpp-python 0.3.36 refuses a streamed tool choice with an empty 200 stream and then
    closes the connection. The unstreamed question went out on that connection (backend_unavailable), and
    nothing was learnt, so every later call with tools streamed again."""
    model = SimModel(id=QWEN, loaded=True, auto_tool_calls=True, function_calling_format=True, reply_tokens=4)
    config = SimConfig(
        models=(model,), api="openai", streamed_tool_choice="empty_stream", close_after_empty_stream=True
    )
    async with SimServer(config) as sim:
        server = ServerSettings(url=sim.url, name="sim", max_concurrent=1)
        settings = settings_for(sim.url, servers=[server], retry=RetrySettings(attempts=1))
        async with open_bridge(settings, child_servers=False) as bridge:
            chat = Chat(model=QWEN, messages=user("look it up"), tools=[LOOKUP])
            results = [await bridge.registry.ask(chat) for _ in range(3)]
        bodies = [r.body for r in sim.requests(QWEN)]
    for result in results:
        assert result.finish_reason == "tool_calls", result
        assert [call.name for call in result.tool_calls] == ["lookup"]
    assert all(body.get("tool_choice") == "auto" for body in bodies)
    # Streamed once, asked again unstreamed; every later call with tools goes unstreamed at once.
    assert [bool(body.get("stream")) for body in bodies] == [True, False, False, False]
