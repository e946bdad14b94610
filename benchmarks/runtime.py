"""Benchmark of the actor runtime: ask round trip, in-flight capacity, restart time.

Run: ``python -m benchmarks runtime [--quick]``. Each backend runs in its own
process so memory figures do not mix; the parent prints one table and writes
``benchmarks/results/runtime.json``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import statistics
import time
import tracemalloc
from typing import Any

import anyio

from benchmarks import _report
from bridge.errors import ActorCrashedError
from bridge.messages import Reply, Request
from bridge.runtime import Actor, ChildSpec, RequestContext, open_supervisor


class Done(Reply, frozen=True):
    n: int


class Echo(Request[Done], frozen=True, tag="echo"):
    n: int


class Hold(Request[Done], frozen=True, tag="hold"):
    n: int


class Crash(Request[Done], frozen=True, tag="crash"):
    pass


BenchMessage = Echo | Hold | Crash


class BenchActor(Actor[BenchMessage]):
    """No work at all, so the runtime's own cost is what is measured."""

    max_concurrent_requests = 1_000_000

    def __init__(self, gate: anyio.Event | None = None) -> None:
        super().__init__()
        self.gate = gate

    async def handle(self, message: BenchMessage, ctx: RequestContext) -> object:
        match message:
            case Echo(n=n):
                return Done(n=n)
            case Hold(n=n):
                assert self.gate is not None
                await self.gate.wait()
                return Done(n=n)
            case Crash():
                raise RuntimeError("crash on purpose")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def round_trip(samples: int) -> dict[str, float]:
    async with open_supervisor(children=[ChildSpec("echo", BenchActor)]) as sup:
        ref = sup.actor("echo")
        for i in range(min(2000, samples)):
            await ref.ask(Echo(n=i))
        clock = time.perf_counter
        latencies: list[float] = []
        gc.disable()
        try:
            for i in range(samples):
                start = clock()
                await ref.ask(Echo(n=i))
                latencies.append(clock() - start)
        finally:
            gc.enable()
        total_start = clock()
        concurrent = 64
        per_task = samples // concurrent

        async def caller() -> None:
            for i in range(per_task):
                await ref.ask(Echo(n=i))

        async with anyio.create_task_group() as tg:
            for _ in range(concurrent):
                tg.start_soon(caller)
        elapsed = clock() - total_start
    return {
        "ask_rtt_median_us": statistics.median(latencies) * 1e6,
        "ask_rtt_p99_us": percentile(latencies, 0.99) * 1e6,
        "ask_throughput_per_s_64_callers": per_task * concurrent / elapsed,
    }


async def in_flight(total: int, actors: int, *, concurrency: int | None, memory: bool) -> dict[str, float]:
    """``total`` asks at once; each actor accepts all of them (concurrency None) or ``concurrency``
    at a time, the rest waiting in its mailbox. With ``memory``, tracemalloc measures what they hold
    (it slows every allocation several-fold, so the largest counts run without it)."""
    gate = anyio.Event()

    def make_actor() -> BenchActor:
        actor = BenchActor(gate)
        if concurrency is not None:
            actor.max_concurrent_requests = concurrency
        return actor

    mailbox = 1024 if concurrency is None else total // actors
    specs = [ChildSpec(f"a{i}", make_actor, mailbox_size=mailbox, ask_timeout=600) for i in range(actors)]
    completed = 0
    errors = 0

    async def caller(ref: Any, n: int, started: anyio.Event | None) -> None:
        nonlocal completed, errors
        try:
            reply = await ref.ask(Hold(n=n))
            if reply.n == n:
                completed += 1
        except Exception:
            errors += 1

    async def baseline_caller(event: anyio.Event) -> None:
        await event.wait()

    # Baseline: the same number of bare caller tasks, to subtract the callers' own cost.
    baseline_bytes = 0
    if memory:
        gc.collect()
        tracemalloc.start()
        base_start = tracemalloc.get_traced_memory()[0]
        release = anyio.Event()
        async with anyio.create_task_group() as tg:
            for _ in range(total):
                tg.start_soon(baseline_caller, release)
            await anyio.sleep(0.2)
            baseline_bytes = tracemalloc.get_traced_memory()[0] - base_start
            release.set()
        tracemalloc.stop()
    gc.collect()

    async with open_supervisor(children=specs) as sup:
        refs = [sup.actor(f"a{i}") for i in range(actors)]
        if memory:
            tracemalloc.start()
        start_mem = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for n in range(total):
                tg.start_soon(caller, refs[n % actors], n, None)

            def accounted() -> int:
                return sum(c.in_flight + c.queued for c in sup.which_children())

            def held_now() -> int:
                return sum(c.in_flight for c in sup.which_children())

            # Measure once every ask is posted and the handler pools have grown to what they will hold.
            target = total if concurrency is None else min(total, concurrency * actors)
            while accounted() < total or held_now() < target:
                await anyio.sleep(0.05)
            held = held_now()
            in_flight_bytes = tracemalloc.get_traced_memory()[0] - start_mem
            tracemalloc.stop()
            fill_time = time.perf_counter() - start
            gate.set()
        drain_time = time.perf_counter() - start - fill_time
        del refs
    figures = {
        "in_flight_asks": float(total),
        "in_flight_held_at_once": float(held),
        "in_flight_completed": float(completed),
        "in_flight_lost": float(total - completed - errors),
        "in_flight_errors": float(errors),
        "in_flight_fill_s": fill_time,
        "in_flight_drain_s": drain_time,
    }
    if memory:
        figures["memory_asks"] = float(total)
        figures["bytes_per_in_flight_ask_total"] = in_flight_bytes / total
        figures["bytes_per_in_flight_ask_bridge"] = (in_flight_bytes - baseline_bytes) / total
    return figures


async def restart_time(cycles: int) -> dict[str, float]:
    spec = ChildSpec("crashy", BenchActor)
    times: list[float] = []
    async with open_supervisor(children=[spec], intensity=cycles * 2, period=3600) as sup:
        ref = sup.actor("crashy")
        for i in range(cycles):
            with contextlib.suppress(ActorCrashedError):
                await ref.ask(Crash())
            start = time.perf_counter()
            await ref.ask(Echo(n=i))
            times.append(time.perf_counter() - start)
        restarts = ref.restarts
    return {
        "restart_to_serving_median_us": statistics.median(times) * 1e6,
        "restart_to_serving_p99_us": percentile(times, 0.99) * 1e6,
        "restarts": float(restarts),
    }


async def run_all(quick: bool) -> dict[str, float]:
    figures: dict[str, float] = {}
    figures.update(await round_trip(2_000 if quick else 20_000))
    # 100,000 asks across 10 actors at a realistic concurrency limit (64 served each, the rest queued).
    # tracemalloc slows every allocation several-fold, so memory per ask comes from a 10,000-ask sample
    # with the same share of served to queued asks (one actor). "All accepted at once" gives every ask
    # its own handler task; it runs at the sample size, where the collector's passes over 200,000 live
    # tasks do not dominate the run.
    total, sample = (2_000, 2_000) if quick else (100_000, 10_000)
    queued = await in_flight(total, 10, concurrency=64, memory=sample == total)
    if sample != total:
        measured = await in_flight(sample, 10 * sample // total, concurrency=64, memory=True)
        queued |= {k: v for k, v in measured.items() if k.startswith(("bytes_", "memory_"))}
    figures.update({f"queued_{key}": value for key, value in queued.items()})
    figures.update(await in_flight(sample, 10, concurrency=None, memory=True))
    figures.update(await restart_time(20 if quick else 200))
    return figures


def main(argv: list[str] | None = None) -> int:
    # Crashes on purpose would flood stderr.
    return _report.child_main("python -m benchmarks runtime", run_all, argv, log_level=logging.CRITICAL)


if __name__ == "__main__":
    raise SystemExit(main())
