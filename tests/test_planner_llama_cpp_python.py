"""Autonomous runs on a server that behaves like llama-cpp-python's (issue: real servers, item 8).

It sends no usage in streams (the simulator's ``stream_usage=False``), so the run counts
tokens itself and says they are estimated; and a run stopped on a loop of text tool calls
returns a clear stop message and the trace, not the raw ``<tool_call>`` markup.
"""

from __future__ import annotations

import json
from pathlib import Path

from bridge.frontend._format import run_output
from bridge.sim import Raw, SimModel
from tests.test_planner_runs import MODEL, echo_server, run, running


async def test_a_run_without_usage_from_the_server_counts_its_tokens(tmp_path: Path) -> None:
    """Regression: the run reported 0 prompt and 0 completion tokens."""
    model = SimModel(id=MODEL, loaded=True, context_length=8192, auto_tool_calls=True, reply_tokens=5)
    async with running(tmp_path, {"echo": echo_server()}, (model,), stream_usage=False) as (_sim, bridge):
        result = await run(bridge, "echo something", servers=["echo"])
    assert result.stop_reason == "final_answer"
    assert result.prompt_tokens > 0
    assert result.completion_tokens > 0
    assert result.tokens_estimated is True


async def test_a_run_with_usage_from_the_server_uses_it(tmp_path: Path) -> None:
    model = SimModel(id=MODEL, loaded=True, context_length=8192, auto_tool_calls=True, reply_tokens=5)
    async with running(tmp_path, {"echo": echo_server()}, (model,)) as (_sim, bridge):
        result = await run(bridge, "echo something", servers=["echo"])
    assert result.prompt_tokens > 0
    assert result.tokens_estimated is False


async def test_a_loop_of_text_tool_calls_returns_a_stop_message_not_the_markup(tmp_path: Path) -> None:
    """Regression: the answer of a run stopped on a loop was the raw <tool_call> text."""
    call = Raw("<tool_call>" + json.dumps({"name": "echo", "arguments": {"text": "again"}}) + "</tool_call>")
    async with running(tmp_path, {"echo": echo_server()}) as (sim, bridge):
        sim.script(MODEL, [call, call, call])
        result = await run(bridge)
    assert result.stop_reason == "loop"
    assert "<tool_call>" not in result.answer
    output = run_output(result)
    assert "<tool_call>" not in output.text
    assert output.text.startswith("(no final answer: the model repeated the same tool call")
    assert "round 2: echo.echo ok" in output.text
