"""The simulated LM Studio's routes and wire formats (run on asyncio and trio)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from bridge.sim import (
    CallTools,
    Raw,
    Say,
    SimConfig,
    SimModel,
    SimServer,
    ToolCallSpec,
    default_config,
)
from bridge.sim.testing import SseEvent, read_sse

QWEN = "qwen/qwen3-coder-30b"
GEMMA = "google/gemma-3-12b"
OSS = "openai/gpt-oss-20b"
EMBED = "text-embedding-nomic-embed-text-v1.5"
USER = [{"role": "user", "content": "Please summarise the design notes"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(default_config()) as server:
        yield server


@pytest.fixture
async def client(sim: SimServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url, timeout=10) as http:
        yield http


async def stream(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[SseEvent]:
    async with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        return await read_sse(response)


def chunks(events: list[SseEvent]) -> list[dict[str, Any]]:
    """The JSON chunks of a chat stream, checking it ends with [DONE]."""
    assert events[-1].data == "[DONE]"
    return [json.loads(e.data) for e in events[:-1]]


def content_of(parsed: list[dict[str, Any]], field: str = "content") -> str:
    return "".join(c["choices"][0]["delta"].get(field, "") for c in parsed if c["choices"])


# --- basics -----------------------------------------------------------------------------
async def test_greeting(client: httpx.AsyncClient) -> None:
    """The SDK probe answers {"lmstudio": true}."""
    response = await client.get("/lmstudio-greeting")
    assert response.json() == {"lmstudio": True}


async def test_url_and_port(sim: SimServer) -> None:
    """The URL is loopback with the bound port."""
    assert sim.port > 0
    assert sim.url == f"http://127.0.0.1:{sim.port}"


async def test_models_lists_every_downloaded_model_with_jit(client: httpx.AsyncClient) -> None:
    """With JIT on, /v1/models lists loaded and unloaded models, in OpenAI's shape without context length."""
    body = (await client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [QWEN, GEMMA, OSS, "qwen/qwen2.5-vl-7b", EMBED]
    assert body["data"][0] == {"id": QWEN, "object": "model", "owned_by": "organization_owner"}


async def test_models_lists_only_loaded_without_jit() -> None:
    """With JIT off, only loaded models are listed."""
    async with SimServer(default_config(jit=False)) as sim, httpx.AsyncClient(base_url=sim.url) as client:
        ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
    assert ids == [QWEN, EMBED]


@pytest.mark.parametrize(("method", "path"), [("POST", "/chat/completions"), ("GET", "/v1/chat/completions")])
async def test_unknown_route_is_http_200_with_error(client: httpx.AsyncClient, method: str, path: str) -> None:
    """A wrong route or method answers 200 with LM Studio's error string."""
    response = await client.request(method, path)
    assert response.status_code == 200
    assert response.json() == {"error": f"Unexpected endpoint or method. ({method} {path})"}
    assert response.headers["x-powered-by"] == "Express"


async def test_unknown_model_is_400_model_not_found(client: httpx.AsyncClient) -> None:
    """An unknown model id gets the OpenAI-style model_not_found object listing what exists."""
    response = await client.post("/v1/chat/completions", json={"model": "nope/x", "messages": USER})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith('Invalid model identifier "nope/x". Please specify a valid downloaded model')
    assert QWEN in error["message"]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": QWEN}, "messages", "missing_required_parameter"),
        ({"model": QWEN, "messages": USER, "temperature": "hot"}, "temperature", "invalid_type"),
        ({"model": QWEN, "messages": USER, "stream": "yes"}, "stream", "invalid_type"),
        ({"model": QWEN, "messages": [{"content": "x"}]}, "messages.0.role", "missing_required_parameter"),
        ({"model": QWEN, "messages": USER, "response_format": {"type": "json_object"}}, "response_format.type", None),
        ({"model": QWEN, "messages": USER, "max_tokens": 0}, "max_tokens", "invalid_value"),
    ],
)
async def test_validation_errors_are_openai_objects(
    client: httpx.AsyncClient, body: dict[str, Any], param: str, code: str | None
) -> None:
    """Bad parameters get 400 with an OpenAI-style error naming the parameter."""
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    if code is not None:
        assert error["code"] == code


async def test_malformed_json_body_is_400(client: httpx.AsyncClient) -> None:
    """A body that is not JSON is a 400, not a crash."""
    response = await client.post("/v1/chat/completions", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


# --- chat completions -------------------------------------------------------------------
async def test_chat_reply_shape_and_determinism(client: httpx.AsyncClient) -> None:
    """A non-streamed reply has LM Studio's shape, and the same request gets the same text."""
    first = (await client.post("/v1/chat/completions", json={"model": QWEN, "messages": USER})).json()
    second = (await client.post("/v1/chat/completions", json={"model": QWEN, "messages": USER})).json()
    assert re.fullmatch(r"chatcmpl-[a-z0-9]{20}", first["id"])
    assert first["id"] != second["id"]
    assert first["object"] == "chat.completion"
    assert first["model"] == QWEN
    assert first["system_fingerprint"] == QWEN
    assert first["stats"] == {}
    choice = first["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    assert choice["message"]["role"] == "assistant"
    assert "summarise" in choice["message"]["content"]
    assert "tool_calls" not in choice["message"]
    assert choice["message"]["content"] == second["choices"][0]["message"]["content"]
    usage = first["usage"]
    assert usage["completion_tokens"] == 24
    assert usage["total_tokens"] == usage["prompt_tokens"] + 24


async def test_chat_stream_framing(client: httpx.AsyncClient) -> None:
    """Every delta carries role assistant; the last chunk is delta {} with finish_reason; then [DONE]."""
    plain = (await client.post("/v1/chat/completions", json={"model": QWEN, "messages": USER})).json()
    parsed = chunks(await stream(client, "/v1/chat/completions", {"model": QWEN, "messages": USER}))
    assert len({c["id"] for c in parsed}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in parsed)
    body, last = parsed[:-1], parsed[-1]
    assert len(body) == 24
    assert all(c["choices"][0]["delta"]["role"] == "assistant" for c in body)
    assert all(c["choices"][0]["finish_reason"] is None for c in body)
    assert last["choices"][0]["delta"] == {}
    assert last["choices"][0]["finish_reason"] == "stop"
    assert content_of(parsed) == plain["choices"][0]["message"]["content"]


async def test_chat_stream_usage_chunk(client: httpx.AsyncClient) -> None:
    """stream_options.include_usage adds a choices:[] chunk with usage before [DONE]."""
    body = {"model": QWEN, "messages": USER, "stream_options": {"include_usage": True}, "max_tokens": 5}
    parsed = chunks(await stream(client, "/v1/chat/completions", body))
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"]["completion_tokens"] == 5
    assert parsed[-2]["choices"][0]["finish_reason"] == "length"
    without = chunks(await stream(client, "/v1/chat/completions", {"model": QWEN, "messages": USER}))
    assert all("usage" not in c for c in without)


async def test_max_tokens_cuts_with_finish_reason_length(client: httpx.AsyncClient) -> None:
    """max_tokens stops the reply early with finish_reason length; -1 means no limit."""
    cut = (await client.post("/v1/chat/completions", json={"model": QWEN, "messages": USER, "max_tokens": 3})).json()
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 3
    unlimited = {"model": QWEN, "messages": USER, "max_tokens": -1}
    full = (await client.post("/v1/chat/completions", json=unlimited)).json()
    assert full["choices"][0]["finish_reason"] == "stop"


async def test_reasoning_field_for_gpt_oss(client: httpx.AsyncClient) -> None:
    """gpt-oss puts its reasoning in `reasoning` (message and delta), before the content."""
    body = {"model": OSS, "messages": USER}
    reply = (await client.post("/v1/chat/completions", json=body)).json()["choices"][0]["message"]
    assert reply["reasoning"].startswith("Thinking about:")
    assert "reasoning_content" not in reply
    parsed = chunks(await stream(client, "/v1/chat/completions", body))
    assert content_of(parsed, "reasoning") == reply["reasoning"]
    fields = [next(k for k in c["choices"][0]["delta"] if k != "role") for c in parsed[:-1]]
    assert fields == sorted(fields, key=lambda f: f != "reasoning")  # all reasoning first


async def test_reasoning_content_field_and_effort_none() -> None:
    """The reasoning_content mode uses that field; reasoning_effort "none" turns reasoning off."""
    model = SimModel(id="qwen/qwen3.5-9b", reasoning="reasoning_content", loaded=True)
    async with SimServer(SimConfig(models=(model,))) as sim, httpx.AsyncClient(base_url=sim.url) as client:
        on = (await client.post("/v1/chat/completions", json={"model": model.id, "messages": USER})).json()
        body = {"model": model.id, "messages": USER, "reasoning_effort": "none"}
        off = (await client.post("/v1/chat/completions", json=body)).json()
    assert on["choices"][0]["message"]["reasoning_content"].startswith("Thinking about:")
    assert "reasoning_content" not in off["choices"][0]["message"]


async def test_think_mode_inlines_reasoning(client: httpx.AsyncClient) -> None:
    """A model in think mode puts <think>…</think> at the start of content."""
    reply = (await client.post("/v1/chat/completions", json={"model": GEMMA, "messages": USER})).json()
    content = reply["choices"][0]["message"]["content"]
    assert re.match(r"<think>Thinking about:.*</think>\n\nReply to:", content, re.S)


async def test_scripted_say_with_reasoning(sim: SimServer, client: httpx.AsyncClient) -> None:
    """Say(text, reasoning=…) replaces both the answer and the reasoning."""
    sim.script(OSS, [Say("The answer is 42.", reasoning="Six times seven.")])
    reply = (await client.post("/v1/chat/completions", json={"model": OSS, "messages": USER})).json()
    assert reply["choices"][0]["message"] == {
        "role": "assistant",
        "content": "The answer is 42.",
        "reasoning": "Six times seven.",
    }


# --- tool calls ----------------------------------------------------------------------------
async def test_native_tool_call_stream_deltas(sim: SimServer, client: httpx.AsyncClient) -> None:
    """A native call streams id/type/name with empty arguments first, then argument fragments only."""
    arguments = '{"city": "Paris", "days": 3}'
    sim.script(QWEN, [CallTools([ToolCallSpec("get_weather", arguments)])])
    parsed = chunks(await stream(client, "/v1/chat/completions", {"model": QWEN, "messages": USER, "tools": []}))
    deltas = [c["choices"][0]["delta"] for c in parsed[:-1]]
    assert all(d["role"] == "assistant" for d in deltas)
    first = deltas[0]["tool_calls"][0]
    assert first["index"] == 0
    assert first["id"].isdigit()
    assert first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    rest = [d["tool_calls"][0] for d in deltas[1:]]
    assert len(rest) > 1
    assert all(set(call) == {"index", "function"} and set(call["function"]) == {"arguments"} for call in rest)
    assert "".join(call["function"]["arguments"] for call in rest) == arguments
    assert parsed[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}


async def test_parallel_native_tool_calls(sim: SimServer, client: httpx.AsyncClient) -> None:
    """Several calls use index 0, 1 … and keep their given ids; non-streamed they land in message.tool_calls."""
    calls = [ToolCallSpec("a", "{}", id="111"), ToolCallSpec("b", {"x": 1}, id="222")]
    sim.script(QWEN, [CallTools(calls), CallTools(calls)])
    reply = (await client.post("/v1/chat/completions", json={"model": QWEN, "messages": USER})).json()
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [
        {"id": "111", "type": "function", "function": {"name": "a", "arguments": "{}"}},
        {"id": "222", "type": "function", "function": {"name": "b", "arguments": '{"x":1}'}},
    ]
    assert "content" not in choice["message"]
    parsed = chunks(await stream(client, "/v1/chat/completions", {"model": QWEN, "messages": USER}))
    starts = [d["tool_calls"][0] for c in parsed[:-1] if "id" in (d := c["choices"][0]["delta"])["tool_calls"][0]]
    assert [(s["index"], s["id"]) for s in starts] == [(0, "111"), (1, "222")]


async def test_text_style_tool_call_and_raw(sim: SimServer, client: httpx.AsyncClient) -> None:
    """Text-style calls and Raw turns come back as exact content with finish_reason stop."""
    raw = '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    sim.script(
        QWEN,
        [CallTools([ToolCallSpec("get_weather", '{"city":"Oslo"}')], style="text", content="Checking. "), Raw(raw)],
    )
    first = (await client.post("/v1/chat/completions", json={"model": QWEN, "messages": USER})).json()
    message = first["choices"][0]["message"]
    expected = '[TOOL_REQUEST]{"name":"get_weather","arguments":{"city":"Oslo"}}[END_TOOL_REQUEST]'
    assert message["content"] == "Checking. " + expected
    assert first["choices"][0]["finish_reason"] == "stop"
    parsed = chunks(await stream(client, "/v1/chat/completions", {"model": QWEN, "messages": USER}))
    assert content_of(parsed) == raw


async def test_auto_tool_calls_follow_the_schema_then_answer() -> None:
    """An auto_tool_calls model calls the first tool with schema-valid arguments, then answers the tool result."""
    model = SimModel(id="m", loaded=True, auto_tool_calls=True)
    async with SimServer(SimConfig(models=(model,))) as sim, httpx.AsyncClient(base_url=sim.url) as client:
        body = {"model": "m", "messages": USER, "tools": [WEATHER_TOOL]}
        reply = (await client.post("/v1/chat/completions", json=body)).json()
        call = reply["choices"][0]["message"]["tool_calls"][0]
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {"city": "example"}
        follow = [
            *USER,
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny and warm"},
        ]
        answer = (await client.post("/v1/chat/completions", json={**body, "messages": follow})).json()
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["choices"][0]["message"]["content"].startswith("Noted tool result: sunny and warm")


async def test_json_schema_response_format(client: httpx.AsyncClient) -> None:
    """response_format json_schema yields JSON text matching the schema's required fields."""
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["title", "tags"],
    }
    body = {
        "model": QWEN,
        "messages": USER,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}},
    }
    reply = (await client.post("/v1/chat/completions", json=body)).json()
    assert json.loads(reply["choices"][0]["message"]["content"]) == {"title": "example", "tags": ["example"]}


# --- other endpoints ------------------------------------------------------------------------
async def test_completions_plain_and_streamed(client: httpx.AsyncClient) -> None:
    """/v1/completions answers text_completion objects, streamed as text chunks ending with [DONE]."""
    body = {"model": QWEN, "prompt": "Once upon a time", "max_tokens": 6}
    reply = (await client.post("/v1/completions", json=body)).json()
    assert reply["object"] == "text_completion"
    assert reply["id"].startswith("cmpl-")
    assert reply["choices"][0]["finish_reason"] == "length"
    parsed = chunks(await stream(client, "/v1/completions", body))
    assert "".join(c["choices"][0]["text"] for c in parsed) == reply["choices"][0]["text"]
    assert parsed[-1]["choices"][0]["finish_reason"] == "length"


async def test_v0_chat_adds_stats(client: httpx.AsyncClient) -> None:
    """The native v0 chat route adds stats, model_info and runtime."""
    reply = (await client.post("/api/v0/chat/completions", json={"model": QWEN, "messages": USER})).json()
    assert reply["stats"]["stop_reason"] == "eosFound"
    assert reply["model_info"]["context_length"] == 8192
    assert reply["runtime"]["supported_formats"] == ["gguf"]


async def test_embeddings_are_deterministic_unit_vectors(client: httpx.AsyncClient) -> None:
    """Embeddings accept a string or a list, are unit length, repeatable, and closer for shared words."""
    one = (await client.post("/v1/embeddings", json={"model": EMBED, "input": "red apple pie"})).json()
    many = (
        await client.post("/v1/embeddings", json={"model": EMBED, "input": ["red apple pie", "apple pie", "tax law"]})
    ).json()
    assert one["object"] == "list"
    assert one["model"] == f"{EMBED}@q4_k_m"
    vectors = [d["embedding"] for d in many["data"]]
    assert [d["index"] for d in many["data"]] == [0, 1, 2]
    assert vectors[0] == one["data"][0]["embedding"]
    assert len(vectors[0]) == 768
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])


async def test_embeddings_reject_llm_and_chat_rejects_embedding_model(client: httpx.AsyncClient) -> None:
    """Asking the wrong kind of model is a 400."""
    assert (await client.post("/v1/embeddings", json={"model": QWEN, "input": "x"})).status_code == 400
    response = await client.post("/v1/chat/completions", json={"model": EMBED, "messages": USER})
    assert response.status_code == 400


async def test_responses_state_and_ids(sim: SimServer, client: httpx.AsyncClient) -> None:
    """/v1/responses gives resp_<48 hex> ids and previous_response_id continues the conversation."""
    first = (await client.post("/v1/responses", json={"model": QWEN, "input": "My name is Ada."})).json()
    assert re.fullmatch(r"resp_[0-9a-f]{48}", first["id"])
    assert first["object"] == "response"
    assert first["status"] == "completed"
    message = first["output"][-1]
    assert message["type"] == "message"
    assert message["content"][0]["type"] == "output_text"
    body = {"model": QWEN, "input": "What is my name?", "previous_response_id": first["id"]}
    second = (await client.post("/v1/responses", json=body)).json()
    assert second["previous_response_id"] == first["id"]
    seen = sim.requests(QWEN)[-1].messages
    assert [m["role"] for m in seen] == ["user", "assistant", "user"]
    assert seen[0]["content"] == "My name is Ada."
    assert seen[1]["content"] == message["content"][0]["text"]
    missing = await client.post("/v1/responses", json={**body, "previous_response_id": "resp_nope"})
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "previous_response_id"


async def test_responses_stream_events(client: httpx.AsyncClient) -> None:
    """A streamed response emits created … output_text.delta … completed, with no [DONE]."""
    events = await stream(client, "/v1/responses", {"model": OSS, "input": "hello"})
    names = [e.event for e in events]
    assert names[0] == "response.created"
    assert names[-1] == "response.completed"
    assert "response.reasoning_text.delta" in names
    assert names.index("response.reasoning_text.delta") < names.index("response.output_text.delta")
    assert all(json.loads(e.data)["type"] == e.event for e in events)
    assert [json.loads(e.data)["sequence_number"] for e in events] == list(range(len(events)))
    deltas = "".join(json.loads(e.data)["delta"] for e in events if e.event == "response.output_text.delta")
    final = json.loads(events[-1].data)["response"]
    assert final["output"][-1]["content"][0]["text"] == deltas
    assert final["output"][0]["type"] == "reasoning"


async def test_responses_tools_flat_format_and_function_call(sim: SimServer, client: httpx.AsyncClient) -> None:
    """Flat tools are accepted and calls come back as function_call items; nested chat tools are a 400."""
    flat = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    sim.script(QWEN, [CallTools([ToolCallSpec("get_weather", '{"city":"Rome"}', id="42")])])
    reply = (await client.post("/v1/responses", json={"model": QWEN, "input": "weather?", "tools": [flat]})).json()
    call = reply["output"][-1]
    assert call["type"] == "function_call"
    assert (call["name"], call["arguments"], call["call_id"]) == ("get_weather", '{"city":"Rome"}', "42")
    nested = await client.post("/v1/responses", json={"model": QWEN, "input": "x", "tools": [WEATHER_TOOL]})
    assert nested.status_code == 400
    assert nested.json()["error"]["param"] == "tools.0.name"


async def test_native_model_listings(client: httpx.AsyncClient) -> None:
    """/api/v0/models and /api/v1/models report state, type, context lengths and tool capability."""
    v0 = {m["id"]: m for m in (await client.get("/api/v0/models")).json()["data"]}
    assert v0[QWEN]["state"] == "loaded"
    assert v0[QWEN]["loaded_context_length"] == 8192
    assert v0[QWEN]["capabilities"] == ["tool_use"]
    assert v0[GEMMA]["state"] == "not-loaded"
    assert "loaded_context_length" not in v0[GEMMA]
    assert v0[EMBED]["type"] == "embeddings"
    one = (await client.get(f"/api/v0/models/{OSS}")).json()
    assert one["id"] == OSS
    assert one["max_context_length"] == 131072
    assert (await client.get("/api/v0/models/nope")).status_code == 404
    v1 = {m["key"]: m for m in (await client.get("/api/v1/models")).json()["models"]}
    assert v1[QWEN]["loaded_instances"][0]["config"]["context_length"] == 8192
    assert v1[QWEN]["loaded_instances"][0]["config"]["parallel"] == 4
    assert v1[QWEN]["capabilities"]["trained_for_tool_use"] is True
    assert v1[GEMMA]["capabilities"]["trained_for_tool_use"] is False
    assert v1[GEMMA]["loaded_instances"] == []
    assert v1[EMBED]["type"] == "embedding"
    assert "architecture" not in v1[EMBED]


async def test_load_and_unload_api(sim: SimServer, client: httpx.AsyncClient) -> None:
    """Manual loads create instances (a second one is key:2) and unload removes them."""
    loaded = (await client.post("/api/v1/models/load", json={"model": GEMMA, "context_length": 16384})).json()
    assert loaded["status"] == "loaded"
    assert loaded["instance_id"] == GEMMA
    again = (await client.post("/api/v1/models/load", json={"model": GEMMA})).json()
    assert again["instance_id"] == f"{GEMMA}:2"
    v0 = (await client.get(f"/api/v0/models/{GEMMA}")).json()
    assert v0["loaded_context_length"] == 16384
    ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
    assert f"{GEMMA}:2" in ids
    reply = await client.post("/v1/chat/completions", json={"model": f"{GEMMA}:2", "messages": USER})
    assert reply.json()["model"] == f"{GEMMA}:2"
    assert (await client.post("/api/v1/models/unload", json={"instance_id": GEMMA})).json() == {"instance_id": GEMMA}
    assert (await client.post("/api/v1/models/unload", json={"instance_id": GEMMA})).status_code == 400
    assert sim.stats.model(GEMMA).loads == 2
    assert sim.stats.model(GEMMA).unloads == 1


async def test_bearer_token_auth() -> None:
    """With a token configured, requests need it (401 otherwise); the greeting stays open."""
    async with SimServer(default_config(api_token="sk-lm-test")) as sim, httpx.AsyncClient(base_url=sim.url) as client:
        denied = await client.get("/v1/models")
        allowed = await client.get("/v1/models", headers={"Authorization": "Bearer sk-lm-test"})
        greeting = await client.get("/lmstudio-greeting")
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "invalid_api_key"
    assert allowed.status_code == 200
    assert greeting.status_code == 200


async def test_basic_auth_as_a_proxy_asks() -> None:
    """``basic_auth``: a reverse proxy's user and password; with ``api_token`` too, either header will do."""
    config = default_config(basic_auth="me:s3cret", api_token="sk-lm-test")
    async with SimServer(config) as sim, httpx.AsyncClient(base_url=sim.url) as client:
        basic = await client.get("/v1/models", auth=("me", "s3cret"))
        bearer = await client.get("/v1/models", headers={"Authorization": "Bearer sk-lm-test"})
        wrong = await client.get("/v1/models", auth=("me", "guess"))
        missing = await client.get("/v1/models")
    assert (basic.status_code, bearer.status_code) == (200, 200)
    assert (wrong.status_code, missing.status_code) == (401, 401)


# --- scripting and inspection --------------------------------------------------------------------
async def test_script_is_consumed_in_order_then_default(sim: SimServer, client: httpx.AsyncClient) -> None:
    """Scripted turns answer requests in order; then the default generator resumes."""
    sim.script(QWEN, [Say("one"), Say("two")])
    assert sim.pending_turns(QWEN) == 2
    texts = []
    for _ in range(3):
        reply = (await client.post("/v1/chat/completions", json={"model": QWEN, "messages": USER})).json()
        texts.append(reply["choices"][0]["message"]["content"])
    assert texts[:2] == ["one", "two"]
    assert texts[2].startswith("Reply to:")
    assert sim.pending_turns(QWEN) == 0


async def test_scripts_are_per_model(sim: SimServer, client: httpx.AsyncClient) -> None:
    """A script for one model does not answer another."""
    sim.script(GEMMA, [Say("gemma only")])
    reply = (await client.post("/v1/chat/completions", json={"model": QWEN, "messages": USER})).json()
    assert reply["choices"][0]["message"]["content"] != "gemma only"
    with pytest.raises(KeyError, match="No simulated model"):
        sim.script("unknown", [Say("x")])


async def test_requests_are_recorded(sim: SimServer, client: httpx.AsyncClient) -> None:
    """sim.requests(model) shows the messages, tools and parameters each request carried."""
    body = {"model": QWEN, "messages": USER, "tools": [WEATHER_TOOL], "temperature": 0.2, "max_tokens": 4}
    await client.post("/v1/chat/completions", json=body)
    await client.post("/v1/embeddings", json={"model": EMBED, "input": "x"})
    [seen] = sim.requests(QWEN)
    assert seen.endpoint == "/v1/chat/completions"
    assert seen.messages == USER
    assert seen.tools == [WEATHER_TOOL]
    assert seen.params == {"temperature": 0.2, "max_tokens": 4}
    assert seen.stream is False
    assert [r.model for r in sim.requests()] == [QWEN, EMBED]


async def test_model_omitted_uses_the_loaded_model(client: httpx.AsyncClient) -> None:
    """A request without model goes to the loaded LLM, as LM Studio does."""
    reply = (await client.post("/v1/chat/completions", json={"messages": USER})).json()
    assert reply["model"] == QWEN


# --- raw HTTP ---------------------------------------------------------------------------------
async def _raw_exchange(port: int, payload: bytes) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as sock:
        await sock.send(payload)
        received = b""
        with anyio.fail_after(5):
            while True:
                try:
                    received += await sock.receive()
                except anyio.EndOfStream:
                    return received


async def test_keep_alive_chunked_body_and_connection_close(sim: SimServer) -> None:
    """One connection serves several requests (one with a chunked body); Connection: close ends it."""
    body = json.dumps({"model": QWEN, "messages": USER, "max_tokens": 2}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    payload = (
        b"GET /lmstudio-greeting HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + b""
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    received = await _raw_exchange(sim.port, payload)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert b'{"lmstudio":true}' in received
    assert b'"finish_reason":"length"' in received
    assert received.rstrip().endswith(b'"object":"list"}')
    assert b"Connection: close" in received
    assert sim.stats.http_requests == 3


async def test_bad_request_line_is_400(sim: SimServer) -> None:
    """Garbage instead of HTTP gets a 400 and a closed connection."""
    received = await _raw_exchange(sim.port, b"HELLO\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")


async def test_expect_100_continue(sim: SimServer) -> None:
    """A client that waits for 100 Continue (curl with big bodies) gets it, then its reply."""
    body = json.dumps({"model": QWEN, "messages": USER, "max_tokens": 1}).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
    async with await anyio.connect_tcp("127.0.0.1", sim.port) as sock:
        await sock.send(head)
        interim = await sock.receive()
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        await sock.send(body)
        received = b""
        while b'"finish_reason"' not in received:
            received += await sock.receive()
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_lifecycle_misuse_is_reported() -> None:
    """Using a server outside its `async with`, or entering it twice, raises a RuntimeError that says so."""
    server = SimServer(default_config())
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.stats
    async with server:
        server.reset()
        assert server.stats.total.requests == 0
    with pytest.raises(RuntimeError, match="only once"):
        await server.__aenter__()


async def test_taken_port_is_a_plain_oserror(sim: SimServer) -> None:
    """Starting on a port in use fails with OSError (not an exception group), and leaks nothing."""
    with pytest.raises(OSError, match="in use"):
        async with SimServer(default_config(port=sim.port)):
            pass
