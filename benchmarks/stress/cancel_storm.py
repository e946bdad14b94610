"""Cancellation storm: 1,000 ``chat_completion`` calls, each cancelled by the client at a random point.

8 models x 4 slots; each reply streams for about 350 ms (50 ms to the first token, 30 tokens at
100 tokens/s). 64 callers keep calls going, so at any moment about half wait in the bridge's queues
and half stream. Each call is wrapped in ``move_on_after(uniform(0, 0.8) s)``: the MCP client then
sends ``notifications/cancelled``, and the bridge must cancel the actor work and close the stream.

Figures: calls cancelled / completed / lost (no result, no typed error, not cancelled by us: must be
0); streams the simulator saw closed by the client (disconnects) and left open after the storm (0);
time from the last cancellation until both the simulator and ``bridge_status`` show nothing running
or queued (quiesce); and whether every slot serves again (32 calls at once afterwards, all ok within
about one request's time).

Run: ``python -m benchmarks.stress.cancel_storm --backend asyncio|trio [--quick]``.
"""

from __future__ import annotations

import random
import time

import anyio

from benchmarks._callers import run_callers
from benchmarks.stress import _load as L

MODELS, SLOTS = 8, 4


async def run(backend: str, quick: bool) -> dict[str, float]:
    calls = 100 if quick else 1000
    ids = L.model_ids(MODELS)
    models = [
        {"id": m, "loaded": True, "parallel": SLOTS, "ttft": 0.05, "tokens_per_s": 100, "reply_tokens": 30} for m in ids
    ]
    rng = random.Random(7)
    tally = L.Tally()
    figures: dict[str, float] = {"calls": float(calls)}
    async with L.open_sim(models) as sim, L.serve_warm(backend, sim.url, {m: (SLOTS, 512) for m in ids}) as served:
        await L.sim_reset(sim.url)
        last_cancel = 0.0

        async def storm_call(index: int) -> None:
            nonlocal last_cancel
            delay = rng.uniform(0.0, 0.8)
            start = time.perf_counter()
            outcome: L.Outcome | None = None
            with anyio.move_on_after(delay) as scope:
                outcome = await L.chat(served.session, ids[index % MODELS], f"c{index}", deadline=30)
            if scope.cancelled_caught:
                outcome = L.Outcome("cancelled", time.perf_counter() - start)
                last_cancel = max(last_cancel, time.perf_counter())
            assert outcome is not None
            tally.add(outcome)

        storm_start = time.perf_counter()
        await run_callers(calls, 64, storm_call)
        storm_end = time.perf_counter()
        # Quiesce: nothing in progress at the simulator, nothing in flight or queued in the bridge.
        quiet_at = float("nan")
        with anyio.move_on_after(30):
            while True:
                stats = (await L.sim_stats(sim.url))["total"]
                status = await L.status(served.session)
                busy = sum(m.get("in_flight", 0) + m.get("queued", 0) for m in status.get("models", []))
                if stats["in_progress"] == 0 and stats["generating"] == 0 and busy == 0:
                    quiet_at = time.perf_counter()
                    break
                await anyio.sleep(0.005)
        stats = (await L.sim_stats(sim.url))["total"]
        figures |= {
            "storm_s": storm_end - storm_start,
            "cancelled": tally.n("cancelled"),
            "completed": tally.n("ok"),
            "typed_errors": tally.n("error"),
            "lost": tally.n("lost"),
            "sim_requests": float(stats["requests"]),
            "sim_completed": float(stats["completed"]),
            "sim_disconnects": float(stats["disconnects"]),
            "sim_open_after": float(stats["in_progress"]),
            # NaN if it never went quiet within 30 s.
            "quiesce_ms": (quiet_at - max(last_cancel, storm_start)) * 1e3,
        }
        # Every slot serves again: 32 calls at once, one per slot, each ~350 ms.
        after = L.Tally()
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(MODELS * SLOTS):

                async def one(i: int = i) -> None:
                    after.add(await L.chat(served.session, ids[i % MODELS], f"after{i}", deadline=30))

                tg.start_soon(one)
        figures["after_ok"] = after.n("ok")
        figures["after_all_slots_s"] = time.perf_counter() - start
        figures["serve_children"] = L.proc_sample(served.pid)["children"]
    return figures


def main(argv: list[str] | None = None) -> int:
    return L.scenario_main("cancel_storm", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
