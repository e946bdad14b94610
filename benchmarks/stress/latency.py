"""Added latency: ``chat_completion`` through MCP + serve versus a bare httpx streamed chat, same simulator.

* 1 concurrent: a model answering at once (latency 0, 1 token); N sequential calls each way.
* 64 concurrent: a model taking 500 ms per request (128 req/s offered, well under what the
  machine can carry), 64 closed-loop callers each way, 64 at a time (the bridge's slots, a
  limiter for httpx). The simulator has 128 slots so that neither side ever queues there (a
  caller's next request can arrive before the simulator released the previous one's slot). The
  callers' starts are spread over one hold time on both sides, so calls arrive as from independent
  users; all starting at once would keep them in lockstep waves of 64, where the last of each wave
  waits for the 63 before it on both sides but only the bridge's clock sees it.

Added = bridge percentile minus bare percentile (p50 and p99). The bridge path includes the MCP
client's own JSON-RPC and pydantic work, the stdio pipe both ways, and ``serve``.

Run: ``python -m benchmarks.stress.latency --backend asyncio|trio [--quick]``.
"""

from __future__ import annotations

import time

from benchmarks.stress import _load as L

HOLD = 0.5  # the slow model's time per request; the 64 callers' starts are spread over it


async def _sequential(served: L.Served, model: str, samples: int) -> list[float]:
    latencies: list[float] = []
    for i in range(samples):
        start = time.perf_counter()
        outcome = await L.chat(served.session, model, f"hi {i}", deadline=30)
        if outcome.kind == "ok":
            latencies.append(time.perf_counter() - start)
    return latencies


async def concurrent(backend: str, quick: bool) -> dict[str, float]:
    """64 closed-loop callers each way against the slow model: the c64 figures."""
    requests = 64 if quick else 384
    slow = "stress/slow"
    models = [{"id": slow, "loaded": True, "parallel": 128, "latency": HOLD, "reply_tokens": 1}]
    figures: dict[str, float] = {}
    async with L.open_sim(models) as sim:
        # The first round opens 64 connections: leave it out.
        warm_64, _ = await L.bare_httpx_chat(sim.url, [slow], 64, requests=requests + 64, callers=64, spread=HOLD)
        bare = warm_64[64:]
        async with L.serve_warm(backend, sim.url, {slow: (64, 1024)}) as served:
            tally, _ = await L.closed_loop(
                served.session, [slow], requests=requests, callers=64, deadline=30, spread=HOLD
            )
    bridged = tally.latencies
    figures["c64_calls"] = float(len(bridged))
    figures["c64_lost"] = tally.n("lost")
    figures["c64_failed"] = tally.n("error")
    _compare(figures, "c64", bare, bridged)
    # Also against the floor, the model's own hold time: a bare client has stalls of its own.
    figures["c64_over_floor_p50_ms"] = (L.percentile(bridged, 0.5) - HOLD) * 1e3
    figures["c64_over_floor_p99_ms"] = (L.percentile(bridged, 0.99) - HOLD) * 1e3
    return figures


async def sequential(backend: str, quick: bool) -> dict[str, float]:
    """One call at a time each way against the instant model: the c1 figures."""
    samples = 60 if quick else 500
    fast = "stress/fast"
    models = [{"id": fast, "loaded": True, "parallel": 4, "latency": 0.0, "reply_tokens": 1}]
    figures: dict[str, float] = {}
    async with L.open_sim(models) as sim:
        bare, _ = await L.bare_httpx_chat(sim.url, [fast], 4, requests=samples + 10, callers=1)
        config = L.bridge_toml(sim.url, {fast: (4, 64)})
        try:
            async with L.serve(backend, config) as served:
                await _sequential(served, fast, 5 if quick else 20)
                L.settle_heap()
                bridged = await _sequential(served, fast, samples)
        finally:
            config.unlink(missing_ok=True)
    figures["c1_lost"] = float(samples - len(bridged))
    _compare(figures, "c1", bare[10:], bridged)
    return figures


def _compare(figures: dict[str, float], name: str, bare: list[float], bridged: list[float]) -> None:
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        b, m = L.percentile(bare, q), L.percentile(bridged, q)
        figures[f"{name}_bare_{label}_ms"] = b * 1e3
        figures[f"{name}_bridge_{label}_ms"] = m * 1e3
        figures[f"{name}_added_{label}_ms"] = (m - b) * 1e3


async def run(backend: str, quick: bool) -> dict[str, float]:
    figures = await sequential(backend, quick)
    figures |= await concurrent(backend, quick)
    figures["lost"] = figures.pop("c1_lost") + figures.pop("c64_lost")
    return figures


def main(argv: list[str] | None = None) -> int:
    return L.scenario_main("latency", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
