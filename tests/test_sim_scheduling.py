"""The simulator's scheduling: slots and FIFO queues, JIT loads, auto-evict, TTL, disconnects, context limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from bridge.sim import Say, SimConfig, SimModel, SimServer
from bridge.sim.testing import read_sse, wait_until

USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        yield client


async def chat(client: httpx.AsyncClient, sim: SimServer, model: str, **extra: Any) -> httpx.Response:
    return await client.post(f"{sim.url}/v1/chat/completions", json={"model": model, "messages": USER, **extra})


async def test_requests_beyond_parallel_queue(http: httpx.AsyncClient) -> None:
    """With parallel=2, five concurrent requests generate two at a time and queue the other three."""
    model = SimModel(id="m", parallel=2, latency=0.05, reply_tokens=1, loaded=True)
    async with SimServer(SimConfig(models=(model,))) as sim:
        statuses: list[int] = []

        async def one() -> None:
            statuses.append((await chat(http, sim, "m")).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one)
            await wait_until(lambda: sim.stats.model("m").queued == 3)
            assert sim.stats.model("m").generating == 2
        stats = sim.stats.model("m")
        assert statuses == [200] * 5
        assert (stats.max_generating, stats.max_queued, stats.completed) == (2, 3, 5)
        assert (stats.generating, stats.queued, stats.in_progress) == (0, 0, 0)
        assert len(stats.slot_waits) == 5
        assert sum(1 for wait in stats.slot_waits if wait > 0) == 3
        assert sim.stats.total.max_generating == 2


async def test_queue_is_fifo(http: httpx.AsyncClient) -> None:
    """Queued requests get the slot in arrival order."""
    model = SimModel(id="m", parallel=1, latency=0.02, reply_tokens=1, loaded=True)
    async with SimServer(SimConfig(models=(model,))) as sim:
        sim.script("m", [Say(str(i)) for i in range(5)])
        finished: list[str] = []

        async def one() -> None:
            reply = (await chat(http, sim, "m")).json()
            finished.append(reply["choices"][0]["message"]["content"])

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(one)
                # the next request is sent only once this one is in (scripts are taken on arrival)
                await wait_until(lambda i=i: sim.stats.model("m").requests == i + 1)  # type: ignore[misc]
    assert finished == ["0", "1", "2", "3", "4"]


async def test_concurrent_first_requests_share_one_jit_load(http: httpx.AsyncClient) -> None:
    """Four first requests to an unloaded model wait for a single load."""
    model = SimModel(id="m", jit_load_delay=0.05, reply_tokens=1)
    async with SimServer(SimConfig(models=(model,))) as sim:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(chat, http, sim, "m")
        assert sim.stats.model("m").loads == 1
        assert sim.stats.model("m").completed == 4
        ids = [m["id"] for m in (await http.get(f"{sim.url}/v1/models")).json()["data"]]
        assert ids == ["m"]


async def test_duplicate_jit_loads_create_numbered_instances(http: httpx.AsyncClient) -> None:
    """With duplicate_jit_loads, concurrent first requests each load an instance: key, key:2, key:3."""
    model = SimModel(id="pub/m", jit_load_delay=0.05, reply_tokens=1)
    async with SimServer(SimConfig(models=(model,), duplicate_jit_loads=True)) as sim:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(chat, http, sim, "pub/m")
        assert sim.stats.model("pub/m").loads == 3
        listed = (await http.get(f"{sim.url}/api/v1/models")).json()["models"][0]["loaded_instances"]
        assert sorted(i["id"] for i in listed) == ["pub/m", "pub/m:2", "pub/m:3"]
        ids = [m["id"] for m in (await http.get(f"{sim.url}/v1/models")).json()["data"]]
        assert ids == ["pub/m", "pub/m:2", "pub/m:3"]


async def test_auto_evict_unloads_jit_model_mid_stream(http: httpx.AsyncClient) -> None:
    """A JIT load of B evicts JIT-loaded A mid-generation: A's stream ends with an error frame, its queue fails."""
    slow = SimModel(id="a", parallel=1, tokens_per_s=200, reply_tokens=10_000)
    other = SimModel(id="b", reply_tokens=2)
    pinned = SimModel(id="p", loaded=True, tokens_per_s=200, reply_tokens=40)
    async with SimServer(SimConfig(models=(slow, other, pinned))) as sim:
        results: dict[str, Any] = {}

        async def stream(model: str) -> None:
            body = {"model": model, "messages": USER, "stream": True}
            async with http.stream("POST", f"{sim.url}/v1/chat/completions", json=body) as response:
                results[model] = await read_sse(response)

        async def queued_plain() -> None:
            results["queued"] = await chat(http, sim, "a")

        async with anyio.create_task_group() as tg:
            tg.start_soon(stream, "a")
            tg.start_soon(stream, "p")
            await wait_until(lambda: sim.stats.model("a").generating == 1)
            tg.start_soon(queued_plain)
            await wait_until(lambda: sim.stats.model("a").queued == 1)
            reply = await chat(http, sim, "b")
            assert reply.status_code == 200
        evicted = results["a"]
        assert evicted[-1].event == "error"
        error = json.loads(evicted[-1].data)
        assert error["error"]["message"] == "Model unloaded."
        assert all(e.data != "[DONE]" for e in evicted)
        assert len(evicted) > 1  # some tokens came before the eviction
        assert results["queued"].status_code == 400
        assert results["queued"].json() == {"error": "Model unloaded."}
        assert results["p"][-1].data == "[DONE]"  # the manually loaded model is never evicted
        stats = sim.stats.model("a")
        assert (stats.evictions, stats.errors, stats.completed) == (1, 2, 0)
        v0 = {m["id"]: m["state"] for m in (await http.get(f"{sim.url}/api/v0/models")).json()["data"]}
        assert v0 == {"a": "not-loaded", "b": "loaded", "p": "loaded"}


async def test_without_auto_evict_both_stay_loaded(http: httpx.AsyncClient) -> None:
    """With auto_evict off, JIT models accumulate."""
    models = (SimModel(id="a", reply_tokens=1), SimModel(id="b", reply_tokens=1))
    async with SimServer(SimConfig(models=models, auto_evict=False)) as sim:
        await chat(http, sim, "a")
        await chat(http, sim, "b")
        states = [m["state"] for m in (await http.get(f"{sim.url}/api/v0/models")).json()["data"]]
        assert states == ["loaded", "loaded"]
        assert sim.stats.total.evictions == 0


async def test_jit_off_reports_unloaded_models(http: httpx.AsyncClient) -> None:
    """With JIT off: nothing loaded gives "No models loaded"; another model loaded gives model_not_found."""
    models = (SimModel(id="a"), SimModel(id="b"))
    async with SimServer(SimConfig(models=models, jit=False)) as sim:
        nothing = await chat(http, sim, "a")
        assert nothing.status_code == 400
        assert nothing.json()["error"].startswith("No models loaded.")
        await http.post(f"{sim.url}/api/v1/models/load", json={"model": "b"})
        other = await chat(http, sim, "a")
        assert other.status_code == 400
        assert other.json()["error"]["code"] == "model_not_found"
        assert (await chat(http, sim, "b")).status_code == 200


async def test_idle_ttl_unloads_a_jit_model(http: httpx.AsyncClient) -> None:
    """A `ttl` on the request that JIT-loads a model unloads it once idle that long."""
    async with SimServer(SimConfig(models=(SimModel(id="a", reply_tokens=1),))) as sim:
        assert (await chat(http, sim, "a", ttl=0.05)).status_code == 200
        assert sim.stats.model("a").loads == 1
        await wait_until(lambda: sim.stats.model("a").unloads == 1)
        v0 = (await http.get(f"{sim.url}/api/v0/models/a")).json()
        assert v0["state"] == "not-loaded"


async def test_client_disconnect_mid_stream_stops_generation(http: httpx.AsyncClient) -> None:
    """Closing a stream early is seen at once: generation stops, the slot frees, a disconnect is logged."""
    model = SimModel(id="m", tokens_per_s=500, reply_tokens=100_000, loaded=True)
    async with SimServer(SimConfig(models=(model,))) as sim:
        body = json.dumps({"model": "m", "messages": USER, "stream": True}).encode()
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        # A raw socket, not httpx: breaking out of httpx's line iterator leaves generators trio warns about.
        async with await anyio.connect_tcp("127.0.0.1", sim.port) as sock:
            await sock.send(head + body)
            received = b""
            while received.count(b"data: ") < 3:
                received += await sock.receive()
        assert received.startswith(b"HTTP/1.1 200 OK")
        await wait_until(lambda: sim.stats.model("m").disconnects == 1)
        stats = sim.stats.model("m")
        assert (stats.in_progress, stats.generating, stats.completed, stats.errors) == (0, 0, 0, 0)
        [record] = stats.disconnect_log
        assert record.model == "m"
        assert record.endpoint == "/v1/chat/completions"
        assert 3 <= record.tokens_sent < 100_000
        assert record.detected_at <= record.stopped_at
        assert sim.stats.total.disconnects == 1


async def test_client_leaving_the_queue_is_a_disconnect(http: httpx.AsyncClient) -> None:
    """A non-streamed request abandoned while queued leaves the queue and counts as a disconnect."""
    model = SimModel(id="m", parallel=1, latency=30, reply_tokens=1, loaded=True)
    async with SimServer(SimConfig(models=(model,))) as sim, anyio.create_task_group() as tg:
        tg.start_soon(chat, http, sim, "m")
        await wait_until(lambda: sim.stats.model("m").generating == 1)
        with anyio.CancelScope() as scope:
            tg.start_soon(_cancel_when, scope, lambda: sim.stats.model("m").queued == 1)
            await chat(http, sim, "m")
        await wait_until(lambda: sim.stats.model("m").disconnects == 1)
        assert sim.stats.model("m").queued == 0
        tg.cancel_scope.cancel()


async def _cancel_when(scope: anyio.CancelScope, condition: Any) -> None:
    await wait_until(condition)
    scope.cancel()


async def test_prompt_over_context_length(http: httpx.AsyncClient) -> None:
    """A prompt over the loaded context: 400 string when not streamed, event: error in a 200 stream."""
    model = SimModel(id="m", context_length=64, loaded=True)
    long_prompt = [{"role": "user", "content": "word " * 200}]
    async with SimServer(SimConfig(models=(model,))) as sim:
        plain = await http.post(f"{sim.url}/v1/chat/completions", json={"model": "m", "messages": long_prompt})
        assert plain.status_code == 400
        assert plain.json()["error"].startswith("Trying to keep the first 254 tokens when context the overflows.")
        body = {"model": "m", "messages": long_prompt, "stream": True}
        async with http.stream("POST", f"{sim.url}/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            events = await read_sse(response)
        [event] = events
        assert event.event == "error"
        message = json.loads(event.data)["error"]["message"]
        assert message == (
            "Input does not fit in context length. The input has 254 tokens, "
            "but the context length only supports 64 tokens."
        )
        assert sim.stats.model("m").errors == 2


async def test_generation_stops_at_the_context_length(http: httpx.AsyncClient) -> None:
    """Prompt plus reply cannot outgrow the context: the reply is cut with finish_reason length."""
    model = SimModel(id="m", context_length=20, reply_tokens=50, loaded=True)
    async with SimServer(SimConfig(models=(model,))) as sim:
        reply = (await chat(http, sim, "m")).json()
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["total_tokens"] == 20
