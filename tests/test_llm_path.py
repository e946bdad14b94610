"""The LLM path through the actors — registry, workers, client — against the simulated LM Studio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from bridge.app import Bridge, open_bridge
from bridge.errors import (
    BadRequestError,
    BusyError,
    DeadlineExceededError,
    LLMConnectionError,
    LLMError,
    ModelNotFoundError,
)
from bridge.llm import Budgets, ChatMessage
from bridge.messages import (
    Chat,
    CheckHealth,
    Complete,
    Embed,
    GetStatus,
    ListModels,
    Progress,
    ResolveModel,
    Respond,
)
from bridge.settings import BreakerSettings, BridgeSettings, ModelLimits, RetrySettings, ServerSettings
from bridge.sim import Fault, FaultKind, Say, SimConfig, SimModel, SimServer
from tests._util import eventually, free_port

QWEN = "qwen/qwen3-coder-30b"
GEMMA = "google/gemma-3-12b"


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def sim_config(**overrides: Any) -> SimConfig:
    models = overrides.pop(
        "models",
        (
            SimModel(id=QWEN, loaded=True, reply_tokens=4),
            SimModel(id=GEMMA, loaded=True, reply_tokens=4),
            SimModel(id="text-embedding-nomic", type="embeddings", loaded=True),
        ),
    )
    return SimConfig(models=models, **overrides)


def settings_for(url: str, **overrides: Any) -> BridgeSettings:
    base: dict[str, Any] = {
        "servers": [ServerSettings(url=url, name="sim")],
        "retry": RetrySettings(attempts=3, wait_initial=0.01, wait_max=0.05),
        "listing_timeout": 2.0,
    }
    base.update(overrides)
    return BridgeSettings(**base)


@asynccontextmanager
async def running(config: SimConfig | None = None, **overrides: Any) -> AsyncIterator[tuple[SimServer, Bridge]]:
    async with (
        SimServer(config or sim_config()) as sim,
        open_bridge(settings_for(sim.url, **overrides), child_servers=False) as bridge,
    ):
        yield sim, bridge


async def test_chat_round_trip_reports_model_timing_and_usage() -> None:
    """A chat goes registry -> worker -> server and comes back with its figures."""
    async with running() as (sim, bridge):
        result = await bridge.registry.ask(Chat(model=QWEN, messages=user("hello")))
        assert result.model == QWEN
        assert result.content
        assert result.server == "sim"
        assert result.time_to_first_token_s is not None
        assert sim.stats.model(QWEN).completed == 1


async def test_completion_embedding_and_response() -> None:
    """Text completion, embeddings and stateful responses all route through the workers."""
    async with running() as (_, bridge):
        completion = await bridge.registry.ask(Complete(model=QWEN, prompt="Once upon"))
        assert completion.text
        embedded = await bridge.registry.ask(Embed(input=["a", "b", "c"]))
        assert len(embedded.vectors) == 3
        assert embedded.dimensions > 0
        first = await bridge.registry.ask(Respond(model=QWEN, input="remember 7"))
        second = await bridge.registry.ask(Respond(model=QWEN, input="what?", previous_response_id=first.id))
        assert first.id.startswith("resp_")
        assert second.id != first.id


async def test_unknown_model_error_lists_closest_matches() -> None:
    """A near-miss model name gets model_not_found with the likely intended id."""
    async with running() as (_, bridge):
        with pytest.raises(ModelNotFoundError) as info:
            await bridge.registry.ask(Chat(model="qwen3-coder", messages=user("x")))
        assert info.value.details["suggestions"][0] == QWEN
        assert "Did you mean 'qwen/qwen3-coder-30b'" in info.value.message
        assert isinstance(info.value, LLMError)


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        (Chat(model=QWEN, messages=user("   ")), "prompt is empty"),
        (Chat(model=QWEN, messages=user("x"), max_tokens=0), "max_tokens must be a positive"),
        (Chat(model=QWEN, messages=user("x"), temperature=3.5), "temperature must be between 0 and 2"),
        (Complete(model=QWEN, prompt=""), "prompt is empty"),
        (Embed(input=[]), "nothing to embed"),
        (Chat(model="text-embedding-nomic", messages=user("x")), "is an embedding model"),
    ],
)
async def test_bad_input_is_a_clear_bad_request(message: Any, fragment: str) -> None:
    """Bad arguments are refused with bad_request and advice, before any inference."""
    async with running() as (sim, bridge):
        with pytest.raises(BadRequestError, match=fragment):
            await bridge.registry.ask(message)
        assert sim.stats.total.requests == 0


async def test_default_model_resolves_without_an_inference() -> None:
    """No model / "default" resolves to a loaded model from the native API, spending no tokens."""
    config = sim_config(models=(SimModel(id=QWEN, loaded=False), SimModel(id=GEMMA, loaded=True)))
    async with running(config) as (sim, bridge):
        assert (await bridge.registry.ask(ResolveModel(model=None))).id == GEMMA
        assert (await bridge.registry.ask(ResolveModel(model="default"))).id == GEMMA
        assert sim.stats.total.requests == 0


async def test_cold_cache_lists_once_for_many_concurrent_validations() -> None:
    """100 concurrent validations on a cold cache cause exactly one listing of the server."""
    async with running() as (sim, bridge):
        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(bridge.registry.ask, ResolveModel(model=QWEN))
        assert sim.stats.http_requests == 1


async def test_two_models_with_different_limits_interleave_within_their_limits() -> None:
    """Each model's worker keeps to its own slot count while both run at once. Each reply takes long enough
    (0.5 s) that a loaded machine still starts a model's next request before its first one ended."""
    config = sim_config(
        models=(
            SimModel(id=QWEN, loaded=True, parallel=8, latency=0.5, reply_tokens=1),
            SimModel(id=GEMMA, loaded=True, parallel=8, latency=0.5, reply_tokens=1),
        )
    )
    limits = {QWEN: ModelLimits(slots=2, queue=64), GEMMA: ModelLimits(slots=3, queue=64)}
    async with running(config, models=limits) as (sim, bridge):
        async with anyio.create_task_group() as tg:
            for i in range(24):
                tg.start_soon(bridge.registry.ask, Chat(model=(QWEN, GEMMA)[i % 2], messages=user(f"q{i}")))
        assert sim.stats.model(QWEN).max_generating == 2
        assert sim.stats.model(GEMMA).max_generating == 3
        assert sim.stats.model(QWEN).completed == sim.stats.model(GEMMA).completed == 12


async def test_full_queue_answers_busy_with_retry_after() -> None:
    """Past slots + queue, a request is refused with busy and a retry_after, not queued forever."""
    config = sim_config(models=(SimModel(id=QWEN, loaded=True, latency=30.0),))
    async with running(config, models={QWEN: ModelLimits(slots=1, queue=1)}) as (_, bridge):
        async with anyio.create_task_group() as tg:
            tg.start_soon(bridge.registry.ask, Chat(model=QWEN, messages=user("a")))
            tg.start_soon(bridge.registry.ask, Chat(model=QWEN, messages=user("b")))
            await eventually(lambda: _queued(bridge) == 1)
            with pytest.raises(BusyError) as info:
                await bridge.registry.ask(Chat(model=QWEN, messages=user("c")))
            assert info.value.retryable
            assert info.value.retry_after is not None
            tg.cancel_scope.cancel()


def _queued(bridge: Bridge) -> int:
    sup = bridge.supervisor.child_supervisor("workers")
    return sum(child.in_flight for child in sup.which_children()) - 1


async def test_cancellation_closes_the_stream_and_frees_the_slot() -> None:
    """Cancelling the asker closes the HTTP stream: the server sees the disconnect, the slot is free."""
    config = sim_config(models=(SimModel(id=QWEN, loaded=True, ttft=0.0, tokens_per_s=20, reply_tokens=10_000),))
    async with running(config) as (sim, bridge):
        first = anyio.Event()

        async def on_progress(progress: Progress) -> None:
            if progress.stage == "first_token":
                first.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: bridge.registry.ask(Chat(model=QWEN, messages=user("long")), progress=on_progress))
            await first.wait()
            tg.cancel_scope.cancel()
        await eventually(lambda: sim.stats.model(QWEN).disconnects == 1)
        await eventually(lambda: sim.stats.model(QWEN).in_progress == 0)
        status = await bridge.registry.ask(GetStatus())
        assert status.models[0].in_flight == 0


async def test_a_server_that_drops_kept_alive_connections_loses_no_call() -> None:
    """llama.cpp's server now and then answers nothing more on a kept-alive connection after a whole stream
    (the simulator's ``close_kept_alive_every``): the request sent next on it fails unanswered, the client does
    not send it twice, the worker's retry sends it again, and from then on each request has its own connection."""
    async with running(sim_config(close_kept_alive_every=2)) as (sim, bridge):
        for index in range(6):
            result = await bridge.registry.ask(Chat(model=QWEN, messages=user(f"count to {index}")))
            assert result.content
        status = await bridge.registry.ask(GetStatus())
        assert sim.stats.model(QWEN).completed == 6
    (qwen,) = [worker for worker in status.models if worker.model == QWEN]
    assert (qwen.completed, qwen.failed, qwen.retries) == (6, 0, 1)  # only the 3rd request met a dropped one


async def test_dropped_kept_alive_connections_do_not_open_the_breaker() -> None:
    """Four callers at once on such a server: the drops are not a server that is down, so the breaker stays
    closed and every call is answered (before, three drops in a row opened it and calls failed for 5 s)."""
    async with running(sim_config(close_kept_alive_every=2)) as (sim, bridge):
        answers: list[str] = []

        async def caller(number: int) -> None:
            for index in range(6):
                answers.append(
                    (await bridge.registry.ask(Chat(model=QWEN, messages=user(f"{number}.{index}")))).content
                )

        async with anyio.create_task_group() as tg:
            for number in range(4):
                tg.start_soon(caller, number)
        status = await bridge.registry.ask(GetStatus())
        assert sim.stats.model(QWEN).completed == 24
    assert len(answers) == 24
    (qwen,) = [worker for worker in status.models if worker.model == QWEN]
    assert (qwen.completed, qwen.failed) == (24, 0)
    assert status.servers[0].breaker == "closed"


async def test_deadline_returns_timeout_and_cancels_the_generation() -> None:
    """A call whose deadline passes gets a timeout and the stream to the server is closed."""
    config = sim_config(models=(SimModel(id=QWEN, loaded=True, ttft=30.0),))
    async with running(config) as (sim, bridge):
        with pytest.raises(DeadlineExceededError):
            await bridge.registry.ask(Chat(model=QWEN, messages=user("slow")), timeout=0.3)
        await eventually(lambda: sim.stats.model(QWEN).in_progress == 0)


async def test_server_errors_are_retried_and_counted() -> None:
    """A 500 and a 429 (with Retry-After) are retried; the reply says how many retries it took."""
    async with running() as (sim, bridge):
        sim.script(QWEN, [Fault(FaultKind.HTTP_500), Fault(FaultKind.RATE_LIMIT, retry_after=0.01), Say("done")])
        result = await bridge.registry.ask(Chat(model=QWEN, messages=user("x")))
        assert result.content == "done"
        assert result.retries == 2


async def test_eviction_mid_stream_is_retried_after_reload() -> None:
    """A model unloaded mid-generation (JIT auto-evict) is retried and succeeds."""
    async with running() as (sim, bridge):
        sim.script(QWEN, [Fault(FaultKind.MODEL_UNLOADED, after_tokens=1), Say("again")])
        result = await bridge.registry.ask(Chat(model=QWEN, messages=user("x")))
        assert result.content == "again"
        assert result.retries == 1


async def test_context_overflow_in_a_200_stream_is_not_retried() -> None:
    """An `event: error` inside an HTTP 200 stream becomes context_overflow, once."""
    async with running() as (sim, bridge):
        sim.script(QWEN, [Fault(FaultKind.CONTEXT_OVERFLOW), Say("never")])
        with pytest.raises(LLMError) as info:
            await bridge.registry.ask(Chat(model=QWEN, messages=user("x")))
        assert info.value.code == "context_overflow"
        assert sim.pending_turns(QWEN) == 1


async def test_jit_loading_happens_once_for_concurrent_first_requests() -> None:
    """Concurrent first requests for an unloaded model load it once: the first goes alone."""
    config = sim_config(models=(SimModel(id=GEMMA, loaded=False, jit_load_delay=0.1, reply_tokens=2),))
    async with running(config) as (sim, bridge):
        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(bridge.registry.ask, Chat(model=GEMMA, messages=user(f"q{i}")))
        assert sim.stats.model(GEMMA).loads == 1
        assert sim.stats.model(GEMMA).completed == 6


async def test_progress_reports_queue_position_and_first_token() -> None:
    """A caller that listens hears its place in the queue, then the first token."""
    config = sim_config(models=(SimModel(id=QWEN, loaded=True, latency=0.2, reply_tokens=1),))
    seen: list[Progress] = []

    async def on_progress(progress: Progress) -> None:
        seen.append(progress)

    async with running(config, models={QWEN: ModelLimits(slots=1, queue=8)}) as (_, bridge):
        async with anyio.create_task_group() as tg:
            tg.start_soon(bridge.registry.ask, Chat(model=QWEN, messages=user("first")))
            await eventually(lambda: _queued(bridge) == 0 and _in_flight(bridge) == 1)
            await bridge.registry.ask(Chat(model=QWEN, messages=user("second")), progress=on_progress)
    stages = [p.stage for p in seen]
    assert stages[0] == "queued"
    assert seen[0].position == 1
    assert "first_token" in stages


def _in_flight(bridge: Bridge) -> int:
    sup = bridge.supervisor.child_supervisor("workers")
    return sum(child.in_flight for child in sup.which_children())


async def test_dead_server_opens_the_breaker_then_recovers() -> None:
    """Repeated connection failures open the breaker (fail fast); once the server is back, calls succeed."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = settings_for(
        url,
        breaker=BreakerSettings(failures=2, cooldown=0.2),
        retry=RetrySettings(attempts=1),
        budgets=Budgets(connect=1.0),
    )
    async with open_bridge(settings, child_servers=False) as bridge:
        async with SimServer(sim_config(port=port)):
            await bridge.registry.ask(ResolveModel(model=QWEN))  # the cache now knows the model
        for _ in range(2):
            with pytest.raises(LLMConnectionError):
                await bridge.registry.ask(Chat(model=QWEN, messages=user("x")))
        with pytest.raises(LLMConnectionError, match="circuit open") as info:
            await bridge.registry.ask(Chat(model=QWEN, messages=user("x")))
        assert info.value.retry_after is not None
        status = await bridge.registry.ask(GetStatus())
        assert status.servers[0].breaker == "open"
        async with SimServer(sim_config(port=port)) as sim:
            await anyio.sleep(0.25)  # the breaker's cooldown: after it, one probe may go through
            result = await bridge.registry.ask(Chat(model=QWEN, messages=user("x")))
            assert result.content
            assert sim.stats.model(QWEN).completed == 1


async def test_url_that_is_not_an_llm_server_is_a_typed_error() -> None:
    """A wrong base path (LM Studio answers unknown routes with HTTP 200 + error) says the URL is wrong."""
    async with (
        SimServer(sim_config()) as sim,
        open_bridge(settings_for(sim.url + "/not-the-api"), child_servers=False) as bridge,
    ):
        health = await bridge.registry.ask(CheckHealth())
        server = health.servers[0]
        assert server.reachable is False
        assert server.last_error is not None
        assert "URL" in server.last_error.message or "url" in server.last_error.message


async def test_server_that_never_answers_fails_within_the_listing_budget() -> None:
    """A server that accepts connections and never answers cannot hang a call: typed error, in budget."""
    async with (
        SimServer(sim_config(unresponsive=True)) as sim,
        open_bridge(settings_for(sim.url, listing_timeout=0.3), child_servers=False) as bridge,
    ):
        with pytest.raises(LLMConnectionError, match="did not list its models"):
            await bridge.registry.ask(Chat(model=QWEN, messages=user("x")))


async def test_list_models_filters_and_reports_servers() -> None:
    """list_models gives types, loaded state and the server; filters work."""
    config = sim_config(
        models=(
            SimModel(id=QWEN, loaded=True),
            SimModel(id=GEMMA),
            SimModel(id="text-embedding-nomic", type="embeddings"),
        )
    )
    async with running(config) as (_, bridge):
        everything = await bridge.registry.ask(ListModels())
        assert {m.id for m in everything.models} == {QWEN, GEMMA, "text-embedding-nomic"}
        loaded = await bridge.registry.ask(ListModels(loaded_only=True))
        assert [m.id for m in loaded.models] == [QWEN]
        embeddings = await bridge.registry.ask(ListModels(model_type="embedding"))
        assert [m.id for m in embeddings.models] == ["text-embedding-nomic"]
        assert everything.servers[0].lmstudio_native_api is True


async def test_running_out_of_time_keeps_the_text_generated_so_far() -> None:
    """When a call's deadline comes mid-generation, the timeout error carries the partial answer."""
    config = sim_config(models=(SimModel(id=QWEN, loaded=True, tokens_per_s=50, reply_tokens=5000),))
    async with running(config) as (_, bridge):
        with pytest.raises(DeadlineExceededError) as info:
            await bridge.registry.ask(Chat(model=QWEN, messages=user("go")), timeout=1.0)
        assert info.value.details["budget"] == "total"
        assert info.value.details["partial_content"].startswith("Reply to: go")
