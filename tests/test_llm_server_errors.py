"""How the errors of LiteLLM and llama-cpp-python read: waits kept, deterministic failures not retried.

Each case is one the real servers showed (issue 16): the simulator answers the same way.
"""

from __future__ import annotations

import httpx
import pytest

from bridge.errors import LLMRateLimitError, LLMResponseError, UnsupportedEndpointError
from bridge.llm._errors import server_wait
from bridge.messages import Chat, Embed
from bridge.settings import RetrySettings
from bridge.sim import Fault, FaultKind
from tests.test_llm_path import QWEN, running, user

EMBED = "text-embedding-nomic"


async def test_litellms_provider_retry_after_is_kept_and_not_retried_into() -> None:
    """LiteLLM forwards ``llm_provider-retry-after: 60`` and no ``Retry-After``: the wait reaches the caller at once."""
    retry = RetrySettings(attempts=3, wait_initial=0.01, wait_max=5.0)
    async with running(retry=retry) as (sim, bridge):
        sim.script(
            QWEN,
            [Fault(kind=FaultKind.RATE_LIMIT, retry_after=60, retry_header="llm_provider-retry-after")] * 3,
        )
        with pytest.raises(LLMRateLimitError) as info:
            await bridge.registry.ask(Chat(model=QWEN, messages=user("x")))
        assert sim.pending_turns(QWEN) == 2, "no retry may go into the server's 60 s window"
    assert info.value.code == "rate_limited"
    assert info.value.retry_after == 60


async def test_a_wait_longer_than_the_time_left_is_answered_at_once() -> None:
    """A 3 s Retry-After within wait_max, but with 2 s of budget left: rate_limited now, not a retry later."""
    retry = RetrySettings(attempts=3, wait_initial=0.01, wait_max=10.0)
    async with running(retry=retry) as (sim, bridge):
        sim.script(QWEN, [Fault(kind=FaultKind.RATE_LIMIT, retry_after=3)] * 3)
        with pytest.raises(LLMRateLimitError):
            await bridge.registry.ask(Chat(model=QWEN, messages=user("x")), timeout=2.0)
        assert sim.pending_turns(QWEN) == 2


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"llm_provider-retry-after": "60"}, 60.0),
        ({"retry-after": "1", "llm_provider-retry-after": "30"}, 30.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "20ms"}, 360.0),
        ({"x-ratelimit-reset-tokens": "1.5s"}, 1.5),
        ({"x-ratelimit-reset-tokens": "soon"}, None),
        ({}, None),
    ],
)
def test_server_wait_reads_every_header_servers_use(headers: dict[str, str], wait: float | None) -> None:
    assert server_wait(httpx.Headers(headers)) == wait


async def test_embeddings_on_a_model_without_them_are_unsupported_not_retried() -> None:
    """llama-cpp-python's 500 "Llama model must be created with embedding=True" is not transient."""
    message = "Llama model must be created with embedding=True to call this method"
    async with running() as (sim, bridge):
        sim.script(EMBED, [Fault(kind=FaultKind.HTTP_500, message=message)] * 3)
        with pytest.raises(UnsupportedEndpointError, match="embedding"):
            await bridge.registry.ask(Embed(model=EMBED, input=["hello"]))
        assert sim.pending_turns(EMBED) == 2


async def test_a_500_that_repeats_word_for_word_is_not_retried_again() -> None:
    retry = RetrySettings(attempts=4, wait_initial=0.01, wait_max=0.02)
    async with running(retry=retry) as (sim, bridge):
        sim.script(QWEN, [Fault(kind=FaultKind.HTTP_500, message="tensor shape mismatch in layer 3")] * 4)
        with pytest.raises(LLMResponseError, match="tensor shape mismatch"):
            await bridge.registry.ask(Chat(model=QWEN, messages=user("x")))
        assert sim.pending_turns(QWEN) == 2, "one retry to see it repeat, then no more"


async def test_a_500_that_says_authentication_names_the_api_key() -> None:
    """LiteLLM without its key answers 500 "Authentication Error, No api key passed in": not transient."""
    async with running(retry=RetrySettings(attempts=3, wait_initial=0.01, wait_max=0.02)) as (sim, bridge):
        sim.script(QWEN, [Fault(kind=FaultKind.HTTP_500, message="Authentication Error, No api key passed in.")] * 3)
        with pytest.raises(LLMResponseError, match="LMSTUDIO_API_KEY") as info:
            await bridge.registry.ask(Chat(model=QWEN, messages=user("x")))
        assert sim.pending_turns(QWEN) == 2
    assert not info.value.retryable
    assert info.value.details["reason"] == "authentication"
