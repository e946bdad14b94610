"""Multi-model throughput through MCP, and the sequential-client comparison.

8 models x 4 slots at 100 ms per request on the simulator (server-bound limit
320 req/s); C concurrent callers on one MCP session into ``serve``. Figures:

* achieved / server-bound limit at 256 callers (median of 3 rounds of 800 requests);
* achieved / a bare httpx client on the same workload (the practical ceiling on loopback);
* a sweep over C (the plot's data; its 256-caller point is the median above);
* the same workload through ``benchmarks.baseline_sequential`` (blocking HTTP in the tool), as a ratio.

Run: ``python -m benchmarks.stress.throughput --backend asyncio|trio [--quick]``.
"""

from __future__ import annotations

import statistics

from benchmarks.stress import _load as L

MODELS, SLOTS, LATENCY = 8, 4, 0.1


async def run(backend: str, quick: bool) -> dict[str, float]:
    ids = L.model_ids(MODELS)
    models = [{"id": m, "loaded": True, "parallel": SLOTS, "latency": LATENCY, "reply_tokens": 1} for m in ids]
    limit = MODELS * SLOTS / LATENCY
    requests, rounds = (160, 1) if quick else (800, 3)
    sweep = [32] if quick else [1, 8, 32, 64, 128, 256, 512]
    figures: dict[str, float] = {"limit_req_per_s": limit, "models": MODELS, "slots": SLOTS, "latency_s": LATENCY}
    async with L.open_sim(models) as sim:
        async with L.serve_warm(backend, sim.url, {m: (SLOTS, 1024) for m in ids}) as served:
            # Rounds vary by +-10 % on this 2-core machine (client, serve and simulator share it):
            # report the median round, and the worst and best.
            rates: list[float] = []
            tally = L.Tally()
            for _ in range(rounds):
                part, elapsed = await L.closed_loop(served.session, ids, requests=requests, callers=256, deadline=60)
                rates.append(requests / elapsed)
                for kind, n in part.kinds.items():
                    tally.kinds[kind] += n
            rate = statistics.median(rates)
            figures |= {
                "req_per_s": rate,
                "req_per_s_worst": min(rates),
                "req_per_s_best": max(rates),
                "ratio_to_limit": rate / limit,
                "ok": tally.n("ok"),
                "failed": tally.n("error"),
                "lost": tally.n("lost"),
                "serve_rss_mb": L.proc_sample(served.pid)["rss"] / 2**20,
            }
            for callers in sweep:
                figures[f"sweep_{callers}_bound_req_per_s"] = min(callers, MODELS * SLOTS) / LATENCY
                if callers == 256 and not quick:  # the rounds above are this point
                    figures[f"sweep_{callers}_req_per_s"] = rate
                    continue
                n = 64 if quick else min(max(callers * 8, 24), 800)
                point, took = await L.closed_loop(served.session, ids, requests=n, callers=callers, deadline=60)
                figures[f"sweep_{callers}_req_per_s"] = n / took
                figures["lost"] += point.n("lost")
        _, bare_elapsed = await L.bare_httpx_chat(sim.url, ids, SLOTS, requests=requests, callers=256)
        figures["bare_httpx_req_per_s"] = requests / bare_elapsed
        figures["ratio_to_bare_httpx"] = figures["req_per_s"] / figures["bare_httpx_req_per_s"]
        # The sequential client: same models, same callers, far fewer requests (it does 1 / LATENCY per second).
        seq_requests = 5 if quick else 30
        command = ["-m", "benchmarks.baseline_sequential", "--base-url", sim.url]
        async with L.serve(backend, None, command=command) as baseline:
            seq, seq_elapsed = await L.closed_loop(
                baseline.session, ids, requests=seq_requests, callers=256, deadline=seq_requests * LATENCY * 4 + 30
            )
        figures["sequential_req_per_s"] = seq_requests / seq_elapsed
        figures["sequential_ok"] = seq.n("ok")
        figures["ratio_to_sequential"] = figures["req_per_s"] / figures["sequential_req_per_s"]
    return figures


def main(argv: list[str] | None = None) -> int:
    return L.scenario_main("throughput", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
