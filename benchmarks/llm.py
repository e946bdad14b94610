"""Benchmark of the LLM path (registry + workers + client) against the simulated LM Studio.

Run: ``python -m benchmarks llm [--quick]``. The simulator runs in its own
process (so it does not share the bridge's core) except for the cancellation
scenario, which needs one clock on both sides.
"""

from __future__ import annotations

import functools
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec

from benchmarks import _report
from benchmarks._callers import run_callers
from bridge.actors.registry import ModelRegistryActor
from bridge.app import open_bridge
from bridge.errors import BridgeError
from bridge.llm import ChatMessage
from bridge.messages import Chat, Progress, ResolveModel
from bridge.runtime import ChildSpec
from bridge.settings import BreakerSettings, BridgeSettings, ModelLimits, ServerSettings
from bridge.sim import SimConfig, SimModel, SimServer
from bridge.sim.testing import sim_process


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def sim_file(models: list[dict[str, Any]]) -> str:
    handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
    json.dump({"models": models}, handle)
    handle.close()
    return handle.name


async def throughput(quick: bool) -> dict[str, float]:
    """4 models x 4 slots at 50 ms per request; C concurrent callers; achieved / server-bound limit."""
    models, slots, latency = 4, 4, 0.05
    requests = 160 if quick else 1280
    callers = 256
    ids = [f"bench/model-{i}" for i in range(models)]
    path = sim_file([{"id": i, "loaded": True, "parallel": slots, "latency": latency, "reply_tokens": 1} for i in ids])
    try:
        async with sim_process(["--config", path]) as sim:
            limits = {i: ModelLimits(slots=slots, queue=4096) for i in ids}
            settings = BridgeSettings(servers=[ServerSettings(url=sim.url, name="sim")], models=limits)
            async with open_bridge(settings, child_servers=False) as bridge:
                for model in ids:
                    await bridge.registry.ask(Chat(model=model, messages=user("warm")))
                failures = 0

                async def one(index: int) -> None:
                    nonlocal failures
                    try:
                        await bridge.registry.ask(Chat(model=ids[index % models], messages=user(f"q{index}")))
                    except Exception:
                        failures += 1

                elapsed = await run_callers(requests, callers, one)
            bare_elapsed = await _bare_httpx_same_workload(sim.url, ids, slots, requests, callers)
    finally:
        Path(path).unlink()  # noqa: ASYNC240 - one tiny temp file, after the measurement
    limit = models * slots / latency
    achieved = requests / elapsed
    bare = requests / bare_elapsed
    return {
        "throughput_req_per_s": achieved,
        "throughput_limit_req_per_s": limit,
        "throughput_ratio": achieved / limit,
        "throughput_bare_httpx_req_per_s": bare,
        "throughput_ratio_to_bare_httpx": achieved / bare,
        "throughput_failures": float(failures),
    }


async def _one_model_rate(urls: list[str], model: str, requests: int, callers: int, slots: int) -> tuple[float, int]:
    """req/s of one model served by ``urls`` (one server each), and the failed calls."""
    servers = [ServerSettings(url=url, name=f"s{n}", slots=slots) for n, url in enumerate(urls)]
    settings = BridgeSettings(servers=servers, models={model: ModelLimits(slots=slots, queue=4096)})
    async with open_bridge(settings, child_servers=False) as bridge:
        for _ in range(len(urls) * slots):
            await bridge.registry.ask(Chat(model=model, messages=user("warm")))
        failures = 0

        async def one(index: int) -> None:
            nonlocal failures
            try:
                await bridge.registry.ask(Chat(model=model, messages=user(f"q{index}")))
            except BridgeError:
                failures += 1

        elapsed = await run_callers(requests, callers, one)
    return requests / elapsed, failures


_SHARED_MODEL, _SHARED_SLOTS, _SHARED_LATENCY = "bench/shared-model", 4, 0.1


def _shared_model_file() -> str:
    """The simulator config of the model the multi-server scenarios put on each server: 4 slots @ 100 ms."""
    spec = {"id": _SHARED_MODEL, "loaded": True, "parallel": _SHARED_SLOTS, "latency": _SHARED_LATENCY}
    return sim_file([{**spec, "reply_tokens": 1}])


async def two_servers(quick: bool) -> dict[str, float]:
    """1 model on 2 servers x 4 slots @ 100 ms against the same model on 1 server, 128 callers, same run."""
    slots, latency, callers = _SHARED_SLOTS, _SHARED_LATENCY, 128
    requests = 80 if quick else 640
    model, path = _SHARED_MODEL, _shared_model_file()
    try:
        async with sim_process(["--config", path]) as first, sim_process(["--config", path]) as second:
            one_rate, one_failed = await _one_model_rate([first.url], model, requests, callers, slots)
            two_rate, two_failed = await _one_model_rate([first.url, second.url], model, requests, callers, slots)
    finally:
        Path(path).unlink()  # noqa: ASYNC240 - one tiny temp file, after the measurement
    return {
        "one_server_req_per_s": one_rate,
        "two_servers_req_per_s": two_rate,
        "two_servers_speedup": two_rate / one_rate,
        "two_servers_limit_req_per_s": 2 * slots / latency,
        "two_servers_failures": float(one_failed + two_failed),
    }


async def server_killed(quick: bool) -> dict[str, float]:
    """The two-server run with one server SIGKILLed a third of the way in: calls lost (must be 0), calls failed
    (by code), and the recovery time from the server's return on its port to its first answered call."""
    slots, callers = _SHARED_SLOTS, 128
    requests = 120 if quick else 640
    model, path = _SHARED_MODEL, _shared_model_file()
    with socket.socket() as probe:  # the killed server comes back on the same port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    codes: dict[str, int] = {}
    answered = 0
    try:
        async with sim_process(["--config", path]) as steady:
            servers = [
                ServerSettings(url=steady.url, name="steady"),
                ServerSettings(url=f"http://127.0.0.1:{port}", name="killed"),
            ]
            settings = BridgeSettings(
                servers=servers,
                models={model: ModelLimits(slots=slots, queue=4096)},
                breaker=BreakerSettings(cooldown=1.0),
            )
            async with open_bridge(settings, child_servers=False) as bridge:
                async with sim_process(["--config", path, "--port", str(port)]) as doomed:
                    await bridge.registry.ask(Chat(model=model, messages=user("warm")))
                    kill_at = anyio.Event()

                    async def one(index: int) -> None:
                        nonlocal answered
                        if index == requests // 3:
                            kill_at.set()
                        try:
                            await bridge.registry.ask(Chat(model=model, messages=user(f"q{index}")))
                            answered += 1
                        except BridgeError as error:
                            codes[str(error.code)] = codes.get(str(error.code), 0) + 1

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(run_callers, requests, callers, one)
                        await kill_at.wait()
                        doomed.process.kill()  # SIGKILL: no goodbye, streams cut mid-response
                async with sim_process(["--config", path, "--port", str(port)]):
                    back = anyio.current_time()
                    with anyio.fail_after(60):
                        while True:
                            result = await bridge.registry.ask(Chat(model=model, messages=user("back?")))
                            if result.server == "killed":
                                break
                    recovery = anyio.current_time() - back
    finally:
        Path(path).unlink()  # noqa: ASYNC240 - one tiny temp file, after the measurement
    figures = {
        "server_killed_calls": float(requests),
        "server_killed_lost": float(requests - answered - sum(codes.values())),
        "server_killed_failed": float(sum(codes.values())),
        "server_killed_recovery_s": recovery,
    }
    figures.update({f"server_killed_failed_{code}": float(n) for code, n in sorted(codes.items())})
    return figures


async def _bare_httpx_same_workload(url: str, ids: list[str], slots: int, requests: int, callers: int) -> float:
    """The practical ceiling: the same requests from a bare httpx client, ``slots`` at a time per model."""
    limiters = {model: anyio.CapacityLimiter(slots) for model in ids}
    async with httpx.AsyncClient(base_url=url, trust_env=False, limits=httpx.Limits(max_connections=256)) as client:

        async def one(index: int) -> None:
            model = ids[index % len(ids)]
            body = {"model": model, "messages": [{"role": "user", "content": f"q{index}"}], "stream": True}
            async with limiters[model], client.stream("POST", "/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        msgspec.json.decode(line[6:])

        return await run_callers(requests, callers, one)


async def validation(quick: bool) -> dict[str, float]:
    """Cached validation cost and cold-cache single-flight."""
    config = SimConfig(models=(SimModel(id="qwen/qwen3-coder-30b", loaded=True), SimModel(id="google/gemma-3-12b")))
    async with SimServer(config) as sim:
        settings = BridgeSettings(servers=[ServerSettings(url=sim.url, name="sim")])
        async with open_bridge(settings, child_servers=False) as bridge:
            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    tg.start_soon(bridge.registry.ask, ResolveModel(model="qwen/qwen3-coder-30b"))
            cold_listings = sim.stats.http_requests
            samples = 500 if quick else 20000
            asks: list[float] = []
            for _ in range(samples):
                start = time.perf_counter()
                await bridge.registry.ask(ResolveModel(model="qwen/qwen3-coder-30b"))
                asks.append(time.perf_counter() - start)
        # The validation itself, as the registry does it on a warm cache (no mailbox hop): a probe
        # registry started beside the real one, whose instance we keep to call directly.
        holder: list[ModelRegistryActor] = []

        def probe_registry() -> ModelRegistryActor:
            holder.append(ModelRegistryActor(settings, bridge.clients, bridge.supervisor.child_supervisor("workers")))
            return holder[-1]

        async with open_bridge(settings, child_servers=False) as bridge:
            probe = await bridge.supervisor.start_child(ChildSpec("probe", probe_registry))
            await probe.ask(ResolveModel(model="qwen/qwen3-coder-30b"))
            registry = holder[-1]
            direct: list[float] = []
            for _ in range(samples):
                start = time.perf_counter()
                await registry._resolve("qwen/qwen3-coder-30b")
                direct.append(time.perf_counter() - start)
    return {
        "cold_cache_listing_requests": float(cold_listings),
        "validation_ask_median_us": statistics.median(asks) * 1e6,
        "validation_in_registry_median_us": statistics.median(direct) * 1e6,
    }


async def cancellation(quick: bool) -> dict[str, float]:
    """Caller cancels mid-stream; when does the simulator see the connection closed?"""
    rounds = 20 if quick else 100
    config = SimConfig(models=(SimModel(id="m", loaded=True, parallel=64, tokens_per_s=200, reply_tokens=100_000),))
    delays: list[float] = []
    async with SimServer(config) as sim:
        settings = BridgeSettings(servers=[ServerSettings(url=sim.url, name="sim")])
        async with open_bridge(settings, child_servers=False) as bridge:
            for i in range(rounds):
                first = anyio.Event()

                async def on_progress(progress: Progress, first: anyio.Event = first) -> None:
                    if progress.stage == "first_token":
                        first.set()

                before = sim.stats.model("m").disconnects
                async with anyio.create_task_group() as tg:
                    chat = Chat(model="m", messages=user(f"{i}"))
                    tg.start_soon(functools.partial(bridge.registry.ask, chat, progress=on_progress))
                    await first.wait()
                    await anyio.sleep(0.01)
                    cancelled_at = anyio.current_time()
                    tg.cancel_scope.cancel()
                with anyio.fail_after(5):
                    while sim.stats.model("m").disconnects == before:
                        await anyio.sleep(0.0005)
                record = sim.stats.model("m").disconnect_log[-1]
                delays.append(record.detected_at - cancelled_at)
    return {
        "cancel_to_disconnect_p50_ms": statistics.median(delays) * 1e3,
        "cancel_to_disconnect_p99_ms": percentile(delays, 0.99) * 1e3,
        "cancel_rounds": float(rounds),
    }


async def added_latency(quick: bool) -> dict[str, float]:
    """Registry + worker over a bare httpx streamed chat to the same simulator (sequential)."""
    samples = 100 if quick else 2000
    path = sim_file([{"id": "m", "loaded": True, "parallel": 4, "latency": 0.0, "reply_tokens": 1}])
    try:
        async with sim_process(["--config", path]) as sim:
            body = {
                "model": "m",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            bare: list[float] = []
            async with httpx.AsyncClient(base_url=sim.url, trust_env=False) as client:
                for _ in range(samples):
                    start = time.perf_counter()
                    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                        async for line in response.aiter_lines():
                            if line.startswith("data: {"):
                                msgspec.json.decode(line[6:])
                    bare.append(time.perf_counter() - start)
            settings = BridgeSettings(servers=[ServerSettings(url=sim.url, name="sim")])
            bridged: list[float] = []
            async with open_bridge(settings, child_servers=False) as bridge:
                await bridge.registry.ask(Chat(model="m", messages=user("warm")))
                for _ in range(samples):
                    start = time.perf_counter()
                    await bridge.registry.ask(Chat(model="m", messages=user("hi")))
                    bridged.append(time.perf_counter() - start)
    finally:
        Path(path).unlink()  # noqa: ASYNC240 - one tiny temp file, after the measurement
    return {
        "bare_httpx_median_us": statistics.median(bare) * 1e6,
        "bridge_median_us": statistics.median(bridged) * 1e6,
        "added_median_us": (statistics.median(bridged) - statistics.median(bare)) * 1e6,
        "added_p99_us": (percentile(bridged, 0.99) - percentile(bare, 0.99)) * 1e6,
    }


async def fail_fast(quick: bool) -> dict[str, float]:
    """The LLM server dies; once its breaker is open, how fast does a call get ``backend_unavailable``?"""
    calls = 50 if quick else 500
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = BridgeSettings(
        servers=[ServerSettings(url=f"http://127.0.0.1:{port}", name="sim")],
        breaker=BreakerSettings(failures=1, cooldown=600.0),
        model_cache_ttl=600.0,
    )
    latencies: list[float] = []
    codes: set[str] = set()
    async with open_bridge(settings, child_servers=False) as bridge:
        async with SimServer(SimConfig(models=(SimModel(id="m", loaded=True),), port=port)):
            await bridge.registry.ask(ResolveModel(model="m"))
        try:
            await bridge.registry.ask(Chat(model="m", messages=user("opens the breaker")))
        except BridgeError as error:
            codes.add(error.code)
        for i in range(calls):
            start = time.perf_counter()
            try:
                await bridge.registry.ask(Chat(model="m", messages=user(f"{i}")))
            except BridgeError as error:
                codes.add(error.code)
            latencies.append(time.perf_counter() - start)
    return {
        "fail_fast_p50_ms": statistics.median(latencies) * 1e3,
        "fail_fast_p99_ms": percentile(latencies, 0.99) * 1e3,
        "fail_fast_calls": float(calls),
        "fail_fast_all_backend_unavailable": float(codes == {"backend_unavailable"}),
    }


SCENARIOS = {
    "throughput": throughput,
    "validation": validation,
    "cancellation": cancellation,
    "added_latency": added_latency,
    "fail_fast": fail_fast,
    "two_servers": two_servers,
    "server_killed": server_killed,
}


async def run_all(quick: bool, only: str | None = None) -> dict[str, float]:
    figures: dict[str, float] = {}
    for name, scenario in SCENARIOS.items():
        if only is not None and name != only:
            continue
        figures.update(await scenario(quick))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = _report.child_parser("python -m benchmarks.llm")
    parser.add_argument("--only", choices=list(SCENARIOS))
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    _report.emit(anyio.run(run_all, args.quick, args.only, backend=args.backend))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
