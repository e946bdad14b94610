"""The MCP front end against a real llama.cpp server (SmolLM2-135M): in memory and over real stdio.

llama.cpp has no LM Studio native API, so model loading answers `unsupported`, and the one model it
serves is the default. These test the mechanics (requests, streaming, progress, cancellation, errors),
not the quality of a 135M model's answers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from bridge.app import open_bridge
from bridge.settings import BridgeSettings, JobSettings, ServerSettings
from tests._stdio import data, serve_argv, stdio_session, text
from tests._util import eventually_async, mcp_server
from tests.peers import LlamaServer


def settings(server: LlamaServer, **overrides: Any) -> BridgeSettings:
    return BridgeSettings(
        servers=[ServerSettings(url=server.base_url, name="llama")], listing_timeout=10.0, **overrides
    )


@asynccontextmanager
async def in_memory(server: LlamaServer, **overrides: Any) -> AsyncIterator[Client]:
    async with (
        open_bridge(settings(server, **overrides), child_servers=False) as bridge,
        Client(mcp_server(bridge), mode="legacy") as client,
    ):
        yield client


async def test_every_llm_tool_against_llama_cpp(llama_server: LlamaServer) -> None:
    async with in_memory(llama_server) as client:
        health = await client.call_tool("health_check", {})
        models = await client.call_tool("list_models", {})
        current = await client.call_tool("get_current_model", {})
        chat = await client.call_tool("chat_completion", {"prompt": "Say hi.", "max_tokens": 12, "temperature": 0})
        completion = await client.call_tool("text_completion", {"prompt": "The sky is", "max_tokens": 8})
        embeddings = await client.call_tool(
            "generate_embeddings", {"text": ["a cat", "a dog"], "model": llama_server.model}
        )
        response = await client.call_tool("create_response", {"input": "Say hi.", "max_output_tokens": 12})
        batch = await client.call_tool(
            "batch_chat", {"prompts": ["Say one.", "Say two.", "Say three."], "max_tokens": 8}
        )
        status = await client.call_tool("bridge_status", {})
    for result in (health, models, current, chat, completion, embeddings, response, batch, status):
        assert not result.is_error, text(result)
    assert data(health)["healthy"] is True
    assert data(health)["servers"][0]["lmstudio_native_api"] is False
    assert [m["id"] for m in data(models)["models"]] == [llama_server.model]
    assert data(current)["model"] == llama_server.model
    assert data(chat)["tokens"] > 0
    assert data(chat)["model"]
    assert data(completion)["text"]
    assert data(embeddings)["count"] == 2
    assert data(embeddings)["dimensions"] > 0
    assert data(response)["content"]
    assert data(batch)["succeeded"] == 3
    worker = data(status)["models"][0]
    assert worker["completed"] >= 5
    assert worker["in_flight"] == 0


async def test_model_loading_is_unsupported_on_llama_cpp(llama_server: LlamaServer) -> None:
    """No native API: load and unload are typed `unsupported` (or bad_request) errors, never crashes."""
    async with in_memory(llama_server) as client:
        loaded = await client.call_tool("load_model", {"model": llama_server.model})
        unloaded = await client.call_tool("unload_model", {"model": llama_server.model})
    for result in (loaded, unloaded):
        assert result.is_error
        assert data(result)["code"] == "unsupported", text(result)
        assert text(result).startswith("unsupported: ")


async def test_errors_against_llama_cpp(llama_server: LlamaServer) -> None:
    async with in_memory(llama_server) as client:
        missing = await client.call_tool("chat_completion", {"prompt": "x", "model": "no-such-model"})
        overflow = await client.call_tool("chat_completion", {"prompt": "word " * 5000, "max_tokens": 4})
    assert missing.is_error
    assert data(missing)["code"] == "model_not_found"
    assert llama_server.model in data(missing)["details"]["available"]
    assert overflow.is_error
    assert data(overflow)["code"] == "context_overflow", text(overflow)


async def test_progress_and_cancellation_against_llama_cpp(llama_server: LlamaServer) -> None:
    """Progress arrives from the real stream; a cancelled long generation leaves the slots free."""
    async with in_memory(llama_server) as client:
        heard: list[str] = []
        first = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            heard.append(message or "")
            if (message or "").startswith("first token"):
                first.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: client.call_tool(
                    "chat_completion",
                    {"prompt": "Write a very long story about a cat.", "max_tokens": 3000},
                    progress_callback=on_progress,
                )
            )
            await first.wait()
            tg.cancel_scope.cancel()
        # Both slots free again: as many calls as the server has slots all run and answer.
        async with anyio.create_task_group() as tg:
            results: list[CallToolResult] = []

            async def short() -> None:
                results.append(await client.call_tool("chat_completion", {"prompt": "Hi.", "max_tokens": 4}))

            for _ in range(llama_server.n_parallel):
                tg.start_soon(short)
        status = data(await client.call_tool("bridge_status", {}))
    assert any(m.startswith("first token") for m in heard)
    assert all(not r.is_error for r in results)
    assert status["models"][0]["in_flight"] == 0


async def test_stdio_against_llama_cpp(llama_server: LlamaServer, tmp_path: Path, errlog: TextIO) -> None:
    """`serve` as a subprocess over stdio, pointed at llama.cpp, with progress."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMSTUDIO")}
    env["HOME"] = str(tmp_path)
    params = StdioServerParameters(
        command=sys.executable,
        args=serve_argv("--base-url", llama_server.base_url, "--no-child-servers"),
        env=env,
    )
    heard: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        heard.append(message or "")

    async with stdio_session(params, errlog, read_timeout_seconds=120) as session:
        chat = await session.call_tool(
            "chat_completion", {"prompt": "Count to five.", "max_tokens": 40}, progress_callback=on_progress
        )
        embeddings = await session.call_tool("generate_embeddings", {"text": "hello", "model": llama_server.model})
        missing = await session.call_tool("chat_completion", {"prompt": "x", "model": "nope"})
    assert isinstance(chat, CallToolResult)
    assert isinstance(embeddings, CallToolResult)
    assert isinstance(missing, CallToolResult)
    assert not chat.is_error, text(chat)
    assert data(chat)["model"]
    assert data(chat)["tokens"] > 0
    assert data(embeddings)["count"] == 1
    assert missing.is_error
    assert data(missing)["code"] == "model_not_found"
    assert any(m.startswith("first token") for m in heard), heard


async def test_call_budget_against_llama_cpp(llama_server: LlamaServer) -> None:
    """With on_budget = "cut", a generation longer than the call budget ends as a typed timeout and leaves
    nothing in flight."""
    async with in_memory(llama_server, call_budget=0.3, jobs=JobSettings(on_budget="cut")) as client:
        result = await client.call_tool("chat_completion", {"prompt": "Write a very long story.", "max_tokens": 3000})
        status = data(await client.call_tool("bridge_status", {}))
    assert result.is_error
    assert data(result)["code"] == "timeout", text(result)
    assert data(result)["retryable"] is True
    assert all(m["in_flight"] == 0 for m in status["models"])


async def test_a_call_out_of_budget_goes_on_as_a_job_against_llama_cpp(llama_server: LlamaServer) -> None:
    """By default the same generation goes on as a job: fetched whole, it starts with the text the timeout
    carried; cancelled, nothing is left in flight."""
    async with in_memory(llama_server, call_budget=1.0) as client:
        prompt = {"prompt": "Count from 1 to 1000, one number per line.", "max_tokens": 1500, "temperature": 0}
        result = await client.call_tool("chat_completion", prompt)
        assert data(result)["code"] == "timeout", text(result)
        job_id = data(result)["job_id"]
        partial = data(result).get("partial_content", "")
        done = None
        for _ in range(120):
            done = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 0.9})
            if "content" in data(done):
                break
        assert done is not None
        assert "content" in data(done), text(done)
        assert data(done)["content"].startswith(partial)
        long = await client.call_tool("chat_completion", {**prompt, "max_tokens": 3000, "background": True})
        cancelled = await client.call_tool("cancel_job", {"job_id": data(long)["job_id"]})

        async def idle() -> bool:
            status = data(await client.call_tool("bridge_status", {}))
            return all(m["in_flight"] == 0 for m in status["models"])

        await eventually_async(idle)
    assert data(cancelled)["state"] == "cancelled"
