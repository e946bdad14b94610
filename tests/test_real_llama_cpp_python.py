"""The bridge against a real llama-cpp-python server (``llama_cpp.server``, SmolLM2-135M under two aliases).

The bridge is configured as docs/servers.md says for this server, with ``max_concurrent = 1``,
and without retries, so a cut stream or a lost request shows as an error instead of being
hidden by a second attempt. The server (``tests/peers_llama_cpp_python.py``) logs every request
it served and how many were open at once, so the tests see what the bridge sent.

The simulator learnt what this server showed: it refuses streamed ``tool_choice`` with an empty
200 stream once the model picks a tool (as it does a prompt over the context), not a 500
(``streamed_tool_choice="empty_stream"``); after such a stream it closes the connection, a moment
after the stream ended (``close_after_empty_stream``); and it answers ``/v1/models`` under its
generation lock, so a listing cuts a running stream (``listing_takes_turn``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import msgspec
from mcp import Client
from mcp.types import CallToolResult

from bridge.app import Bridge, open_bridge
from bridge.llm import ChatMessage, Tool
from bridge.messages import Chat, ChatResult, Progress
from bridge.settings import BridgeSettings, RetrySettings, ServerSettings
from tests._stdio import data, text
from tests._util import mcp_server
from tests.peers import GET_CURRENT_TIME_TOOL, LlamaServer
from tests.peers_llama_cpp_python import CHATML_ALIAS, FUNCTION_CALLING_ALIAS, Served, served


@asynccontextmanager
async def bridged(server: LlamaServer) -> AsyncIterator[tuple[Bridge, Client]]:
    """The bridge for ``server`` and an MCP client of it, in memory."""
    config = ServerSettings(url=server.base_url, name="llama-cpp-python", max_concurrent=1)
    settings = BridgeSettings(servers=[config], retry=RetrySettings(attempts=1), listing_timeout=10.0)
    async with (
        open_bridge(settings, child_servers=False) as bridge,
        Client(mcp_server(bridge), mode="legacy") as client,
    ):
        yield bridge, client


def served_since(server: LlamaServer, before: list[Served], path: str = "/v1/chat/completions") -> list[Served]:
    return [r for r in served(server)[len(before) :] if r.path == path]


async def test_two_chats_at_once_both_answer_one_after_the_other(llama_cpp_python_server: LlamaServer) -> None:
    """With ``max_concurrent = 1`` the server never has two requests at once, so its ``interrupt_requests``
    cuts no stream (a cut stream once passed as an empty success): both chats answer."""
    server, before = llama_cpp_python_server, served(llama_cpp_python_server)
    answers: dict[str, CallToolResult] = {}
    async with bridged(server) as (_bridge, client):

        async def chat(model: str) -> None:
            answers[model] = await client.call_tool(
                "chat_completion", {"prompt": "Count to ten.", "model": model, "max_tokens": 8, "temperature": 0}
            )

        async with anyio.create_task_group() as tg:
            for model in (FUNCTION_CALLING_ALIAS, CHATML_ALIAS):
                tg.start_soon(chat, model)
    for answer in answers.values():
        assert not answer.is_error, text(answer)
        assert data(answer)["content"].strip()
    assert [r.status for r in served_since(server, before)] == [200, 200]
    assert max(r.open for r in served(server)[len(before) :]) == 1, served(server)[len(before) :]


async def test_a_prompt_over_the_context_is_context_overflow(llama_cpp_python_server: LlamaServer) -> None:
    """The server sends an empty 200 stream; the bridge asks once unstreamed and reads its 400."""
    server, before = llama_cpp_python_server, served(llama_cpp_python_server)
    async with bridged(server) as (_bridge, client):
        overflow = await client.call_tool(
            "chat_completion", {"prompt": "word " * 600, "model": CHATML_ALIAS, "max_tokens": 4}
        )
    assert overflow.is_error
    assert data(overflow)["code"] == "context_overflow", text(overflow)
    assert data(overflow)["retryable"] is False
    assert [r.status for r in served_since(server, before)] == [200, 400]


async def test_embeddings_are_unsupported(llama_cpp_python_server: LlamaServer) -> None:
    """The server's 500 "Llama model must be created with embedding=True" reads as ``unsupported``."""
    server, before = llama_cpp_python_server, served(llama_cpp_python_server)
    async with bridged(server) as (_bridge, client):
        embedded = await client.call_tool("generate_embeddings", {"text": "a cat", "model": CHATML_ALIAS})
    assert embedded.is_error
    assert data(embedded)["code"] == "unsupported", text(embedded)
    assert data(embedded)["retryable"] is False
    assert [r.status for r in served_since(server, before, "/v1/embeddings")] == [500]


async def test_a_chat_with_tools_on_the_function_calling_format_answers(llama_cpp_python_server: LlamaServer) -> None:
    """With tools the bridge sends ``tool_choice: "auto"``, which the server refuses streamed (an empty 200
    stream): the bridge asks again unstreamed and gets the answer."""
    server, before = llama_cpp_python_server, served(llama_cpp_python_server)
    messages = [
        ChatMessage(role="system", content="You are a helpful assistant. Use the tools to answer."),
        ChatMessage(role="user", content="What time is it in London?"),
    ]
    chat = Chat(
        model=FUNCTION_CALLING_ALIAS,
        messages=messages,
        tools=[msgspec.convert(GET_CURRENT_TIME_TOOL, Tool)],
        max_tokens=32,
        temperature=0,
    )
    async with bridged(server) as (bridge, _client):
        result = await bridge.registry.ask(chat)
    assert result.finish_reason in ("stop", "length", "tool_calls"), result
    assert result.content.strip() or result.tool_calls, result
    assert all(call.name == "get_current_time" for call in result.tool_calls), result
    assert [r.status for r in served_since(server, before)] == [200, 200]


async def test_the_model_list_says_load_state_unknown(llama_cpp_python_server: LlamaServer) -> None:
    """``/v1/models`` there says nothing of load state: "unknown", never "0 loaded"."""
    async with bridged(llama_cpp_python_server) as (_bridge, client):
        listing = await client.call_tool("list_models", {"refresh": True})
    assert not listing.is_error, text(listing)
    assert sorted(m["id"] for m in data(listing)["models"]) == [FUNCTION_CALLING_ALIAS, CHATML_ALIAS]
    assert all(m.get("loaded") is None and m.get("load_state") is None for m in data(listing)["models"])
    (state,) = data(listing)["servers"]
    assert state["reachable"] is True
    assert state.get("loaded") is None
    assert "load state unknown" in text(listing)
    assert "0 loaded" not in text(listing)


async def test_a_model_listing_during_a_chat_cuts_nothing(llama_cpp_python_server: LlamaServer) -> None:
    """The server answers ``/v1/models`` under its generation lock, so a listing sent while a chat streams
    cuts it. With ``max_concurrent = 1`` the listing waits briefly for the server's turn, else answers from
    the cache: the chat finishes and the listing answers."""
    server, before = llama_cpp_python_server, served(llama_cpp_python_server)
    started = anyio.Event()
    answers: list[ChatResult] = []

    async def on_progress(progress: Progress) -> None:
        if progress.stage == "first_token":
            started.set()

    async with bridged(server) as (bridge, client):
        await client.call_tool("list_models", {})  # the cache is warm

        async def chat() -> None:
            messages = [ChatMessage(role="user", content="Count to fifty.")]
            message = Chat(model=CHATML_ALIAS, messages=messages, max_tokens=48, temperature=0)
            answers.append(await bridge.registry.ask(message, progress=on_progress))

        async with anyio.create_task_group() as tg:
            tg.start_soon(chat)
            await started.wait()
            listing = await client.call_tool("list_models", {"refresh": True})
    assert not listing.is_error, text(listing)
    assert sorted(m["id"] for m in data(listing)["models"]) == [FUNCTION_CALLING_ALIAS, CHATML_ALIAS]
    (answer,) = answers
    assert answer.finish_reason in ("stop", "length"), answer
    assert answer.content.strip()
    assert max(r.open for r in served(server)[len(before) :]) == 1, served(server)[len(before) :]
