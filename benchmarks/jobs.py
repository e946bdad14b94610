"""Benchmark of jobs: 1,000 background chats submitted at once over 8 models.

Run: ``python -m benchmarks.jobs --backend asyncio [--quick]``; it prints one JSON line of figures.
The bridge runs in this process on ``--backend``'s event loop, with the MCP SDK's in-memory client
(every call goes through the tools, the JobsActor and the workers), against the simulator in its
own process: 8 models x 4 slots, each reply 100 ms.

* ``all finish, 0 lost``: every submitted job is fetched with ``job_result`` and must be a result.
* ``job_status`` latency: one caller asks the status of a random job in a closed loop while the
  jobs run (the tools, the JobsActor's mailbox and its records are under the full load).
* ``memory per finished job retained``: traced Python memory with every job finished and kept,
  minus before submitting, over the jobs; then again after their TTL expired (what is left is
  not the jobs': pools and windows that grew under the load). A second, identical round with
  ``tracemalloc`` on and a short TTL, so the first round's figures are not slowed by it.
"""

from __future__ import annotations

import gc
import random
import sys
import time
import tracemalloc
from typing import Any

import anyio
from mcp import Client

from benchmarks import _report
from benchmarks.stress import _load as L
from bridge.app import open_bridge
from bridge.frontend import create_server
from bridge.settings import BridgeSettings, JobSettings, ModelLimits, ServerSettings

MODELS = 8
SLOTS = 4
LATENCY = 0.1
TTL = 3.0


def _settings(url: str, jobs: int, ttl: float) -> BridgeSettings:
    return BridgeSettings(
        servers=[ServerSettings(url=url, name="sim")],
        default_limits=ModelLimits(slots=SLOTS, queue=jobs),
        jobs=JobSettings(ttl=ttl, max_kept=jobs * 2),
        listing_timeout=5.0,
    )


async def _round(url: str, ids: list[str], jobs: int, *, traced: bool) -> dict[str, float]:
    # The traced round lets its results expire; the other keeps them for as long as fetching them all takes.
    settings = _settings(url, jobs, TTL if traced else 3600.0)
    async with open_bridge(settings, child_servers=False) as bridge, Client(create_server(bridge)) as client:
        # Warm up: one call per model, so pools and caches are filled before anything is measured.
        for model in ids:
            await client.call_tool("chat_completion", {"prompt": "warm", "model": model})
        if traced:
            gc.collect()
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0] if traced else 0
        job_ids: list[str] = []
        refused = 0

        async def submit(index: int) -> None:
            nonlocal refused
            model = ids[index % len(ids)]
            result = await client.call_tool(
                "chat_completion", {"prompt": f"job {index}", "model": model, "background": True}
            )
            if result.is_error or not result.structured_content:
                refused += 1
                return
            job_ids.append(result.structured_content["job_id"])

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for index in range(jobs):
                tg.start_soon(submit, index)
        submitted_s = time.perf_counter() - started

        latencies: list[float] = []

        async def active() -> int:
            listing = await client.call_tool("list_jobs", {})
            assert listing.structured_content is not None
            count: int = listing.structured_content["active"]
            return count

        async def poll_status(done: anyio.Event) -> None:
            pick = random.Random(7)
            while not done.is_set() and job_ids:
                t = time.perf_counter()
                await client.call_tool("job_status", {"job_id": pick.choice(job_ids)})
                latencies.append(time.perf_counter() - t)

        finished = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(poll_status, finished)
            with anyio.fail_after(600):
                while await active():
                    await anyio.sleep(0.05)
            finished.set()
        all_done_s = time.perf_counter() - started
        retained = 0.0
        if traced:
            gc.collect()
            retained = (tracemalloc.get_traced_memory()[0] - before) / max(1, len(job_ids))
        results = 0
        for job_id in [] if traced else job_ids:
            result = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 0})
            if not result.is_error and result.structured_content and "content" in result.structured_content:
                results += 1
        after_ttl = 0.0
        if traced:
            await anyio.sleep(TTL + 0.5)  # a benchmark may wait out a TTL; the tests never do
            await active()  # expiry happens on the next request
            gc.collect()
            after_ttl = (tracemalloc.get_traced_memory()[0] - before) / max(1, len(job_ids))
            tracemalloc.stop()
    figures: dict[str, float] = {
        "jobs": float(jobs),
        "submitted": float(len(job_ids)),
        "refused": float(refused),
        "finished_with_result": float(results),
        "lost": float(jobs - results),
        "submit_all_s": submitted_s,
        "all_done_s": all_done_s,
        "server_bound_s": jobs / (MODELS * SLOTS) * LATENCY,
        "status_calls": float(len(latencies)),
        "status_p50_ms": L.percentile(latencies, 0.5) * 1000 if latencies else 0.0,
        "status_p99_ms": L.percentile(latencies, 0.99) * 1000 if latencies else 0.0,
    }
    if traced:
        figures["retained_bytes_per_job"] = retained
        figures["after_ttl_bytes_per_job"] = after_ttl
    return figures


async def run_all(quick: bool) -> dict[str, Any]:
    jobs = 100 if quick else 1000
    ids = L.model_ids(MODELS)
    models = [{"id": m, "loaded": True, "parallel": SLOTS, "latency": LATENCY, "reply_tokens": 40} for m in ids]
    async with L.open_sim(models, config={"auto_evict": False}) as sim:
        figures: dict[str, Any] = await _round(sim.url, ids, jobs, traced=False)
        memory = await _round(sim.url, ids, jobs, traced=True)
    figures["retained_bytes_per_job"] = memory["retained_bytes_per_job"]
    figures["after_ttl_bytes_per_job"] = memory["after_ttl_bytes_per_job"]
    figures["models"] = MODELS
    figures["slots"] = SLOTS
    figures["latency_s"] = LATENCY
    return figures


def main(argv: list[str] | None = None) -> int:
    return _report.child_main("python -m benchmarks.jobs", run_all, argv)


if __name__ == "__main__":
    sys.exit(main())
