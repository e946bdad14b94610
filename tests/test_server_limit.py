"""A server-wide limit (``servers[].max_concurrent``) holds across every model of the server.

llama-cpp-python generates one request at a time for all its models and, by default, cuts a
running stream when another request arrives; the simulator's ``server_parallel`` and
``interrupt_requests`` do the same. Per-model slots cannot prevent that, the server gate can.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from bridge.app import Bridge, open_bridge
from bridge.config import CliFlags, ConfigError, load_settings
from bridge.errors import DeadlineExceededError
from bridge.messages import Chat, ChatResult, CheckHealth, GetStatus, ListModels, Progress
from bridge.settings import RetrySettings, ServerSettings
from bridge.sim import Fault, FaultKind, SimConfig, SimModel, SimServer
from tests.test_llm_path import GEMMA, QWEN, settings_for, user


def _models(**timing: Any) -> tuple[SimModel, ...]:
    return (
        SimModel(id=QWEN, loaded=True, reply_tokens=6, **timing),
        SimModel(id=GEMMA, loaded=True, reply_tokens=6, **timing),
    )


@asynccontextmanager
async def _bridge(sim: SimServer, max_concurrent: int | None, **overrides: Any) -> AsyncIterator[Bridge]:
    server = ServerSettings(url=sim.url, name="sim", max_concurrent=max_concurrent)
    async with open_bridge(settings_for(sim.url, servers=[server], **overrides), child_servers=False) as bridge:
        yield bridge


async def _chat_all(bridge: Bridge, models: list[str]) -> list[ChatResult]:
    results: list[ChatResult] = []

    async def one(model: str) -> None:
        results.append(await bridge.registry.ask(Chat(model=model, messages=user("hi"), max_tokens=6)))

    async with anyio.create_task_group() as tg:
        for model in models:
            tg.start_soon(one, model)
    return results


async def test_the_limit_holds_for_all_models_of_a_server_together() -> None:
    # Each model has 4 slots of its own; the server runs 2 at once, whichever models they are for.
    async with SimServer(SimConfig(models=_models(ttft=0.2))) as sim, _bridge(sim, 2) as bridge:
        results = await _chat_all(bridge, [QWEN, GEMMA] * 4)
        assert [r.finish_reason for r in results] == ["stop"] * 8
        assert sim.stats.total.max_generating == 2
        status = await bridge.registry.ask(GetStatus())
    (server,) = status.servers
    assert (server.max_concurrent, server.in_flight, server.queued) == (2, 0, 0)


async def test_without_a_limit_the_models_slots_alone_apply() -> None:
    # A long first token, so the four calls overlap on a loaded machine too (0.2 s let one finish first in CI).
    async with SimServer(SimConfig(models=_models(ttft=2.0))) as sim, _bridge(sim, None) as bridge:
        await _chat_all(bridge, [QWEN, GEMMA] * 2)
        status = await bridge.registry.ask(GetStatus())
        assert sim.stats.total.max_generating == 4
    assert status.servers[0].max_concurrent is None


async def test_a_llama_cpp_python_like_server_loses_no_answer_with_max_concurrent_1() -> None:
    # No retries: an interrupted stream would be an error here, not hidden by a second attempt.
    config = SimConfig(models=_models(tokens_per_s=200.0), server_parallel=1, interrupt_requests=True)
    async with SimServer(config) as sim, _bridge(sim, 1, retry=RetrySettings(attempts=1)) as bridge:
        results = await _chat_all(bridge, [QWEN, GEMMA, QWEN, GEMMA])
        interrupts = sim.stats.total.faults.get(FaultKind.INTERRUPT, 0)
    assert [r.finish_reason for r in results] == ["stop"] * 4
    assert all(r.content for r in results)
    assert interrupts == 0


async def test_the_simulator_cuts_a_running_stream_when_another_request_arrives() -> None:
    """What llama-cpp-python does with ``interrupt_requests`` on, and why the limit is needed."""
    config = SimConfig(models=_models(tokens_per_s=2.0), server_parallel=1, interrupt_requests=True)
    body = {"model": QWEN, "messages": [{"role": "user", "content": "long"}], "stream": True}
    async with SimServer(config) as sim, httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
        async with client.stream("POST", "/v1/chat/completions", json=body) as first:
            lines = first.aiter_lines()
            async for line in lines:
                if '"content"' in line:
                    break  # the first generation is running
            second = await client.post("/v1/chat/completions", json={**body, "stream": False, "model": GEMMA})
            rest = [line async for line in lines if line]
        interrupts = sim.stats.total.faults.get(FaultKind.INTERRUPT, 0)
    assert second.status_code == 200
    assert second.json()["choices"][0]["finish_reason"] == "stop"
    assert rest[-1] == "data: [DONE]"
    assert not any('"finish_reason":"stop"' in line.replace(" ", "") for line in rest)
    assert interrupts == 1


async def _hold_first(bridge: Bridge, sim: SimServer, started: anyio.Event) -> None:
    async def on_progress(progress: Progress) -> None:
        if progress.stage == "first_token":
            started.set()

    sim.script(QWEN, [Fault(kind=FaultKind.STALL, after_tokens=1, seconds=None)])
    await bridge.registry.ask(Chat(model=QWEN, messages=user("stall")), progress=on_progress)


async def test_a_cancelled_holder_gives_its_turn_to_the_next_request() -> None:
    async with SimServer(SimConfig(models=_models())) as sim, _bridge(sim, 1) as bridge:
        started, waiting = anyio.Event(), anyio.Event()
        results: list[ChatResult] = []

        async def second() -> None:
            async def on_progress(progress: Progress) -> None:
                if progress.stage == "queued" and "max_concurrent" in progress.message:
                    waiting.set()

            results.append(await bridge.registry.ask(Chat(model=GEMMA, messages=user("next")), progress=on_progress))

        async with anyio.create_task_group() as tg:
            holder = anyio.CancelScope()

            async def first() -> None:
                with holder:
                    await _hold_first(bridge, sim, started)

            tg.start_soon(first)
            await started.wait()
            tg.start_soon(second)
            await waiting.wait()  # the second request waits for the server, not for its model
            assert sim.stats.model(GEMMA).requests == 0
            holder.cancel()
        status = await bridge.registry.ask(GetStatus())
    assert [r.finish_reason for r in results] == ["stop"]
    assert status.servers[0].in_flight == 0
    assert status.servers[0].queued == 0


async def test_a_call_whose_time_runs_out_waiting_for_the_server_says_so() -> None:
    async with SimServer(SimConfig(models=_models())) as sim, _bridge(sim, 1) as bridge:
        started = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_hold_first, bridge, sim, started)
            await started.wait()
            with pytest.raises(DeadlineExceededError) as info:
                await bridge.registry.ask(Chat(model=GEMMA, messages=user("late")), timeout=1.0)
            tg.cancel_scope.cancel()
            assert sim.stats.model(GEMMA).requests == 0
    assert "max_concurrent" in info.value.message
    assert info.value.retryable
    assert info.value.details["server"] == "sim"


def test_max_concurrent_is_read_from_toml_and_checked(tmp_path: Any) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[[servers]]\nurl = "http://127.0.0.1:8000"\nmax_concurrent = 1\n')
    settings = load_settings(CliFlags(config=str(path)), environ={})
    assert settings.servers[0].max_concurrent == 1
    path.write_text('[[servers]]\nurl = "http://127.0.0.1:8000"\nmax_concurrent = 0\n')
    with pytest.raises(ConfigError, match=r"servers\[0\]\.max_concurrent"):
        load_settings(CliFlags(config=str(path)), environ={})


LISTINGS = ["list_models", "health_check", "a stale cache"]


@pytest.mark.parametrize("listing", LISTINGS)
async def test_a_model_listing_during_a_chat_cuts_nothing(listing: str) -> None:
    """Regression: model listings did not count against max_concurrent, and llama-cpp-python answers
    /v1/models under its generation lock: a listing sent while a chat streamed cut the chat (backend_error
    "[DONE] but no finish reason"). Now a listing waits briefly for a turn, else answers from the cache."""
    config = SimConfig(
        models=_models(), api="openai", server_parallel=1, interrupt_requests=True, listing_takes_turn=True
    )
    # With a cache that is always stale, every call's resolution lists the models again, in the background.
    ttl = 0.0 if listing == "a stale cache" else 60.0
    retry = RetrySettings(attempts=1)
    async with SimServer(config) as sim, _bridge(sim, 1, retry=retry, model_cache_ttl=ttl) as bridge:
        before = await bridge.registry.ask(ListModels())  # the cache is warm
        sim.script(QWEN, [Fault(kind=FaultKind.STALL, after_tokens=1, seconds=2.0)])
        started = anyio.Event()
        chats: list[ChatResult] = []

        async def on_progress(progress: Progress) -> None:
            if progress.stage == "first_token":
                started.set()

        async def chat(model: str, progress: Any = None) -> None:
            chats.append(await bridge.registry.ask(Chat(model=model, messages=user("hi")), progress=progress))

        async with anyio.create_task_group() as tg:
            tg.start_soon(chat, QWEN, on_progress)
            await started.wait()  # the chat is streaming (stalled after its first token)
            if listing == "a stale cache":
                tg.start_soon(chat, GEMMA)
            else:
                message = ListModels(refresh=True) if listing == "list_models" else CheckHealth()
                during = await bridge.registry.ask(message)
                assert [m.id for m in during.models] == [m.id for m in before.models]
                assert during.servers[0].reachable is True
        interrupts = sim.stats.total.faults.get(FaultKind.INTERRUPT, 0)
    assert [r.finish_reason for r in chats] == ["stop"] * len(chats)
    assert interrupts == 0
