"""Fault injection in the simulator, scripted and random."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bridge.sim import CallTools, Fault, FaultKind, Say, SimConfig, SimModel, SimServer, ToolCallSpec
from bridge.sim.testing import read_sse, wait_until

USER = [{"role": "user", "content": "hello"}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
STREAM = {"model": "m", "messages": USER, "stream": True}
MODEL = SimModel(id="m", loaded=True, reply_tokens=6)


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(SimConfig(models=(MODEL,))) as server:
        yield server


@pytest.fixture
async def client(sim: SimServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url, timeout=httpx.Timeout(10, read=0.3)) as http:
        yield http


async def post(client: httpx.AsyncClient, **extra: Any) -> httpx.Response:
    return await client.post("/v1/chat/completions", json={"model": "m", "messages": USER, **extra})


async def stream_lines(client: httpx.AsyncClient, **extra: Any) -> tuple[list[str], Exception | None]:
    """The data lines of a streamed reply, and the transport error that ended it, if any."""
    body = {"model": "m", "messages": USER, "stream": True, **extra}
    lines: list[str] = []
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line:
                    lines.append(line)
    except httpx.TransportError as exc:
        return lines, exc
    return lines, None


def contents(lines: list[str]) -> list[str]:
    return [json.loads(line[6:])["choices"][0]["delta"].get("content", "") for line in lines if '"delta"' in line]


async def test_http_500(sim: SimServer, client: httpx.AsyncClient) -> None:
    """An http_500 fault answers 500 with an OpenAI-style error, then the next request is normal."""
    sim.script("m", [Fault(FaultKind.HTTP_500)])
    failed = await post(client)
    assert failed.status_code == 500
    assert failed.json()["error"]["type"] == "server_error"
    assert (await post(client)).status_code == 200
    assert sim.stats.model("m").faults == {FaultKind.HTTP_500: 1}
    assert (sim.stats.model("m").errors, sim.stats.model("m").completed) == (1, 1)


async def test_rate_limit_has_retry_after(sim: SimServer, client: httpx.AsyncClient) -> None:
    """A rate_limit fault is a 429 with Retry-After in seconds."""
    sim.script("m", [Fault(FaultKind.RATE_LIMIT, retry_after=2), Fault(FaultKind.RATE_LIMIT, retry_after=0.25)])
    first, second = await post(client), await post(client)
    assert (first.status_code, first.headers["retry-after"]) == (429, "2")
    assert second.headers["retry-after"] == "0.25"
    assert first.json()["error"]["code"] == "rate_limit_exceeded"


async def test_error_body_with_http_200(sim: SimServer, client: httpx.AsyncClient) -> None:
    """An error_body fault answers HTTP 200 with {"error": …}, even to a stream request."""
    sim.script("m", [Fault(FaultKind.ERROR_BODY), Fault(FaultKind.ERROR_BODY, message="Boom.")])
    plain = await post(client)
    assert (plain.status_code, plain.json()) == (200, {"error": "Compute error."})
    streamed = await post(client, stream=True)
    assert streamed.headers["content-type"].startswith("application/json")
    assert streamed.json() == {"error": "Boom."}


async def test_no_answer_holds_the_request_until_the_client_leaves(sim: SimServer, client: httpx.AsyncClient) -> None:
    """A no_answer fault never replies; the client times out and the server counts a disconnect."""
    sim.script("m", [Fault(FaultKind.NO_ANSWER)])
    with pytest.raises(httpx.ReadTimeout):
        await post(client)
    await wait_until(lambda: sim.stats.model("m").disconnects == 1)
    assert sim.stats.model("m").in_progress == 0


async def test_drop_mid_stream(sim: SimServer, client: httpx.AsyncClient) -> None:
    """A drop fault closes the connection after N tokens without finishing the chunked stream."""
    sim.script("m", [Fault(FaultKind.DROP, after_tokens=2)])
    lines, error = await stream_lines(client)
    assert isinstance(error, httpx.RemoteProtocolError)
    assert len(contents(lines)) == 2
    assert "data: [DONE]" not in lines
    await wait_until(lambda: sim.stats.model("m").in_progress == 0)
    assert sim.stats.model("m").errors == 1


async def test_drop_without_reply(sim: SimServer, client: httpx.AsyncClient) -> None:
    """A drop fault on a non-streamed request closes the connection with no reply at all."""
    sim.script("m", [Fault(FaultKind.DROP)])
    with pytest.raises(httpx.RemoteProtocolError):
        await post(client)
    assert (await post(client)).status_code == 200


async def test_stall_then_resume(sim: SimServer, client: httpx.AsyncClient) -> None:
    """A stall for some seconds pauses the stream, which then completes normally."""
    sim.script("m", [Fault(FaultKind.STALL, seconds=0.05, after_tokens=1)])
    lines, error = await stream_lines(client)
    assert error is None
    assert len(contents(lines)) == 7  # six tokens and the final delta {}
    assert lines[-1] == "data: [DONE]"


async def test_stall_forever_keeps_the_connection_open(sim: SimServer, client: httpx.AsyncClient) -> None:
    """A stall without end sends nothing more until the client gives up, which counts as a disconnect."""
    sim.script("m", [Fault(FaultKind.STALL, seconds=None, after_tokens=3)])
    lines, error = await stream_lines(client)
    assert isinstance(error, httpx.ReadTimeout)
    assert len(contents(lines)) == 3
    await wait_until(lambda: sim.stats.model("m").disconnects == 1)
    assert sim.stats.model("m").disconnect_log[0].tokens_sent == 3


async def test_model_unloaded_fault(sim: SimServer, client: httpx.AsyncClient) -> None:
    """model_unloaded: an error frame mid-stream; a 400 string error when not streamed."""
    sim.script("m", [Fault(FaultKind.MODEL_UNLOADED, after_tokens=2), Fault(FaultKind.MODEL_UNLOADED)])
    async with client.stream("POST", "/v1/chat/completions", json=STREAM) as r:
        events = await read_sse(r)
    assert len(events) == 3
    assert (events[-1].event, json.loads(events[-1].data)["error"]["message"]) == ("error", "Model unloaded.")
    plain = await post(client)
    assert (plain.status_code, plain.json()) == (400, {"error": "Model unloaded."})


async def test_context_overflow_fault_in_a_200_stream(sim: SimServer, client: httpx.AsyncClient) -> None:
    """context_overflow: LM Studio's `event: error` frame inside an HTTP 200 stream."""
    sim.script("m", [Fault(FaultKind.CONTEXT_OVERFLOW, after_tokens=0)])
    async with client.stream("POST", "/v1/chat/completions", json=STREAM) as r:
        assert r.status_code == 200
        [event] = await read_sse(r)
    payload = json.loads(event.data)
    assert event.event == "error"
    assert payload["error"]["message"].startswith("Input does not fit in context length.")
    assert payload["message"] == payload["error"]["message"]


async def test_malformed_tool_call(sim: SimServer, client: httpx.AsyncClient) -> None:
    """malformed_tool_call: a native call to the request's tool whose arguments are not valid JSON."""
    sim.script("m", [Fault(FaultKind.MALFORMED_TOOL_CALL)])
    reply = (await post(client, tools=[TOOL])).json()
    call = reply["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "lookup"
    with pytest.raises(json.JSONDecodeError):
        json.loads(call["function"]["arguments"])
    assert reply["choices"][0]["finish_reason"] == "tool_calls"


async def test_empty_tool_calls_fault_and_config(sim: SimServer, client: httpx.AsyncClient) -> None:
    """empty_tool_calls adds `tool_calls: []` to a plain reply, per request or for every reply."""
    sim.script("m", [Fault(FaultKind.EMPTY_TOOL_CALLS)])
    quirky = (await post(client)).json()["choices"][0]
    assert quirky["message"]["tool_calls"] == []
    assert quirky["finish_reason"] == "stop"
    assert "tool_calls" not in (await post(client)).json()["choices"][0]["message"]
    async with SimServer(SimConfig(models=(MODEL,), empty_tool_calls=True)) as always:
        async with httpx.AsyncClient(base_url=always.url) as other:
            replies = [(await post(other)).json() for _ in range(2)]
    assert all(r["choices"][0]["message"]["tool_calls"] == [] for r in replies)


async def test_scripted_malformed_arguments_in_call_tools(sim: SimServer, client: httpx.AsyncClient) -> None:
    """CallTools sends arguments verbatim, so a test can script its own broken JSON."""
    sim.script("m", [CallTools([ToolCallSpec("lookup", '{"q": ')])])
    reply = (await post(client)).json()
    assert reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"q": '


async def test_random_faults_at_rate_one(client: httpx.AsyncClient) -> None:
    """A fault with rate 1 hits every request, except where a scripted turn answers instead."""
    config = SimConfig(models=(MODEL,), fault_rates={FaultKind.HTTP_500: 1.0})
    async with SimServer(config) as sim, httpx.AsyncClient(base_url=sim.url) as http:
        statuses = [(await post(http)).status_code for _ in range(4)]
        assert statuses == [500] * 4
        sim.script("m", [Fault(FaultKind.RATE_LIMIT)])
        assert (await post(http)).status_code == 429
        assert sim.stats.total.faults == {FaultKind.HTTP_500: 4, FaultKind.RATE_LIMIT: 1}


async def test_random_faults_repeat_with_the_seed() -> None:
    """The same seed injects the same faults in the same order; another seed differs."""
    rates = {FaultKind.HTTP_500: 0.3, FaultKind.RATE_LIMIT: 0.3}

    async def statuses(seed: int) -> list[int]:
        config = SimConfig(models=(MODEL,), fault_rates=rates, seed=seed)
        async with SimServer(config) as sim, httpx.AsyncClient(base_url=sim.url) as http:
            return [(await post(http)).status_code for _ in range(30)]

    first, again, other = await statuses(7), await statuses(7), await statuses(8)
    assert first == again
    assert first != other
    assert {200, 429, 500} <= set(first)


async def test_random_fault_kinds_that_do_not_apply_are_skipped() -> None:
    """A malformed-tool-call draw on a request without tools injects nothing."""
    config = SimConfig(models=(MODEL,), fault_rates={FaultKind.MALFORMED_TOOL_CALL: 1.0})
    async with SimServer(config) as sim, httpx.AsyncClient(base_url=sim.url) as http:
        plain = (await post(http)).json()["choices"][0]
        with_tools = (await post(http, tools=[TOOL])).json()["choices"][0]
    assert plain["finish_reason"] == "stop"
    assert with_tools["finish_reason"] == "tool_calls"


async def test_unresponsive_server(sim: SimServer) -> None:
    """An unresponsive server accepts connections and never answers; switching back serves new ones."""
    sim.unresponsive = True
    async with httpx.AsyncClient(base_url=sim.url, timeout=httpx.Timeout(5, read=0.1)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/v1/models")
    sim.unresponsive = False
    async with httpx.AsyncClient(base_url=sim.url) as http:
        assert (await http.get("/v1/models")).status_code == 200
    assert sim.stats.http_requests == 1


async def test_scripted_turns_and_faults_share_one_queue(sim: SimServer, client: httpx.AsyncClient) -> None:
    """Faults are turns: they are taken in order with the replies."""
    sim.script("m", [Say("first"), Fault(FaultKind.HTTP_500), Say("third")])
    replies = [await post(client) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 500, 200]
    assert replies[2].json()["choices"][0]["message"]["content"] == "third"
