"""The retry predicate and the stamina-based retry loop."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest
import stamina

from bridge.errors import (
    BadRequestError,
    BusyError,
    ContextOverflowError,
    LLMConnectionError,
    LLMRateLimitError,
    LLMResponseError,
    LLMTimeoutError,
    ModelNotFoundError,
    ModelUnloadedError,
    UnsupportedEndpointError,
)
from bridge.llm import RetryNotice, call_with_retries, is_retryable
from tests.test_llm_fakes import DONE, Body, Recorder, as_json, ask, chunk, client, sse

_REQUEST = httpx.Request("POST", "http://lms.test:1234/v1/chat/completions")

TABLE: list[tuple[str, BaseException, bool | float]] = [
    ("connection", LLMConnectionError("refused"), True),
    ("connect-timeout", LLMTimeoutError("t", details={"budget": "connect"}), True),
    ("first-token-timeout", LLMTimeoutError("t", details={"budget": "first_token"}), False),
    ("idle-timeout", LLMTimeoutError("t", details={"budget": "idle"}), False),
    ("total-timeout", LLMTimeoutError("t", details={"budget": "total"}), False),
    ("server-5xx", LLMResponseError("500", retryable=True), True),
    ("server-5xx-retry-after", LLMResponseError("503", retryable=True, retry_after=3.0), 3.0),
    ("rate-limit-retry-after", LLMRateLimitError("429", retry_after=2.5), 2.5),
    ("rate-limit-retry-after-zero", LLMRateLimitError("429", retry_after=0.0), 0.0),
    ("rate-limit-no-header", LLMRateLimitError("429"), True),
    ("model-unloaded", ModelUnloadedError("unloaded"), True),
    ("context-overflow", ContextOverflowError("too long"), False),
    ("context-overflow-marked-retryable", ContextOverflowError("too long", retryable=True), False),
    ("response-error-4xx", LLMResponseError("401"), False),
    ("bad-request", BadRequestError("bad"), False),
    ("model-not-found", ModelNotFoundError("nope"), False),
    ("unsupported", UnsupportedEndpointError("no"), False),
    ("busy-is-not-ours", BusyError("full"), False),
    ("raw-connect-error", httpx.ConnectError("refused", request=_REQUEST), True),
    ("raw-read-error", httpx.ReadError("reset", request=_REQUEST), False),
    ("value-error", ValueError("bug"), False),
    ("keyboard-interrupt", KeyboardInterrupt(), False),
    ("generator-exit", GeneratorExit(), False),
]


@pytest.mark.parametrize(("error", "expected"), [pytest.param(e, x, id=n) for n, e, x in TABLE])
def test_retry_predicate(error: BaseException, expected: bool | float) -> None:
    """What is retried, what is not, and the wait a server asked for."""
    decision = is_retryable(error)
    assert decision == expected
    assert type(decision) is type(expected)


@pytest.fixture
def testing_mode() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3):
        yield


@pytest.mark.usefixtures("testing_mode")
async def test_call_with_retries_recovers_after_transient_failures() -> None:
    """Two 503s then a success: the caller gets the success and hears about each retry."""
    answers = iter([as_json({"error": "busy"}, 503), as_json({"error": "busy"}, 503)])
    body = Body(chunk(content="ok"), chunk(finish_reason="stop", role=False), DONE)
    recorder = Recorder(lambda request: next(answers, None) or sse(body))
    notices: list[RetryNotice] = []

    async def on_retry(notice: RetryNotice) -> None:
        notices.append(notice)

    async with client(recorder) as llm:
        outcome = await call_with_retries(
            lambda: llm.chat(ask()), attempts=5, wait_initial=0.01, wait_max=0.1, on_retry=on_retry
        )
    assert outcome.content == "ok"
    assert len(recorder.requests) == 3
    assert [notice.attempt for notice in notices] == [1, 2]
    assert all(isinstance(notice.error, LLMResponseError) for notice in notices)


async def requests_until_raised(error: str, status: int, raised: type[Exception]) -> int:
    """Three attempts against a server that answers every request with ``error``: ``raised`` comes out; how many
    requests the server got."""
    recorder = Recorder(lambda request: as_json({"error": error}, status))
    async with client(recorder) as llm:
        with pytest.raises(raised):
            await call_with_retries(lambda: llm.chat(ask()), attempts=3, wait_initial=0.01, wait_max=0.1)
    return len(recorder.requests)


@pytest.mark.usefixtures("testing_mode")
async def test_call_with_retries_gives_up_with_last_error() -> None:
    """When attempts run out, the last error comes out unchanged."""
    assert await requests_until_raised("Model unloaded.", 500, ModelUnloadedError) == 3


@pytest.mark.usefixtures("testing_mode")
async def test_call_with_retries_does_not_retry_permanent_errors() -> None:
    """A context overflow is raised after one attempt."""
    assert await requests_until_raised("Context size has been exceeded.", 400, ContextOverflowError) == 1


@pytest.mark.usefixtures("testing_mode")
async def test_retry_after_is_passed_on_and_long_ones_are_not_waited() -> None:
    """A short Retry-After is honoured and reported; one longer than wait_max is raised at once."""
    notices: list[RetryNotice] = []

    async def on_retry(notice: RetryNotice) -> None:
        notices.append(notice)

    short = Recorder(lambda request: as_json({"error": "slow down"}, 429, {"Retry-After": "0.05"}))
    async with client(short) as llm:
        with pytest.raises(LLMRateLimitError):
            await call_with_retries(
                lambda: llm.chat(ask()), attempts=2, wait_initial=0.01, wait_max=1, on_retry=on_retry
            )
    assert len(short.requests) == 3  # testing mode forces 3 attempts
    assert [notice.wait for notice in notices] == [0.05, 0.05]

    long = Recorder(lambda request: as_json({"error": "slow down"}, 429, {"Retry-After": "3600"}))
    async with client(long) as llm:
        with pytest.raises(LLMRateLimitError) as caught:
            await call_with_retries(lambda: llm.chat(ask()), attempts=3, wait_initial=0.01, wait_max=1)
    assert len(long.requests) == 1
    assert caught.value.retry_after == 3600


@pytest.mark.usefixtures("testing_mode")
async def test_cancellation_is_never_retried() -> None:
    """Cancelling the caller during an attempt stops the loop; no second attempt starts."""
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(30)

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: call_with_retries(attempt, attempts=3, wait_initial=0.01, wait_max=0.1))
        await anyio.wait_all_tasks_blocked()
        group.cancel_scope.cancel()
    assert calls == 1


async def test_real_backoff_waits_between_attempts() -> None:
    """Outside testing mode stamina sleeps between attempts and still retries the predicate's picks."""
    failures = [LLMConnectionError("refused"), LLMConnectionError("refused")]

    async def attempt() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    assert await call_with_retries(attempt, attempts=3, wait_initial=0.001, wait_max=0.002) == "ok"
    assert failures == []


async def test_custom_predicate() -> None:
    """A caller can narrow what is retried."""
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise LLMConnectionError("refused")

    with pytest.raises(LLMConnectionError):
        await call_with_retries(attempt, attempts=3, wait_initial=0.001, wait_max=0.002, predicate=lambda exc: False)
    assert calls == 1
