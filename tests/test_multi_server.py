"""One model on several LLM servers: a pool of slots on each, requests to the freest, failover without loss;
two in-process simulators serving the same model, on both anyio backends."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from bridge.app import Bridge, open_bridge
from bridge.errors import BridgeError
from bridge.frontend._format import models_output
from bridge.llm import ChatMessage
from bridge.messages import Chat, ChatResult, GetStatus, ListModels
from bridge.settings import BreakerSettings, BridgeSettings, ModelLimits, RetrySettings, ServerSettings
from bridge.sim import FaultKind, SimConfig, SimModel, SimServer
from bridge.sim.testing import wait_until
from tests._util import eventually_async

MODEL = "shared/model"


def sim(parallel: int, **config: Any) -> SimServer:
    model = SimModel(id=MODEL, loaded=True, parallel=parallel, reply_tokens=8, tokens_per_s=80)
    return SimServer(SimConfig(models=(model,), **config))


@asynccontextmanager
async def bridge_over(*servers: ServerSettings) -> AsyncIterator[Bridge]:
    settings = BridgeSettings(
        breaker=BreakerSettings(failures=3, cooldown=0.5),
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


async def test_each_servers_slots_are_learnt_from_the_server() -> None:
    """No slots configured: LM Studio's ``parallel`` (native API) and llama.cpp's ``/props`` ``total_slots``
    give each server's pool; list_models and bridge_status say so, and the bridge never queues inside either."""
    async with sim(2) as lmstudio, sim(3, api="llama.cpp") as llama:
        servers = (ServerSettings(url=lmstudio.url, name="lms"), ServerSettings(url=llama.url, name="llama"))
        async with bridge_over(*servers) as bridge:
            listed = await bridge.registry.ask(ListModels(refresh=True))
            outcomes = await chats(bridge, 20)
            status = await bridge.registry.ask(GetStatus())
        [entry] = listed.models
        assert [(c.server, c.slots, c.source) for c in entry.capacity] == [("lms", 2, "server"), ("llama", 3, "server")]
        assert all(isinstance(o, ChatResult) for o in outcomes), outcomes
        for server, slots in ((lmstudio, 2), (llama, 3)):
            assert server.stats.model(MODEL).max_generating == slots
            assert server.stats.model(MODEL).max_queued == 0
        [worker] = status.models
        assert (worker.slots, [c.source for c in worker.capacity]) == (5, ["server", "server"])


async def test_configured_slots_win_over_the_servers_word_and_others_get_the_default() -> None:
    """``servers[].slots`` overrides what the server says; a server that says nothing gets default_limits."""
    async with sim(2) as lmstudio, sim(3, api="openai") as plain:
        servers = (ServerSettings(url=lmstudio.url, name="lms", slots=1), ServerSettings(url=plain.url, name="plain"))
        async with bridge_over(*servers) as bridge:
            listed = await bridge.registry.ask(ListModels(refresh=True))
            text = models_output(listed).text
        [entry] = listed.models
        assert [(c.server, c.slots, c.source) for c in entry.capacity] == [
            ("lms", 1, "servers.slots"),
            ("plain", 4, "default"),
        ]
        assert "lms (1 slots, servers.slots), plain (4 slots, default_limits)" in text


async def test_a_server_that_comes_up_mid_run_gets_traffic() -> None:
    """The model's second server is down when the bridge starts: calls go to the first; once it is up and
    listed, the running worker sends calls there too, without a restart."""
    with socket.socket() as probe:  # a loopback port for the second server, free now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with sim(2) as first:
        late_url = f"http://127.0.0.1:{port}"
        servers = (ServerSettings(url=first.url, name="first"), ServerSettings(url=late_url, name="late"))
        async with bridge_over(*servers) as bridge:
            before = await chats(bridge, 6)
            async with sim(2, port=port) as late:
                await bridge.registry.ask(ListModels(refresh=True))
                after = await chats(bridge, 12)
                status = await bridge.registry.ask(GetStatus())
                late_completed = late.stats.model(MODEL).completed
    assert {o.server for o in before if isinstance(o, ChatResult)} == {"first"}
    assert all(isinstance(o, ChatResult) for o in after), after
    assert {o.server for o in after if isinstance(o, ChatResult)} == {"first", "late"}
    assert late_completed > 0
    [worker] = status.models
    assert worker.servers == ["first", "late"]
    assert worker.slots == 4


async def test_a_server_killed_mid_run_loses_nothing_and_gets_traffic_when_back() -> None:
    """Two servers, 24 slow calls; one server stops while calls run there. Every call ends in its result or a
    typed error, calls that had no output yet finish on the other server, and the stopped server, once it is up
    again on its port, gets calls again."""
    stop = anyio.Event()
    doomed = SimServer(
        SimConfig(models=(SimModel(id=MODEL, loaded=True, parallel=4, reply_tokens=40, tokens_per_s=40),))
    )

    async def serve_until_stopped(*, task_status: anyio.abc.TaskStatus[str]) -> None:
        async with doomed:
            task_status.started(doomed.url)
            await stop.wait()

    async with sim(4) as steady, anyio.create_task_group() as servers_tg:
        doomed_url = await servers_tg.start(serve_until_stopped)
        servers = (ServerSettings(url=doomed_url, name="doomed"), ServerSettings(url=steady.url, name="steady"))
        async with bridge_over(*servers) as bridge:
            outcomes: list[ChatResult | BridgeError] = []
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    outcomes.extend(await chats(bridge, 24))

                tg.start_soon(run)
                await wait_until(lambda: doomed.stats.model(MODEL).generating >= 2, timeout=10.0)
                stop.set()
            assert len(outcomes) == 24  # none lost: each ended, in a result or a typed error
            failed = [o for o in outcomes if isinstance(o, BridgeError)]
            assert all(o.retryable for o in failed), failed  # cut mid-output: said, and retryable
            assert len(failed) <= 4  # only calls that were streaming on the stopped server
            assert steady.stats.model(MODEL).completed >= 20
            async with sim(4, port=int(doomed_url.rsplit(":", 1)[1])) as back:
                again: list[ChatResult | BridgeError] = []

                async def back_in_use() -> bool:  # once its breaker's cooldown is over, a probe call goes there
                    again.extend(await chats(bridge, 8))
                    return back.stats.model(MODEL).completed > 0

                await eventually_async(back_in_use, within=20.0)
        assert all(isinstance(o, ChatResult) for o in again), again
