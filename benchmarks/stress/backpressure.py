"""Backpressure: 10,000 ``chat_completion`` calls sent at once at a server that does 16 at a time.

One model with 16 slots, on one MCP session (the calls are all written to the pipe at once; the
client and ``serve`` parse them at a few hundred per second, so the model must be slower than that
for a backlog to build). Two configurations of ``serve``:

* ``bounded``: 200 ms per request (80 req/s) and the default queue (64 per model) — the bridge
  must refuse the excess at once with a typed ``busy`` error (retryable) and serve the rest;
* ``queued``: a burst of 2,000 at 50 ms per request (320 req/s) and a queue as long as the burst —
  every call must be served, in turn (at least 6.25 s at the model's rate; 10,000 take about a
  minute here, where the MCP path, not the model, is the limit, so the full run keeps to 2,000 to
  leave the whole suite under ten minutes).

Figures per configuration: served, busy errors, other typed errors, lost (must be 0), wall time,
serve's RSS before and its peak (VmHWM) after, and the simulator's peak concurrency (must not pass 16).

Run: ``python -m benchmarks.stress.backpressure --backend asyncio|trio [--quick]``.
"""

from __future__ import annotations

import time

import anyio

from benchmarks.stress import _load as L

SLOTS = 16
SLOW, FAST = "stress/slow", "stress/fast"


async def burst(backend: str, url: str, model: str, calls: int, queue: int, budget: float) -> dict[str, float]:
    tally = L.Tally()
    async with L.serve_warm(backend, url, {model: (SLOTS, queue)}, call_budget=budget) as served:
        await L.sim_reset(url)
        before = L.proc_sample(served.pid)
        peak_rss = before["rss"]

        async def one(i: int) -> None:
            tally.add(await L.chat(served.session, model, f"b{i}", deadline=budget + 30))

        async def sample(stop: anyio.Event) -> None:
            nonlocal peak_rss
            while not stop.is_set():
                peak_rss = max(peak_rss, L.proc_sample(served.pid)["rss"])
                await anyio.sleep(0.05)

        stop = anyio.Event()
        start = time.perf_counter()
        async with anyio.create_task_group() as outer:
            outer.start_soon(sample, stop)
            async with anyio.create_task_group() as tg:
                for i in range(calls):
                    tg.start_soon(one, i)
            stop.set()
        elapsed = time.perf_counter() - start
        after = L.proc_sample(served.pid)
    stats = (await L.sim_stats(url))["total"]
    other = sum(n for code, n in tally.codes.items() if code != "busy")
    return {
        "served": tally.n("ok"),
        "busy": float(tally.codes.get("busy", 0)),
        "other_errors": float(other),
        "lost": tally.n("lost"),
        "wall_s": elapsed,
        "rss_before_mb": before["rss"] / 2**20,
        "rss_peak_mb": max(peak_rss, after["hwm"]) / 2**20,
        "sim_max_generating": float(stats["max_generating"]),
    }


async def run(backend: str, quick: bool) -> dict[str, float]:
    calls = 300 if quick else 10_000
    queued_calls = 200 if quick else 2_000
    models = [
        {"id": SLOW, "loaded": True, "parallel": SLOTS, "latency": 0.2, "reply_tokens": 1},
        {"id": FAST, "loaded": True, "parallel": SLOTS, "latency": 0.05, "reply_tokens": 1},
    ]
    figures: dict[str, float] = {"calls": float(calls), "slots": float(SLOTS)}
    async with L.open_sim(models) as sim:
        plan = (("bounded", SLOW, calls, 64, 55.0), ("queued", FAST, queued_calls, queued_calls, 300.0))
        for name, model, n, queue, budget in plan:
            figures[f"{name}_calls"] = float(n)
            for key, value in (await burst(backend, sim.url, model, n, queue, budget)).items():
                figures[f"{name}_{key}"] = value
    return figures


def main(argv: list[str] | None = None) -> int:
    return L.scenario_main("backpressure", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
