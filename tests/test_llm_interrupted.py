"""A stream cut short is an error, never an empty success (llama-cpp-python's ``interrupt_requests``).

llama-cpp-python's server ends a running stream when another request arrives: a role chunk,
then ``[DONE]``, no finish reason. The simulator's ``interrupt`` fault does the same.
"""

from __future__ import annotations

import pytest

from bridge.errors import LLMResponseError
from bridge.messages import Chat, Complete
from bridge.settings import RetrySettings
from bridge.sim import Fault, FaultKind, Say
from tests.test_llm_path import QWEN, running, user


@pytest.mark.parametrize("after_tokens", [0, 3])
async def test_a_chat_stream_cut_without_a_finish_reason_is_a_retryable_error(after_tokens: int) -> None:
    async with running(retry=RetrySettings(attempts=1)) as (sim, bridge):
        sim.script(QWEN, [Fault(kind=FaultKind.INTERRUPT, after_tokens=after_tokens)])
        with pytest.raises(LLMResponseError) as info:
            await bridge.registry.ask(Chat(model=QWEN, messages=user("cut me"), max_tokens=16))
    error = info.value
    assert error.code == "backend_error"
    assert error.retryable
    assert error.details["reason"] == "interrupted"
    assert "interrupt_requests" in error.message


async def test_a_completion_stream_cut_without_a_finish_reason_is_an_error() -> None:
    async with running(retry=RetrySettings(attempts=1)) as (sim, bridge):
        sim.script(QWEN, [Fault(kind=FaultKind.INTERRUPT, after_tokens=1)])
        with pytest.raises(LLMResponseError, match="no finish reason"):
            await bridge.registry.ask(Complete(model=QWEN, prompt="Once upon", max_tokens=16))


async def test_an_interrupted_chat_is_retried_and_then_answers() -> None:
    async with running(retry=RetrySettings(attempts=2, wait_initial=0.01, wait_max=0.02)) as (sim, bridge):
        sim.script(QWEN, [Fault(kind=FaultKind.INTERRUPT), Say(text="whole answer")])
        result = await bridge.registry.ask(Chat(model=QWEN, messages=user("again")))
    assert result.content == "whole answer"
    assert result.finish_reason == "stop"
    assert result.retries == 1
