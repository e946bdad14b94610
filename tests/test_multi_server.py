"""One model on several LLM servers: a pool of slots on each, requests to the freest, failover without loss;
two in-process simulators serving the same model, on both anyio backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from bridge.app import Bridge, open_bridge
from bridge.errors import BridgeError
from bridge.llm import ChatMessage
from bridge.messages import Chat, ChatResult, GetStatus
from bridge.settings import BridgeSettings, ModelLimits, RetrySettings, ServerSettings
from bridge.sim import FaultKind, SimConfig, SimModel, SimServer

MODEL = "shared/model"


def sim(parallel: int, **config: Any) -> SimServer:
    model = SimModel(id=MODEL, loaded=True, parallel=parallel, reply_tokens=8, tokens_per_s=80)
    return SimServer(SimConfig(models=(model,), **config))


@asynccontextmanager
async def bridge_over(*servers: ServerSettings) -> AsyncIterator[Bridge]:
    settings = BridgeSettings(
        servers=list(servers),
        default_limits=ModelLimits(slots=4, queue=256),
        retry=RetrySettings(attempts=3, wait_initial=0.01, wait_max=0.05),
        listing_timeout=2.0,
    )
    async with open_bridge(settings, child_servers=False) as bridge:
        yield bridge


async def chats(bridge: Bridge, count: int) -> list[ChatResult | BridgeError]:
    """``count`` chats at once; each ends in its result or its typed error (anything else fails the test)."""
    outcomes: list[ChatResult | BridgeError] = []

    async def one(n: int) -> None:
        try:
            outcomes.append(
                await bridge.registry.ask(Chat(model=MODEL, messages=[ChatMessage(role="user", content=f"q{n}")]))
            )
        except BridgeError as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as tg:
        for n in range(count):
            tg.start_soon(one, n)
    return outcomes


async def test_a_model_on_two_servers_uses_the_slots_of_both() -> None:
    """Two servers with 2 and 4 slots: 24 calls at once keep both full and neither over its slots."""
    async with sim(2) as small, sim(4) as big:
        servers = (ServerSettings(url=small.url, name="small", slots=2), ServerSettings(url=big.url, name="big"))
        async with bridge_over(*servers) as bridge:
            outcomes = await chats(bridge, 24)
            status = await bridge.registry.ask(GetStatus())
        assert all(isinstance(o, ChatResult) for o in outcomes), outcomes
        assert {o.server for o in outcomes if isinstance(o, ChatResult)} == {"small", "big"}
        for server, slots in ((small, 2), (big, 4)):
            stats = server.stats.model(MODEL)
            assert stats.max_generating == slots
            assert stats.max_queued == 0  # the bridge never sent a server more than its slots
        assert small.stats.model(MODEL).completed + big.stats.model(MODEL).completed == 24
    [worker] = status.models
    assert worker.slots == 6


async def test_a_call_that_fails_on_one_server_is_retried_on_the_other() -> None:
    """One of the model's two servers answers every request with a 500: each call moves to the other server on
    its retry and completes there; none is lost."""
    async with sim(4, fault_rates={FaultKind.HTTP_500: 1.0}) as failing, sim(4) as working:
        servers = (ServerSettings(url=failing.url, name="failing"), ServerSettings(url=working.url, name="working"))
        async with bridge_over(*servers) as bridge:
            outcomes = await chats(bridge, 16)
        assert [type(o).__name__ for o in outcomes] == ["ChatResult"] * 16, outcomes
        assert {o.server for o in outcomes if isinstance(o, ChatResult)} == {"working"}
        assert working.stats.model(MODEL).completed == 16
        assert failing.stats.model(MODEL).completed == 0
