"""Restart storm: model workers crashed at a rate while serving, through MCP.

``serve`` runs with a fault-injecting worker (:mod:`benchmarks.stress._crashy_serve`; the front
end has no crash hook): 1 % of ``Chat`` requests crash their worker (an unexpected exception, as a
bug would) while it serves up to 3 others. 8 models x 4 slots at 50 ms, 64 callers. The supervisor
must restart the worker; the requests it was serving must fail with a typed error
(``actor_crashed``), never be lost; the model must serve again right away.

Figures: calls ok / typed errors (by code) / lost; crashes injected; recovery time (crash -> the
next successful reply of that model, measured inside serve), p50 and max; and 32 calls at once after
the storm (all ok).

Run: ``python -m benchmarks.stress.restart_storm --backend asyncio|trio [--quick]``.
"""

from __future__ import annotations

import os

from benchmarks.stress import _load as L

MODELS, SLOTS, LATENCY, RATE = 8, 4, 0.05, 0.01


async def run(backend: str, quick: bool) -> dict[str, float]:
    calls = 100 if quick else 3000
    ids = L.model_ids(MODELS)
    models = [{"id": m, "loaded": True, "parallel": SLOTS, "latency": LATENCY, "reply_tokens": 1} for m in ids]
    crash_log = L.LOG_DIR / f"crashes-{backend}-{os.getpid()}.log"
    crash_log.unlink(missing_ok=True)
    figures: dict[str, float] = {"calls": float(calls), "crash_rate": RATE}
    async with L.open_sim(models) as sim:
        config = L.bridge_toml(sim.url, {m: (SLOTS, 256) for m in ids}, call_budget=20)
        command = ["-m", "benchmarks.stress._crashy_serve", "serve", "--backend", backend, "--config", str(config)]
        command += ["--log-level", "CRITICAL", "--no-child-servers"]
        rate = 0.05 if quick else RATE  # quick: enough crashes in 100 calls to exercise the path
        figures["crash_rate"] = rate
        env = {"STRESS_CRASH_RATE": str(rate), "STRESS_CRASH_LOG": str(crash_log)}
        try:
            async with L.serve(backend, config, command=command, env_extra=env) as served:
                tally, elapsed = await L.closed_loop(served.session, ids, requests=calls, callers=64, deadline=30)
                after, _ = await L.closed_loop(served.session, ids, requests=MODELS * SLOTS, callers=32, deadline=30)
                alive = L.proc_sample(served.pid)
        finally:
            config.unlink(missing_ok=True)
    crashes: dict[str, float] = {}
    recoveries: list[float] = []
    n_crashes = 0
    for line in crash_log.read_text().splitlines() if crash_log.exists() else []:
        kind, model, wall = line.split()
        if kind == "crash":
            n_crashes += 1
            crashes.setdefault(model, float(wall))
        elif model in crashes:
            recoveries.append(float(wall) - crashes.pop(model))
    crash_log.unlink(missing_ok=True)
    figures |= {
        "ok": tally.n("ok"),
        "typed_errors": tally.n("error"),
        "lost": tally.n("lost"),
        "crashes": float(n_crashes),
        "wall_s": elapsed,
        "recovery_p50_ms": L.percentile(recoveries, 0.5) * 1e3,
        "recovery_max_ms": (max(recoveries) if recoveries else float("nan")) * 1e3,
        "after_ok": after.n("ok"),
        "after_lost": after.n("lost"),
        "serve_alive": 1.0 if alive["rss"] > 0 else 0.0,
    }
    for code, n in tally.codes.items():
        figures[f"code_{code}"] = float(n)
    return figures


def main(argv: list[str] | None = None) -> int:
    return L.scenario_main("restart_storm", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
