"""The simulator's llama-cpp-python habits that a real server (llama-cpp-python 0.3.36) showed.

After an empty stream its uvicorn closes the connection (``close_after_empty_stream``); a
streamed ``tool_choice: "auto"`` whose model picks a tool ends empty (``streamed_tool_choice``);
and ``GET /v1/models`` takes the lock its generations hold (``listing_takes_turn``), so a
listing cuts a running stream when ``interrupt_requests`` is on.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from bridge.sim import FaultKind, Say, SimConfig, SimModel, SimServer

USER = [{"role": "user", "content": "hello"}]
LONG = [{"role": "user", "content": "word " * 200}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


def _config(**overrides: Any) -> SimConfig:
    model = SimModel(
        id="m", loaded=True, context_length=64, reply_tokens=4, auto_tool_calls=True, function_calling_format=True
    )
    return SimConfig(models=(model,), overflow_style="llama-cpp-python", api="openai", **overrides)


async def _streamed(client: httpx.AsyncClient, **body: Any) -> tuple[int, list[str]]:
    async with client.stream("POST", "/v1/chat/completions", json={"model": "m", "stream": True, **body}) as reply:
        return reply.status_code, [line async for line in reply.aiter_lines() if line]


@pytest.mark.parametrize("close", [True, False])
async def test_an_empty_stream_can_close_its_connection(close: bool) -> None:
    """With the switch, the next request on the connection is never answered; a new connection is."""
    async with (
        SimServer(_config(close_after_empty_stream=close)) as sim,
        httpx.AsyncClient(base_url=sim.url, timeout=10) as client,
    ):
        assert await _streamed(client, messages=LONG) == (200, [])
        if close:
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await client.post("/v1/chat/completions", json={"model": "m", "messages": USER})
        reply = await client.post("/v1/chat/completions", json={"model": "m", "messages": USER})
    assert reply.json()["choices"][0]["finish_reason"] == "stop"


async def test_a_streamed_tool_choice_ends_empty_when_the_model_calls_a_tool() -> None:
    async with (
        SimServer(_config(streamed_tool_choice="empty_stream")) as sim,
        httpx.AsyncClient(base_url=sim.url, timeout=10) as client,
    ):
        with_tools = {"messages": USER, "tools": [TOOL], "tool_choice": "auto"}
        refused = await _streamed(client, **with_tools)
        whole = await client.post("/v1/chat/completions", json={"model": "m", **with_tools})
        sim.script("m", [Say("no tool needed")])
        status, words = await _streamed(client, **with_tools)
    assert refused == (200, [])
    assert whole.json()["choices"][0]["finish_reason"] == "tool_calls"
    assert [call["function"]["name"] for call in whole.json()["choices"][0]["message"]["tool_calls"]] == ["lookup"]
    # A model that answers in words streams its answer.
    assert status == 200
    assert words[-1] == "data: [DONE]"
    assert '"finish_reason":"stop"' in words[-2].replace(" ", "")


async def test_the_refusal_is_still_a_500_by_default() -> None:
    async with SimServer(_config()) as sim, httpx.AsyncClient(base_url=sim.url, timeout=10) as client:
        body = {"model": "m", "messages": USER, "tools": [TOOL], "tool_choice": "auto", "stream": True}
        refused = await client.post("/v1/chat/completions", json=body)
    assert refused.status_code == 500
    assert "Automatic streaming tool choice is not supported" in refused.text


async def test_a_listing_takes_the_generation_lock_and_cuts_a_running_stream() -> None:
    model = SimModel(id="m", loaded=True, reply_tokens=40, tokens_per_s=4.0)
    config = SimConfig(models=(model,), server_parallel=1, interrupt_requests=True, listing_takes_turn=True)
    body = {"model": "m", "messages": USER, "stream": True}
    async with SimServer(config) as sim, httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
        async with client.stream("POST", "/v1/chat/completions", json=body) as running:
            lines = running.aiter_lines()
            async for line in lines:
                if '"content"' in line:
                    break  # the generation is running
            listing = await client.get("/v1/models")
            rest = [line async for line in lines if line]
        interrupts = sim.stats.total.faults.get(FaultKind.INTERRUPT, 0)
    assert [m["id"] for m in listing.json()["data"]] == ["m"]
    assert rest[-1] == "data: [DONE]"
    assert all(json.loads(line[6:])["choices"][0]["finish_reason"] is None for line in rest[:-1])
    assert interrupts == 1
