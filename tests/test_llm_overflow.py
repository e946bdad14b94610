"""A prompt over the context on llama-cpp-python: an empty 200 stream, and a typed 400 unstreamed.

The simulator's ``overflow_style="llama-cpp-python"`` answers that way. The bridge asks
once more without streaming to learn the real error: ``context_overflow``, not a
``backend_error`` with LM Studio's advice.
"""

from __future__ import annotations

import pytest

from bridge.app import open_bridge
from bridge.errors import ContextOverflowError, LLMResponseError
from bridge.messages import Chat, Complete
from bridge.settings import RetrySettings
from bridge.sim import SimConfig, SimModel, SimServer
from tests.test_llm_path import settings_for, user

MODEL = "small/context"
LONG = "word " * 52
"""260 characters: over the 64-token context by the simulator's count (4 characters a token), within it by the
bridge's optimistic estimate (6), so it is sent and the server's own overflow is what is tested."""


def _config(**overrides: object) -> SimConfig:
    model = SimModel(id=MODEL, loaded=True, context_length=64, max_context_length=64, reply_tokens=4)
    return SimConfig(models=(model,), **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["chat", "completion"])
async def test_an_empty_stream_is_asked_again_unstreamed_and_reads_as_overflow(kind: str) -> None:
    """Regression: the empty stream became backend_error with LM Studio-specific advice."""
    async with (
        SimServer(_config(overflow_style="llama-cpp-python")) as sim,
        open_bridge(settings_for(sim.url, retry=RetrySettings(attempts=1)), child_servers=False) as bridge,
    ):
        message = (
            Chat(model=MODEL, messages=user(LONG), max_tokens=4)
            if kind == "chat"
            else Complete(model=MODEL, prompt=LONG, max_tokens=4)
        )
        with pytest.raises(ContextOverflowError) as caught:
            await bridge.registry.ask(message)
        streamed = [bool(r.body.get("stream")) for r in sim.requests(MODEL)]
    assert streamed == [True, False]
    assert "context" in caught.value.message
    assert caught.value.retryable is False


async def test_a_short_prompt_streams_once() -> None:
    async with (
        SimServer(_config(overflow_style="llama-cpp-python")) as sim,
        open_bridge(settings_for(sim.url), child_servers=False) as bridge,
    ):
        reply = await bridge.registry.ask(Chat(model=MODEL, messages=user("hi"), max_tokens=4))
        streamed = [bool(r.body.get("stream")) for r in sim.requests(MODEL)]
    assert reply.finish_reason in ("stop", "length")
    assert streamed == [True]


async def test_lm_studios_in_stream_overflow_needs_no_second_request() -> None:
    async with (
        SimServer(_config()) as sim,
        open_bridge(settings_for(sim.url, retry=RetrySettings(attempts=1)), child_servers=False) as bridge,
    ):
        with pytest.raises(LLMResponseError) as caught:
            await bridge.registry.ask(Chat(model=MODEL, messages=user(LONG), max_tokens=4))
        streamed = [bool(r.body.get("stream")) for r in sim.requests(MODEL)]
    assert isinstance(caught.value, ContextOverflowError)
    assert streamed == [True]


@pytest.mark.parametrize("kind", ["chat", "completion"])
async def test_the_question_after_an_empty_stream_never_rides_the_closing_connection(kind: str) -> None:
    """Regression: llama-cpp-python closes the connection after the empty stream, and the unstreamed
    question went out at once on that kept-alive connection: backend_unavailable ("Server
    disconnected without sending a response") instead of context_overflow."""
    config = _config(overflow_style="llama-cpp-python", close_after_empty_stream=True)
    async with (
        SimServer(config) as sim,
        open_bridge(settings_for(sim.url, retry=RetrySettings(attempts=1)), child_servers=False) as bridge,
    ):
        message = (
            Chat(model=MODEL, messages=user(LONG), max_tokens=4)
            if kind == "chat"
            else Complete(model=MODEL, prompt=LONG, max_tokens=4)
        )
        for _ in range(2):
            with pytest.raises(ContextOverflowError):
                await bridge.registry.ask(message)
        reply = await bridge.registry.ask(Chat(model=MODEL, messages=user("hi"), max_tokens=4))
        streamed = [bool(r.body.get("stream")) for r in sim.requests(MODEL)]
    assert streamed == [True, False, True, False, True]
    assert reply.finish_reason in ("stop", "length")
