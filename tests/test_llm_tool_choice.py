"""Tool calls on llama-cpp-python's function-calling chat formats (the simulator's ``function_calling_format``).

There the tools reach the prompt only when ``tool_choice`` is given, and a streamed
request with tools is refused with HTTP 500 "Automatic streaming tool choice is not
supported". The bridge sends ``tool_choice: "auto"`` whenever there are tools, asks
again without streaming when refused, and remembers that per server.
"""

from __future__ import annotations

from pathlib import Path

from bridge.llm import ChatMessage
from bridge.messages import Chat
from bridge.sim import SimModel
from tests.test_planner_runs import MODEL, echo_server, run, running

LLAMA_CPP_PYTHON_MODEL = SimModel(
    id=MODEL, loaded=True, context_length=8192, auto_tool_calls=True, function_calling_format=True, reply_tokens=4
)


async def test_an_autonomous_run_calls_tools_on_a_function_calling_format(tmp_path: Path) -> None:
    """Regression: the planner streamed without tool_choice, so the model never saw the tools."""
    async with running(tmp_path, {"echo": echo_server()}, (LLAMA_CPP_PYTHON_MODEL,)) as (sim, bridge):
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
