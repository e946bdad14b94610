"""Time budgets: each one expires as itself, and every way out closes the HTTP stream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from bridge.errors import LLMTimeoutError
from bridge.llm import Budgets, ChatRequest, EmbeddingRequest, StreamProgress, is_retryable
from tests.test_llm_fakes import DONE, Body, Recorder, ask, chunk, client, sse

SHORT = 0.05
LONG = 30.0


async def _expire(body: Body, budgets: Budgets, request: ChatRequest | None = None) -> LLMTimeoutError:
    async with client(Recorder(lambda http_request: sse(body)), budgets=budgets) as llm:
        with pytest.raises(LLMTimeoutError) as caught:
            await llm.chat(request or ask())
    assert body.closed
    return caught.value


async def _never_answers(request: httpx.Request) -> httpx.Response:
    """A server that does not even send headers."""
    await anyio.sleep(LONG)
    raise AssertionError("not reached")


async def _budget_a_mute_server_runs_out(call: Callable[[Any], Awaitable[object]]) -> str:
    """Which budget ran out when ``call(llm)`` went to a server that never answers."""
    async with client(Recorder(_never_answers), budgets=Budgets(first_token=SHORT, total=LONG)) as llm:
        with pytest.raises(LLMTimeoutError) as caught:
            await call(llm)
    budget: str = caught.value.details["budget"]
    return budget


async def test_first_token_budget_while_server_is_silent() -> None:
    """Headers but no token (JIT loading, queueing): the first-token budget runs out."""
    error = await _expire(Body(chunk(), LONG), Budgets(first_token=SHORT, idle=LONG, total=LONG))
    assert error.details["budget"] == "first_token"
    assert error.details["seconds"] == SHORT
    assert "budgets.first_token" in error.message
    assert "loading the model" in error.message
    assert not error.retryable
    assert is_retryable(error) is False


async def test_first_token_budget_before_headers() -> None:
    """A server that does not even send headers is caught by the first-token budget."""
    assert await _budget_a_mute_server_runs_out(lambda llm: llm.chat(ask())) == "first_token"


async def test_idle_budget_after_first_token() -> None:
    """A stream that stalls after some tokens runs out of its idle budget, reporting the tokens."""
    error = await _expire(Body(chunk(content="a"), chunk(content="b"), LONG), Budgets(idle=SHORT, total=LONG))
    assert error.details["budget"] == "idle"
    assert error.details["tokens"] == 2
    assert "after 2 tokens" in error.message
    assert "budgets.idle" in error.message
    assert is_retryable(error) is False


async def test_idle_budget_with_progress_reports() -> None:
    """Progress callbacks between chunks do not switch the idle budget off."""
    body = Body(chunk(content="a"), chunk(content="b"), LONG)
    seen: list[int] = []

    async def report(progress: StreamProgress) -> None:
        seen.append(progress.tokens)

    async with client(Recorder(lambda http_request: sse(body)), budgets=Budgets(idle=SHORT, total=LONG)) as llm:
        with pytest.raises(LLMTimeoutError) as caught:
            await llm.chat(ask(), on_progress=report)
    assert caught.value.details["budget"] == "idle"
    assert seen == [1, 2]
    assert body.closed


async def test_idle_budget_on_a_dribbling_stream() -> None:
    """Chunks arriving well within the idle budget keep the stream alive to its end."""
    parts: list[bytes | float] = []
    for i in range(20):
        parts += [chunk(content=str(i % 10)), SHORT / 5]
    body = Body(*parts, chunk(content="!", finish_reason="stop"), DONE)
    async with client(Recorder(lambda http_request: sse(body)), budgets=Budgets(idle=SHORT * 4, total=LONG)) as llm:
        outcome = await llm.chat(ask())
    assert outcome.content == "01234567890123456789!"
    assert body.closed


async def test_total_budget_on_endless_stream() -> None:
    """A stream that keeps producing forever runs out of the total budget, not the idle one."""
    error = await _expire(Body(chunk(content="a"), forever=True), Budgets(first_token=LONG, idle=LONG, total=SHORT))
    assert error.details["budget"] == "total"
    assert "max_tokens" in error.message
    assert is_retryable(error) is False


async def test_total_budget_shorter_than_first_token() -> None:
    """When the total budget ends before the first-token one, it is named as the one that ran out."""
    error = await _expire(Body(chunk(), LONG), Budgets(first_token=LONG, total=SHORT))
    assert error.details["budget"] == "total"


async def test_total_budget_on_non_streamed_call() -> None:
    """A non-streamed call is bounded by the total budget (the first-token one cannot apply)."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(LONG)
        raise AssertionError("not reached")

    async with client(Recorder(slow), budgets=Budgets(first_token=SHORT / 10, total=SHORT)) as llm:
        with pytest.raises(LLMTimeoutError) as caught:
            await llm.chat(ask(), stream=False)
    assert caught.value.details["budget"] == "total"


async def test_per_call_budgets_override() -> None:
    """Budgets passed to a call replace the client's defaults for that call."""
    body = Body(chunk(), LONG)
    async with client(Recorder(lambda request: sse(body)), budgets=Budgets(first_token=LONG, total=LONG)) as llm:
        with pytest.raises(LLMTimeoutError) as caught:
            await llm.chat(ask(), budgets=Budgets(first_token=SHORT))
    assert caught.value.details["budget"] == "first_token"


async def test_connect_budget() -> None:
    """httpx's connect timeout is the connect budget, and only it is worth retrying."""

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    async with client(Recorder(unreachable), budgets=Budgets(connect=2.5)) as llm:
        with pytest.raises(LLMTimeoutError) as caught:
            await llm.chat(ask())
    error = caught.value
    assert error.details["budget"] == "connect"
    assert error.details["seconds"] == 2.5
    assert error.retryable
    assert is_retryable(error) is True
    assert isinstance(error.__cause__, httpx.ConnectTimeout)
    assert "Is the server running" in error.message


async def test_quick_calls_use_first_token_budget() -> None:
    """An embeddings call that never answers runs out of the first-token budget."""
    embed = EmbeddingRequest(model="e", input="x")
    assert await _budget_a_mute_server_runs_out(lambda llm: llm.embed(embed)) == "first_token"


async def test_cancellation_closes_the_stream() -> None:
    """Cancelling the caller mid-stream closes the HTTP body at once, so the server stops generating."""
    body = Body(chunk(content="a"), LONG, chunk(content="never"), DONE)

    async with client(Recorder(lambda request: sse(body))) as llm:
        with anyio.CancelScope() as scope:

            async def cancel_on_first_token(progress: StreamProgress) -> None:
                scope.cancel()

            await llm.chat(ask(), on_progress=cancel_on_first_token)
            raise AssertionError("not reached")
    assert scope.cancelled_caught
    assert body.closed
    assert body.sent == 1


async def test_cancellation_while_waiting_for_tokens_closes_the_stream() -> None:
    """Cancellation while the client waits on the server also closes the body."""
    body = Body(chunk(), LONG, DONE)
    started = anyio.Event()

    async def watch(request: httpx.Request) -> httpx.Response:
        started.set()
        return sse(body)

    async with client(Recorder(watch)) as llm, anyio.create_task_group() as group:
        group.start_soon(llm.chat, ask())
        await started.wait()
        await anyio.wait_all_tasks_blocked()
        group.cancel_scope.cancel()
    assert body.closed
    assert body.sent == 1


async def test_stream_closed_after_done() -> None:
    """A server that keeps the connection open after ``[DONE]`` does not hold the call."""
    body = Body(chunk(content="a", finish_reason="stop"), DONE, LONG)
    async with client(Recorder(lambda request: sse(body)), budgets=Budgets(idle=LONG, total=LONG)) as llm:
        outcome = await llm.chat(ask())
    assert outcome.content == "a"
    assert body.closed


@pytest.mark.parametrize("field", ["connect", "first_token", "idle", "total"])
@pytest.mark.parametrize("value", [0, -1.0])
def test_budgets_must_be_positive(field: str, value: float) -> None:
    """A zero or negative budget is a configuration mistake, caught at construction."""
    with pytest.raises(ValueError, match=f"budgets.{field} must be a positive number"):
        Budgets(**{field: value})


def test_budgets_decode_from_config() -> None:
    """Budgets decode from configuration, with None disabling a budget and bad values rejected."""
    budgets = msgspec.json.decode(b'{"first_token": null, "total": 60}', type=Budgets)
    assert (budgets.connect, budgets.first_token, budgets.idle, budgets.total) == (10.0, None, 60.0, 60)
    with pytest.raises(msgspec.ValidationError, match=r"budgets.idle must be a positive number"):
        msgspec.json.decode(b'{"idle": 0}', type=Budgets)
