"""The MCP front end through the SDK's in-memory client (legacy handshake, as Claude Code), against the simulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult

from bridge.app import open_bridge
from bridge.frontend import DEFAULT_OUTPUT_LIMIT, MAX_BATCH_ITEMS, BridgeSlot, ToolCatalog, create_server
from bridge.settings import BridgeSettings, JobSettings, ModelLimits, RetrySettings, ServerSettings
from bridge.sim import Fault, FaultKind, SimConfig, SimModel, SimServer
from tests._util import eventually, free_port, mcp_server

QWEN = "qwen/qwen3-coder-30b"
GEMMA = "google/gemma-3-12b"
OSS = "openai/gpt-oss-20b"
SLOW = "slow/streamer"
LONG = "long/writer"
EMBED = "text-embedding-nomic-embed-text-v1.5"

READ_ONLY = {
    "health_check",
    "list_models",
    "get_current_model",
    "chat_completion",
    "text_completion",
    "generate_embeddings",
    "batch_chat",
    "bridge_status",
    "list_available_mcps",
    "job_status",
    "job_result",
    "list_jobs",
}
AUTONOMOUS = {"autonomous_with_mcp", "autonomous_with_multiple_mcps", "autonomous_discover_and_execute"}
ALL_TOOLS = READ_ONLY | AUTONOMOUS | {"create_response", "load_model", "unload_model", "cancel_job"}


def sim_config(**overrides: Any) -> SimConfig:
    models = overrides.pop(
        "models",
        (
            SimModel(id=QWEN, loaded=True, reply_tokens=6, context_length=8192),
            SimModel(id=GEMMA, loaded=False, reply_tokens=6, reasoning="think"),
            SimModel(id=OSS, loaded=True, reply_tokens=6, reasoning="reasoning"),
            # Streams for seconds: what progress, cancellation and budgets are tested on.
            SimModel(id=SLOW, loaded=True, ttft=0.05, tokens_per_s=40, reply_tokens=2000),
            # Long answers at once: what output cutting is tested on.
            SimModel(id=LONG, loaded=True, reply_tokens=3000, context_length=16384),
            SimModel(id=EMBED, type="embeddings", loaded=True, embedding_dim=16),
        ),
    )
    return SimConfig(models=models, auto_evict=False, **overrides)


def settings_for(url: str, **overrides: Any) -> BridgeSettings:
    base: dict[str, Any] = {
        "servers": [ServerSettings(url=url, name="sim")],
        "retry": RetrySettings(attempts=2, wait_initial=0.01, wait_max=0.02),
        "listing_timeout": 2.0,
        "call_budget": 30.0,
    }
    base.update(overrides)
    return BridgeSettings(**base)


@asynccontextmanager
async def connected(
    config: SimConfig | None = None,
    *,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
    batch_dir: Path | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[Client, SimServer]]:
    async with SimServer(config or sim_config()) as sim:
        settings = settings_for(sim.url, **overrides)
        async with (
            open_bridge(settings, child_servers=False) as bridge,
            Client(mcp_server(bridge, output_limit=output_limit, batch_dir=batch_dir), mode="legacy") as client,
        ):
            yield client, sim


def text(result: CallToolResult) -> str:
    assert result.content, result
    block = result.content[0]
    assert block.type == "text"
    return block.text


def data(result: CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None, result
    structured: dict[str, Any] = result.structured_content
    return structured


def assert_error(result: CallToolResult, code: str) -> dict[str, Any]:
    """An isError result whose text starts with the code and whose structured content has the contract fields."""
    assert result.is_error, text(result)
    assert text(result).startswith(f"{code}: "), text(result)
    fields = data(result)
    assert fields["code"] == code
    assert {"message", "retryable", "retry_after"} <= set(fields)
    assert "Traceback" not in text(result)
    return fields


# --------------------------------------------------------------------------- the tool list


async def test_every_tool_is_listed_with_its_annotations() -> None:
    """The tools of issue 4 are there; read-only ones say so, the others do not."""
    async with connected() as (client, _):
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == ALL_TOOLS
    for name, tool in tools.items():
        assert tool.description, name
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (name in READ_ONLY), name
    assert tools["unload_model"].annotations is not None
    assert tools["unload_model"].annotations.destructive_hint is True
    for name in AUTONOMOUS:
        annotations = tools[name].annotations
        assert annotations is not None
        assert annotations.open_world_hint is True, name
    chat = tools["chat_completion"].input_schema
    assert chat["required"] == ["prompt"]
    assert set(chat["properties"]) == {
        "prompt",
        "system_prompt",
        "model",
        "temperature",
        "max_tokens",
        "response_format",
        "include_reasoning",
        "images",
        "background",
    }
    assert "ctx" not in chat["properties"]


async def test_servers_made_with_one_catalog_list_the_same_tools_and_each_asks_its_own_bridge() -> None:
    """A shared bridge makes every session's server with one ToolCatalog: the tool schemas are built once,
    a compat session still gets its own tools, and each server's tools reach its own bridge."""
    catalog = ToolCatalog()
    async with (
        SimServer(sim_config(models=(SimModel(id=QWEN, loaded=True),))) as first,
        SimServer(sim_config(models=(SimModel(id=GEMMA, loaded=True),))) as other,
    ):
        async with (
            open_bridge(settings_for(first.url), child_servers=False) as one,
            open_bridge(settings_for(other.url, tools="compat"), child_servers=False) as two,
            open_bridge(settings_for(other.url), child_servers=False) as three,
            Client(create_server(one, catalog=catalog), mode="legacy") as a,
            Client(create_server(two, catalog=catalog), mode="legacy") as compat,
            Client(create_server(three, catalog=catalog), mode="legacy") as b,
        ):
            listed = [{t.name: t for t in (await c.list_tools()).tools} for c in (a, compat, b)]
            models = [[m["id"] for m in data(await c.call_tool("list_models", {}))["models"]] for c in (a, compat, b)]
    assert set(listed[0]) == ALL_TOOLS
    assert listed[0] == listed[2]
    assert {"lms_list_loaded_models", "vision_analyze"} <= set(listed[1]) - ALL_TOOLS
    assert all(listed[1][name] == tool for name, tool in listed[0].items())
    assert models == [[QWEN], [GEMMA], [GEMMA]]


# --------------------------------------------------------------------------- every tool


async def test_health_check_reports_each_server() -> None:
    async with connected() as (client, _):
        result = await client.call_tool("health_check", {})
    assert not result.is_error
    assert text(result).startswith("ok: 1 of 1 LLM server reachable")
    assert data(result)["healthy"] is True
    assert data(result)["servers"][0]["name"] == "sim"


async def test_health_check_with_the_server_down_is_a_report_not_a_crash() -> None:
    """A dead server is reported as unreachable, with the reason and what to do."""
    url = f"http://127.0.0.1:{free_port()}"
    async with open_bridge(settings_for(url), child_servers=False) as bridge:
        async with Client(mcp_server(bridge), mode="legacy") as client:
            result = await client.call_tool("health_check", {})
    assert not result.is_error
    assert text(result).startswith("no LLM server reachable")
    server = data(result)["servers"][0]
    assert data(result)["healthy"] is False
    assert server["reachable"] is False
    assert server["last_error"]["code"] == "backend_unavailable"


async def test_list_models_and_its_filters() -> None:
    async with connected() as (client, _):
        everything = data(await client.call_tool("list_models", {}))
        embedding = data(await client.call_tool("list_models", {"model_type": "embedding"}))
        loaded = data(await client.call_tool("list_models", {"loaded_only": True, "refresh": True}))
    assert {m["id"] for m in everything["models"]} == {QWEN, GEMMA, OSS, SLOW, LONG, EMBED}
    assert [m["id"] for m in embedding["models"]] == [EMBED]
    assert GEMMA not in {m["id"] for m in loaded["models"]}
    qwen = next(m for m in everything["models"] if m["id"] == QWEN)
    assert qwen["context_length"] == 8192
    assert qwen["loaded"] is True
    assert qwen["server"] == "sim"


async def test_get_current_model_runs_no_inference() -> None:
    async with connected(default_model=OSS) as (client, sim):
        result = await client.call_tool("get_current_model", {})
        assert sim.stats.total.requests == 0
    assert not result.is_error
    assert data(result)["model"] == OSS
    assert text(result).startswith(f"Default model: {OSS}")


async def test_chat_completion_sends_the_request_and_returns_answer_and_figures() -> None:
    async with connected() as (client, sim):
        result = await client.call_tool(
            "chat_completion",
            {
                "prompt": "hello there",
                "system_prompt": "Be brief.",
                "model": QWEN,
                "temperature": 0.2,
                "max_tokens": 50,
            },
        )
        request = sim.requests(QWEN)[-1]
    assert not result.is_error, text(result)
    answer = data(result)
    assert answer["model"] == QWEN
    assert answer["content"]
    assert answer["content"] in text(result)
    assert answer["finish_reason"] == "stop"
    assert answer["tokens"] > 0
    assert answer["usage"]["completion_tokens"] > 0
    assert f"[{QWEN} · " in text(result)  # the footer names the model
    assert [m["role"] for m in request.messages] == ["system", "user"]
    assert request.messages[1]["content"] == "hello there"
    assert request.params["temperature"] == 0.2
    assert request.params["max_tokens"] == 50


async def test_chat_completion_uses_the_default_model_when_none_is_named() -> None:
    async with connected(default_model=QWEN) as (client, sim):
        result = await client.call_tool("chat_completion", {"prompt": "hi"})
        assert len(sim.requests(QWEN)) == 1
    assert data(result)["model"] == QWEN


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        {
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        },
    ],
)
async def test_chat_completion_with_a_schema_returns_bare_json(response_format: dict[str, Any]) -> None:
    """A bare schema and the OpenAI form both reach the server as json_schema; the text is the JSON alone."""
    async with connected() as (client, sim):
        result = await client.call_tool(
            "chat_completion", {"prompt": "Where?", "model": QWEN, "response_format": response_format}
        )
        sent = sim.requests(QWEN)[-1].params["response_format"]
    assert not result.is_error, text(result)
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"]["required"] == ["city"]
    assert isinstance(json.loads(text(result))["city"], str)


async def test_chat_completion_json_object_is_refused_with_advice() -> None:
    async with connected() as (client, sim):
        result = await client.call_tool(
            "chat_completion", {"prompt": "x", "model": QWEN, "response_format": {"type": "json_object"}}
        )
        assert sim.stats.total.requests == 0
    assert "JSON schema" in assert_error(result, "bad_request")["message"]


async def test_include_reasoning_returns_the_reasoning() -> None:
    async with connected() as (client, _):
        with_reasoning = await client.call_tool(
            "chat_completion", {"prompt": "think", "model": OSS, "include_reasoning": True}
        )
        without = await client.call_tool("chat_completion", {"prompt": "think", "model": OSS})
    assert data(with_reasoning)["reasoning"]
    assert text(with_reasoning).startswith("<reasoning>")
    assert "reasoning" not in data(without)


async def test_text_completion_with_stop_sequences() -> None:
    async with connected() as (client, sim):
        result = await client.call_tool(
            "text_completion",
            {"prompt": "Once upon a time", "model": QWEN, "max_tokens": 20, "stop_sequences": ["\n\n"]},
        )
        request = sim.requests(QWEN)[-1]
    assert not result.is_error, text(result)
    assert data(result)["text"]
    assert request.endpoint == "/v1/completions"
    assert request.body["prompt"] == "Once upon a time"
    assert request.body["stop"] == ["\n\n"]


async def test_generate_embeddings_for_one_text_and_for_a_list() -> None:
    async with connected() as (client, _):
        one = data(await client.call_tool("generate_embeddings", {"text": "hello"}))
        many = data(await client.call_tool("generate_embeddings", {"text": ["a", "b", "c"], "model": EMBED}))
    assert one["count"] == 1
    assert len(one["vectors"][0]) == 16
    assert many["count"] == 3
    assert many["dimensions"] == 16
    assert len(many["vectors"]) == 3


async def test_create_response_continues_a_conversation() -> None:
    async with connected() as (client, sim):
        first = await client.call_tool("create_response", {"input": "remember 7", "model": QWEN})
        first_id = data(first)["response_id"]
        second = await client.call_tool(
            "create_response", {"input": "what was it?", "model": QWEN, "previous_response_id": first_id}
        )
        history = sim.requests(QWEN)[-1].messages
    assert not first.is_error, text(first)
    assert not second.is_error, text(second)
    assert first_id.startswith("resp_")
    assert first_id in text(first)
    assert data(second)["response_id"] != first_id
    assert any("remember 7" in str(m.get("content")) for m in history)


async def test_load_and_unload_a_model() -> None:
    async with connected() as (client, sim):
        loaded = await client.call_tool("load_model", {"model": GEMMA, "context_length": 4096, "ttl": 600})
        assert sim.stats.model(GEMMA).loads == 1
        unloaded = await client.call_tool("unload_model", {"model": GEMMA})
        assert sim.stats.model(GEMMA).unloads == 1
        again = await client.call_tool("unload_model", {"model": GEMMA})
    assert not loaded.is_error, text(loaded)
    assert data(loaded)["model"] == GEMMA
    assert data(loaded)["server"] == "sim"
    assert not unloaded.is_error, text(unloaded)
    assert data(unloaded)["instance_ids"]
    assert "not loaded" in assert_error(again, "bad_request")["message"]


async def test_bridge_status_shows_the_models_in_use() -> None:
    async with connected() as (client, _):
        await client.call_tool("chat_completion", {"prompt": "hi", "model": QWEN})
        result = await client.call_tool("bridge_status", {})
    assert not result.is_error
    models = {m["model"]: m for m in data(result)["models"]}
    assert models[QWEN]["completed"] == 1
    assert models[QWEN]["in_flight"] == 0
    assert models[QWEN]["queued"] == 0
    assert data(result)["servers"][0]["reachable"] is True


async def test_list_available_mcps_without_child_servers() -> None:
    async with connected() as (client, _):
        result = await client.call_tool("list_available_mcps", {})
    assert not result.is_error
    assert data(result) == {"servers": [], "enabled": False}


async def test_list_available_mcps_lists_the_configured_servers(tmp_path: Path) -> None:
    """With child servers on, the configured ones are listed (not started: sessions start on first use)."""
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"echo-demo": {"command": "python3", "args": ["-c", "pass"]}}}))
    async with SimServer(sim_config()) as sim:
        settings = settings_for(sim.url)
        settings = BridgeSettings(
            servers=settings.servers,
            children=msgspec_replace(settings.children, config_paths=[str(config)], discover=False, watch=False),
        )
        async with open_bridge(settings) as bridge, Client(mcp_server(bridge), mode="legacy") as client:
            result = await client.call_tool("list_available_mcps", {})
    assert not result.is_error, text(result)
    names = [s["name"] for s in data(result)["servers"]]
    assert names == ["echo-demo"]
    assert "echo-demo" in text(result)


def msgspec_replace(struct: Any, **changes: Any) -> Any:
    import msgspec

    return msgspec.structs.replace(struct, **changes)


# --------------------------------------------------------------------------- batch


async def test_batch_chat_returns_every_answer_and_each_typed_error() -> None:
    """Prompts x models plus explicit items; one bad item fails alone, with its own code."""
    async with connected() as (client, sim):
        result = await client.call_tool(
            "batch_chat",
            {
                "prompts": ["one", "two"],
                "models": [QWEN, OSS],
                "items": [{"prompt": "three", "model": "acme/missing"}, {"prompt": "four", "model": QWEN}],
                "max_tokens": 40,
            },
        )
        assert len(sim.requests(QWEN)) == 3
        assert len(sim.requests(OSS)) == 2
    assert not result.is_error, text(result)
    batch = data(result)
    assert batch["succeeded"] == 5
    assert batch["failed"] == 1
    items = {i["index"]: i for i in batch["items"]}
    assert items[0]["ok"] is False
    assert items[0]["code"] == "model_not_found"
    assert items[0]["retryable"] is False
    assert all(items[i]["ok"] and items[i]["content"] for i in range(1, 6))
    assert {items[i]["model"] for i in range(2, 6)} == {QWEN, OSS}
    assert text(result).startswith("batch: 5 of 6 succeeded, 1 failed")
    assert "model_not_found: " in text(result)


async def test_batch_chat_fans_out_a_thousand_prompts_in_one_call(tmp_path: Path) -> None:
    """1,000 prompts over two models in one call: every item answered; the result fits its limit, and since
    1,000 answers do not, every item in full is in the results file it names. The call budget is far above
    what the batch takes, so that a loaded machine does not turn the call into a job (a speed assumption)."""
    async with connected(batch_dir=tmp_path, call_budget=600.0) as (client, sim):
        result = await client.call_tool(
            "batch_chat", {"prompts": [f"p{i}" for i in range(500)], "models": [QWEN, OSS], "max_tokens": 4}
        )
        assert len(sim.requests(QWEN)) + len(sim.requests(OSS)) >= 1000
    assert not result.is_error, text(result)
    batch = data(result)
    assert (batch["succeeded"], batch["failed"]) == (1000, 0)
    assert len(text(result)) <= DEFAULT_OUTPUT_LIMIT
    assert len(json.dumps(batch)) <= DEFAULT_OUTPUT_LIMIT
    assert text(result).startswith("batch: 1000 of 1000 succeeded")
    path = Path(batch["results_file"])
    assert path.parent == tmp_path
    assert str(path) in text(result)
    assert (await anyio.Path(path).stat()).st_mode & 0o777 == 0o600
    rows = [json.loads(line) for line in (await anyio.Path(path).read_text()).splitlines()]
    assert [row["index"] for row in rows] == list(range(1000))
    assert all(row["ok"] for row in rows)
    assert all(row["content"] for row in rows if row["model"] == QWEN)  # OSS may think all 4 tokens
    assert {row["model"] for row in rows} == {QWEN, OSS}


async def test_batch_chat_that_fits_names_no_results_file(tmp_path: Path) -> None:
    async with connected(batch_dir=tmp_path) as (client, _):
        result = await client.call_tool("batch_chat", {"prompts": ["a", "b"], "models": [QWEN]})
    assert "results_file" not in data(result)
    assert len(data(result)["items"]) == 2
    assert [p async for p in anyio.Path(tmp_path).iterdir()] == []


async def test_batch_chat_runs_concurrently_within_each_models_limits() -> None:
    """Ten items on a model with two slots: all answered, never more than two at once, and two at once."""
    config = sim_config(models=(SimModel(id=QWEN, loaded=True, latency=0.05, reply_tokens=1, parallel=8),))
    async with connected(config, models={QWEN: ModelLimits(slots=2, queue=2)}) as (client, sim):
        result = await client.call_tool("batch_chat", {"prompts": [f"p{i}" for i in range(10)], "models": [QWEN]})
        stats = sim.stats.model(QWEN)
    assert data(result)["succeeded"] == 10, text(result)
    assert stats.max_generating == 2


async def test_batch_chat_where_everything_fails_is_an_error() -> None:
    async with connected() as (client, _):
        result = await client.call_tool("batch_chat", {"prompts": ["a"], "models": ["nope/one", "nope/two"]})
    assert result.is_error
    assert text(result).startswith("model_not_found: all 2 items failed")
    assert data(result)["failed"] == 2


async def test_batch_chat_without_work_or_with_too_much_is_a_bad_request() -> None:
    async with connected() as (client, sim):
        empty = await client.call_tool("batch_chat", {})
        huge = await client.call_tool("batch_chat", {"prompts": ["x"] * (MAX_BATCH_ITEMS + 1)})
        assert sim.stats.total.requests == 0
    assert_error(empty, "bad_request")
    assert "split it" in assert_error(huge, "bad_request")["message"]


# --------------------------------------------------------------------------- progress and cancellation


async def test_progress_reports_first_token_and_tokens_so_far() -> None:
    async with connected() as (client, _):
        messages: list[str] = []
        values: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            values.append(progress)
            messages.append(message or "")

        result = await client.call_tool(
            "chat_completion", {"prompt": "go", "model": SLOW, "max_tokens": 40}, progress_callback=on_progress
        )
    assert not result.is_error, text(result)
    assert any(m.startswith("first token from slow/streamer") for m in messages), messages
    assert any(m.endswith("tokens from slow/streamer") for m in messages), messages
    # Every value is new (the client may run its callbacks out of order, so order is not checked here).
    assert len(set(values)) == len(values)


async def test_progress_reports_the_queue_position() -> None:
    """With the one slot taken, a second call hears where it waits."""
    async with connected(models={SLOW: ModelLimits(slots=1, queue=4)}) as (client, sim):
        messages: list[str] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            messages.append(message or "")

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.call_tool("chat_completion", {"prompt": "a", "model": SLOW, "max_tokens": 20}))
            await eventually(lambda: sim.stats.model(SLOW).generating == 1)
            await client.call_tool(
                "chat_completion", {"prompt": "b", "model": SLOW, "max_tokens": 5}, progress_callback=on_progress
            )
    assert f"queued for {SLOW}: position 1" in messages, messages


async def test_batch_progress_counts_finished_items() -> None:
    async with connected() as (client, _):
        heard: list[tuple[float, str]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            heard.append((progress, message or ""))

        await client.call_tool(
            "batch_chat", {"prompts": ["a", "b"], "models": [QWEN, "nope/x"]}, progress_callback=on_progress
        )
    messages = [m for _, m in sorted(heard)]  # in the order sent: the value grows with each
    done = [m for m in messages if " done, " in m]
    assert len(done) == 4, messages
    assert done[-1].startswith("4/4 done, 2 failed"), messages


async def test_cancelled_call_closes_the_stream_and_frees_the_slot() -> None:
    """The client gives up (notifications/cancelled): the server sees the stream closed, nothing stays in flight."""
    async with connected(models={SLOW: ModelLimits(slots=1, queue=0)}) as (client, sim):
        stats = sim.stats.model(SLOW)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.call_tool("chat_completion", {"prompt": "long", "model": SLOW}))
            await eventually(lambda: stats.generating == 1)
            tg.cancel_scope.cancel()
        await eventually(lambda: stats.disconnects == 1 and stats.in_progress == 0)
        # The slot is free: with one slot and no queue, a new call is served instead of refused as busy.
        again = await client.call_tool("chat_completion", {"prompt": "short", "model": SLOW, "max_tokens": 3})
        status = data(await client.call_tool("bridge_status", {}))
    assert not again.is_error, text(again)
    worker = next(m for m in status["models"] if m["model"] == SLOW)
    assert worker["in_flight"] == 0
    assert worker["queued"] == 0


async def test_cancelled_batch_cancels_every_item() -> None:
    async with connected() as (client, sim):
        stats = sim.stats.model(SLOW)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.call_tool("batch_chat", {"prompts": ["a", "b", "c"], "models": [SLOW]}))
            await eventually(lambda: stats.generating == 3)
            tg.cancel_scope.cancel()
        await eventually(lambda: stats.disconnects == 3 and stats.in_progress == 0)


# --------------------------------------------------------------------------- budgets and errors


async def test_call_budget_ends_a_long_call_with_a_typed_timeout() -> None:
    """With on_budget = "cut", past call_budget the tool answers `timeout` (retryable) instead of running on,
    and the slot is freed. (The default, "job", goes on as a job: tests/test_jobs.py.)"""
    async with connected(call_budget=0.5, jobs=JobSettings(on_budget="cut")) as (client, sim):
        result = await client.call_tool("chat_completion", {"prompt": "long", "model": SLOW})
        await eventually(lambda: sim.stats.model(SLOW).in_progress == 0)
        assert sim.stats.model(SLOW).disconnects == 1
    fields = assert_error(result, "timeout")
    assert fields["retryable"] is True
    assert "call_budget" in fields["message"]
    assert "0.5 s" in fields["message"]


async def test_unknown_model_names_the_closest_ones() -> None:
    async with connected() as (client, _):
        result = await client.call_tool("chat_completion", {"prompt": "x", "model": "qwen3-coder"})
    fields = assert_error(result, "model_not_found")
    assert fields["retryable"] is False
    assert fields["details"]["suggestions"][0] == QWEN
    assert "Did you mean 'qwen/qwen3-coder-30b'" in text(result)


@pytest.mark.parametrize(
    ("tool", "arguments", "fragment"),
    [
        ("chat_completion", {}, "prompt"),
        ("chat_completion", {"prompt": ["not", "a", "string"]}, "prompt"),
        ("chat_completion", {"prompt": "x", "temperature": "hot"}, "temperature"),
        ("chat_completion", {"prompt": "x", "model": QWEN, "temperature": 3.5}, "temperature must be between"),
        ("chat_completion", {"prompt": "  ", "model": QWEN}, "prompt is empty"),
        ("chat_completion", {"prompt": "x", "model": EMBED}, "embedding model"),
        ("load_model", {"model": QWEN, "ttl": 0}, "ttl"),
        ("batch_chat", {"items": [{"prompt": "x", "colour": "red"}]}, "colour"),
        ("no_such_tool", {}, "there is no tool 'no_such_tool'"),
    ],
)
async def test_bad_arguments_are_bad_requests(tool: str, arguments: dict[str, Any], fragment: str) -> None:
    """Schema failures, unknown tools and requests the registry refuses are all `bad_request` results."""
    async with connected() as (client, sim):
        result = await client.call_tool(tool, arguments)
        assert sim.stats.total.requests == 0
    assert fragment in assert_error(result, "bad_request")["message"]


async def test_a_full_queue_is_busy_with_retry_after() -> None:
    async with connected(models={SLOW: ModelLimits(slots=1, queue=0)}) as (client, sim):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.call_tool("chat_completion", {"prompt": "a", "model": SLOW}))
            await eventually(lambda: sim.stats.model(SLOW).generating == 1)
            result = await client.call_tool("chat_completion", {"prompt": "b", "model": SLOW})
            tg.cancel_scope.cancel()
    fields = assert_error(result, "busy")
    assert fields["retryable"] is True
    assert fields["retry_after"] > 0
    assert "retryable: the same call may succeed if sent again after" in text(result)


async def test_server_errors_keep_their_code() -> None:
    """A context overflow from the server is `context_overflow`, not retried, not a crash."""
    async with connected() as (client, sim):
        sim.script(QWEN, [Fault(FaultKind.CONTEXT_OVERFLOW)])
        result = await client.call_tool("chat_completion", {"prompt": "x", "model": QWEN})
        after = await client.call_tool("chat_completion", {"prompt": "y", "model": QWEN})
    assert assert_error(result, "context_overflow")["retryable"] is False
    assert not after.is_error


async def test_no_server_reachable_is_backend_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with open_bridge(settings_for(url), child_servers=False) as bridge:
        async with Client(mcp_server(bridge), mode="legacy") as client:
            result = await client.call_tool("chat_completion", {"prompt": "x"})
    fields = assert_error(result, "backend_unavailable")
    assert fields["retryable"] is True
    assert "lms server start" in fields["message"]


# --------------------------------------------------------------------------- output size


async def test_a_long_answer_is_cut_with_a_marker() -> None:
    """Both forms of the result stay under the limit; the marker says how much was cut."""
    limit = 3000
    async with connected(output_limit=limit) as (client, _):
        result = await client.call_tool("chat_completion", {"prompt": "x", "model": LONG, "max_tokens": 1500})
    assert not result.is_error, text(result)
    assert len(text(result)) <= limit
    assert len(json.dumps(data(result), ensure_ascii=False, separators=(",", ":"))) <= limit
    assert "…[cut " in text(result)
    assert " characters]" in text(result)
    assert "…[cut " in data(result)["content"]
    assert data(result)["tokens"] == 1500  # the figures are kept whole


async def test_the_default_limit_keeps_results_under_claude_codes_limit() -> None:
    async with connected() as (client, _):
        result = await client.call_tool("chat_completion", {"prompt": "x", "model": LONG, "max_tokens": 2000})
    # 2,000 tokens of the simulator's words fit whole; the limit is about characters, checked both ways.
    assert len(text(result)) <= DEFAULT_OUTPUT_LIMIT
    assert len(json.dumps(data(result))) <= DEFAULT_OUTPUT_LIMIT + 2000


async def test_a_large_batch_shares_the_limit_and_cuts_each_long_answer() -> None:
    limit = 4000
    async with connected(output_limit=limit) as (client, _):
        result = await client.call_tool(
            "batch_chat", {"prompts": ["a", "b", "c"], "models": [LONG, QWEN], "max_tokens": 400}
        )
    assert len(text(result)) <= limit
    assert len(json.dumps(data(result), ensure_ascii=False, separators=(",", ":"))) <= limit
    items = data(result)["items"]
    assert data(result)["succeeded"] == 6
    long = [i for i in items if i["model"] == LONG]
    assert all("…[cut " in i["content"] for i in long)
    assert all("…[cut " not in i["content"] for i in items if i["model"] == QWEN)  # short answers stay whole


async def test_too_many_vectors_are_left_out_with_a_note() -> None:
    config = sim_config(models=(SimModel(id=EMBED, type="embeddings", loaded=True, embedding_dim=256),))
    async with connected(config, output_limit=6000) as (client, _):
        result = await client.call_tool("generate_embeddings", {"text": [f"t{i}" for i in range(20)]})
    assert not result.is_error
    assert len(text(result)) <= 6000
    assert data(result)["count"] == 20
    assert 0 < len(data(result)["vectors"]) < 20
    assert "embed fewer texts per call" in data(result)["cut"]


# --------------------------------------------------------------------------- start-up order


async def test_a_tool_called_before_the_actors_run_waits_for_them() -> None:
    """`serve` answers the handshake before the actor system is up; an early call waits, then is served."""
    async with SimServer(sim_config()) as sim:
        settings = settings_for(sim.url)
        slot = BridgeSlot()
        async with Client(mcp_server(slot, settings=settings), mode="legacy") as client:
            result: list[CallToolResult] = []

            async def early_call() -> None:
                result.append(await client.call_tool("chat_completion", {"prompt": "hi", "model": QWEN}))

            async with open_bridge(settings, child_servers=False) as bridge, anyio.create_task_group() as tg:
                tg.start_soon(early_call)
                await slot.wanted()  # the call waits for the bridge
                assert not result
                slot.set(bridge)
    assert not result[0].is_error, text(result[0])
    assert data(result[0])["model"] == QWEN


async def test_tools_answer_actor_unavailable_when_the_bridge_failed_to_start() -> None:
    slot = BridgeSlot()
    slot_settings = BridgeSettings()
    async with Client(mcp_server(slot, settings=slot_settings), mode="legacy") as client:
        slot.fail(RuntimeError("the supervisor gave up"))
        result = await client.call_tool("list_models", {})
        tools = await client.list_tools()
    fields = assert_error(result, "actor_unavailable")
    assert "the supervisor gave up" in fields["message"]
    assert len(tools.tools) == len(ALL_TOOLS)
