"""A request fitted to the model's context before it is sent (issue 22, context length): a prompt that cannot
fit is refused with the numbers and nothing reaches the server; a call without max_tokens gets the room left."""

from __future__ import annotations

import math
from typing import Any, Literal

import httpx
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp import Client

from bridge.actors._context import PromptSize, TokenCounter, fitted_max_tokens, prompt_size
from bridge.app import open_bridge
from bridge.errors import ContextOverflowError
from bridge.llm import ChatMessage, LLMClient
from bridge.messages import Chat, Complete
from bridge.planner import default_reply_tokens, trim_messages
from bridge.sim import SimConfig, SimModel, SimServer
from bridge.tokens import ANSWER_START_TOKENS, IMAGE_TOKENS
from tests._util import mcp_server
from tests.test_llm_path import settings_for, user

MODEL = "small/context"


def _sim(api: Literal["lmstudio", "llama.cpp"] = "lmstudio") -> SimServer:
    model = SimModel(id=MODEL, loaded=True, context_length=512, max_context_length=512, reply_tokens=8)
    return SimServer(SimConfig(models=(model,), api=api))


async def _llama_count(url: str, messages: list[ChatMessage]) -> int:
    """The prompt's tokens as the simulated llama.cpp server counts them, asked the way a user would."""
    async with httpx.AsyncClient(base_url=url) as http:
        rendered = (await http.post("/apply-template", json={"messages": msgspec.to_builtins(messages)})).json()
        return len((await http.post("/tokenize", json={"content": rendered["prompt"]})).json()["tokens"])


async def test_where_the_estimate_cannot_decide_llama_cpps_tokenizer_sizes_the_room() -> None:
    """1,600 characters might be 640 tokens or 270: in a 512-token context the estimate cannot size the answer's
    room, so the server's tokenizer counts the prompt and the room is what its count leaves."""
    messages = user("x" * 1600)
    assert prompt_size(messages).undecided(512)
    async with _sim("llama.cpp") as sim, open_bridge(settings_for(sim.url), child_servers=False) as bridge:
        await bridge.registry.ask(Chat(model=MODEL, messages=messages))
        asked = [r.body.get("max_tokens") for r in sim.requests(MODEL)]
        counted = await _llama_count(sim.url, messages)
    assert asked == [512 - counted]


async def test_a_prompt_the_estimate_lets_through_is_refused_by_llama_cpps_count_before_sending() -> None:
    messages = user("x" * 2800)  # at least 468 tokens by the estimate; 700 and more by the server's count
    async with _sim("llama.cpp") as sim, open_bridge(settings_for(sim.url), child_servers=False) as bridge:
        with pytest.raises(ContextOverflowError) as caught:
            await bridge.registry.ask(Chat(model=MODEL, messages=messages, max_tokens=8))
        sent = sim.requests(MODEL)
        counted = await _llama_count(sim.url, messages)
    assert sent == []
    assert caught.value.details["sent"] is False
    assert caught.value.details["counted_by_server"] is True
    assert caught.value.details["estimated_prompt_tokens"] == counted
    assert "counted by the server's tokenizer" in caught.value.message


async def test_a_server_without_a_tokenizer_is_asked_once() -> None:
    """LM Studio has no tokenizer endpoint: the first undecided prompt asks (and hears a 404), the next does not."""
    messages = user("x" * 1600)
    counter = TokenCounter()
    async with _sim() as sim, LLMClient(sim.url) as client:
        before = sim.stats.http_requests
        first = await counter.size(messages, None, 512, [("sim", client)], math.inf)
        between = sim.stats.http_requests
        second = await counter.size(messages, None, 512, [("sim", client)], math.inf)
        after = sim.stats.http_requests
    assert (between - before, after - between) == (1, 0)
    assert not first.counted
    assert not second.counted
    assert (first.low, first.high) == (prompt_size(messages).low, prompt_size(messages).high)


@pytest.mark.parametrize("kind", ["chat", "completion"])
async def test_a_prompt_that_cannot_fit_is_refused_before_anything_is_sent(kind: str) -> None:
    text = "word " * 2000  # 10,000 characters: at least 1,666 tokens, in a 512-token context
    async with _sim() as sim, open_bridge(settings_for(sim.url), child_servers=False) as bridge:
        message = Chat(model=MODEL, messages=user(text)) if kind == "chat" else Complete(model=MODEL, prompt=text)
        with pytest.raises(ContextOverflowError) as caught:
            await bridge.registry.ask(message)
        sent = sim.requests(MODEL)
    assert sent == []
    error = caught.value
    assert error.code == "context_overflow"
    assert error.retryable is False
    assert error.details["context_length"] == 512
    assert error.details["estimated_prompt_tokens"] >= 1600
    assert error.details["sent"] is False
    assert "512" in error.message
    assert "load_model(context_length=N)" in error.message


async def test_without_max_tokens_the_answer_gets_the_room_that_is_left() -> None:
    text = "word " * 100
    async with _sim() as sim, open_bridge(settings_for(sim.url), child_servers=False) as bridge:
        await bridge.registry.ask(Chat(model=MODEL, messages=user(text)))
        await bridge.registry.ask(Chat(model=MODEL, messages=user(text), max_tokens=7))
        asked = [r.body.get("max_tokens") for r in sim.requests(MODEL)]
    room = 512 - prompt_size(user(text)).high
    assert asked == [room, 7]
    assert 0 < room < 512 - len(text) // 6


@given(chars=st.integers(0, 200_000), turns=st.integers(0, 50), context=st.integers(1, 200_000))
def test_a_refusal_means_even_the_fewest_tokens_do_not_fit(chars: int, turns: int, context: int) -> None:
    size = PromptSize(chars, turns)
    assert size.low <= size.high
    if size.low + 16 > context:
        with pytest.raises(ContextOverflowError):
            fitted_max_tokens(size, None, context, "m")
        return
    fitted = fitted_max_tokens(size, None, context, "m")
    assert fitted is None or size.high + fitted == context


def test_explicit_max_tokens_and_unknown_contexts_are_sent_as_asked() -> None:
    size = prompt_size([ChatMessage(role="user", content="hi")])
    assert fitted_max_tokens(size, 100_000, 4096, "m") == 100_000  # a rolling window may generate past it
    assert fitted_max_tokens(size, None, None, "m") is None
    assert fitted_max_tokens(PromptSize(10**6, 1), None, None, "m") is None


@given(
    results=st.lists(st.integers(min_value=0, max_value=40_000), min_size=1, max_size=8),
    context=st.sampled_from([2048, 4096, 8192, 32768]),
)
def test_a_run_trimmed_by_the_planner_leaves_the_reply_the_room_the_planner_kept(
    results: list[int], context: int
) -> None:
    """The planner and the worker estimate with the same ratios (bridge.tokens): a conversation the planner
    trimmed to fit is never refused by the worker, and the worker gives the reply at least the room the planner
    set aside for the answer's turn, less the template tokens that open that turn."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are careful. " * 10},
        {"role": "user", "content": "Summarize the files. " * 10},
    ]
    for i, size in enumerate(results):
        call = {"id": f"c{i}", "type": "function", "function": {"name": "read", "arguments": '{"p": 1}'}}
        messages += [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"c{i}", "content": "z" * size},
        ]
    trimmed = trim_messages(messages, context)
    assert trimmed.fits
    chat = [msgspec.convert(m, ChatMessage) for m in trimmed.messages]
    given_tokens = fitted_max_tokens(prompt_size(chat), None, context, MODEL)
    assert given_tokens is not None
    assert given_tokens >= default_reply_tokens(context) - ANSWER_START_TOKENS


async def test_max_tokens_auto_is_the_room_that_is_left_on_every_tool() -> None:
    """``"auto"`` (as the autonomous tools take it) on chat_completion, text_completion and batch items: the room
    the context leaves, as when max_tokens is omitted; a batch item's "auto" overrides the batch's number."""
    text = "word " * 100
    items = [{"prompt": text, "model": MODEL, "max_tokens": "auto"}, {"prompt": text, "model": MODEL}]
    async with (
        _sim() as sim,
        open_bridge(settings_for(sim.url), child_servers=False) as bridge,
        Client(mcp_server(bridge), mode="legacy") as client,
    ):
        chat = await client.call_tool("chat_completion", {"prompt": text, "model": MODEL, "max_tokens": "auto"})
        completion = await client.call_tool("text_completion", {"prompt": text, "model": MODEL, "max_tokens": "auto"})
        batch = await client.call_tool("batch_chat", {"items": items, "max_tokens": 7})
        wrong = await client.call_tool("chat_completion", {"prompt": text, "model": MODEL, "max_tokens": "lots"})
        asked = [(r.endpoint, r.body.get("max_tokens")) for r in sim.requests(MODEL)]
    assert not chat.is_error
    assert not completion.is_error
    assert not batch.is_error
    room = 512 - prompt_size(user(text)).high
    assert asked[:2] == [("/v1/chat/completions", room), ("/v1/completions", 512 - prompt_size(text).high)]
    assert sorted(m for _, m in asked[2:]) == sorted([room, 7])
    assert wrong.is_error


async def test_an_image_takes_room_from_the_answer_but_never_causes_a_refusal() -> None:
    """Without max_tokens, each image is counted as a large one when sizing the answer; a refusal counts it as
    nothing (an image the model takes as a few tokens must never be refused)."""
    pixel = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    text_only = [ChatMessage(role="user", content=[{"type": "text", "text": "what is it?"}])]
    with_images = [ChatMessage(role="user", content=[{"type": "text", "text": "what is it?"}, pixel, pixel])]
    plain, seeing = prompt_size(text_only), prompt_size(with_images)
    assert seeing.low == plain.low
    assert seeing.high == plain.high + 2 * IMAGE_TOKENS[1]
    assert fitted_max_tokens(seeing, None, 4096, MODEL) == 4096 - seeing.high
    assert fitted_max_tokens(seeing, None, 1024, MODEL) is None  # no room left by the estimate: the server's default
