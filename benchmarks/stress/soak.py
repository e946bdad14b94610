"""Soak: steady mixed load for N minutes; serve's RSS, descriptors, threads and child processes sampled.

4 models x 4 slots (10-token streamed replies at 200 tokens/s) on the simulator; 24 callers mixing
``chat_completion`` (most), a 3-in-5 chance of a call cancelled half-way, ``batch_chat`` of 8,
``list_models``, ``list_available_mcps`` and ``bridge_status``; serve also runs two child MCP
servers (the test suite's echo server). Every second: serve's RSS, open descriptors, threads, live
child processes. Figures: first / last / slope per minute of each, after a warm-up of a fifth of
the run (allocator arenas and caches fill first). Task count is not exposed by ``bridge_status``,
so it is not reported.

Run: ``python -m benchmarks.stress.soak --backend asyncio|trio [--quick] [--minutes N]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time

import anyio

from benchmarks.stress import _load as L


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return float("nan")
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 60.0


async def run(backend: str, seconds: float) -> dict[str, float]:
    ids = L.model_ids(4)
    models = [
        {"id": m, "loaded": True, "parallel": 4, "ttft": 0.01, "tokens_per_s": 200, "reply_tokens": 10} for m in ids
    ]
    tally = L.Tally()
    samples: list[tuple[float, dict[str, float]]] = []
    rng = random.Random(9)
    async with L.open_sim(models) as sim:
        children = L.LOG_DIR / f"soak-children-{os.getpid()}.json"
        echo = {
            "command": sys.executable,
            "args": [str(L.REPO / "tests" / "_children" / "echo_server.py")],
            "eager": True,
        }
        children.write_text(json.dumps({"mcpServers": {"echo-a": echo, "echo-b": echo}}))
        config = L.bridge_toml(sim.url, {m: (4, 128) for m in ids}, children=[str(children)])
        try:
            async with L.serve(backend, config, child_servers=True) as served:
                session = served.session
                start = time.perf_counter()
                end = start + seconds

                async def caller(k: int) -> None:
                    i = 0
                    while time.perf_counter() < end:
                        i += 1
                        model = ids[(k + i) % len(ids)]
                        roll = rng.random()
                        if roll < 0.03:
                            tally.add(await L.call(session, "list_models", {}, deadline=30))
                        elif roll < 0.05:
                            tally.add(await L.call(session, "list_available_mcps", {}, deadline=30))
                        elif roll < 0.10:
                            tally.add(await L.call(session, "bridge_status", {}, deadline=30))
                        elif roll < 0.15:
                            items = [{"prompt": f"s{k}-{i}-{j}", "model": ids[j % len(ids)]} for j in range(8)]
                            tally.add(await L.call(session, "batch_chat", {"items": items}, deadline=30))
                        elif roll < 0.30:
                            with anyio.move_on_after(rng.uniform(0.0, 0.06)) as scope:
                                outcome = await L.chat(session, model, f"c{k}-{i}", deadline=30)
                            tally.add(L.Outcome("cancelled", 0.0) if scope.cancelled_caught else outcome)
                        else:
                            tally.add(await L.chat(session, model, f"s{k}-{i}", deadline=30))

                async def sampler() -> None:
                    while time.perf_counter() < end:
                        samples.append((time.perf_counter() - start, L.proc_sample(served.pid)))
                        await anyio.sleep(1.0)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(sampler)
                    for k in range(24):
                        tg.start_soon(caller, k)
                samples.append((time.perf_counter() - start, L.proc_sample(served.pid)))
        finally:
            config.unlink(missing_ok=True)
            children.unlink(missing_ok=True)
    steady = [s for s in samples if s[0] >= seconds / 5] or samples
    figures: dict[str, float] = {
        "seconds": seconds,
        "calls": float(tally.total),
        "ok": tally.n("ok"),
        "typed_errors": tally.n("error"),
        "cancelled": tally.n("cancelled"),
        "lost": tally.n("lost"),
        "samples": float(len(samples)),
    }
    for key, scale in (("rss", 2**20), ("fds", 1.0), ("threads", 1.0), ("children", 1.0)):
        points = [(t, v[key] / scale) for t, v in steady]
        figures[f"{key}_first"] = points[0][1]
        figures[f"{key}_last"] = points[-1][1]
        figures[f"{key}_max"] = max(p[1] for p in points)
        figures[f"{key}_slope_per_min"] = slope_per_minute(points)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stress.soak")
    parser.add_argument("--backend", choices=["asyncio", "trio"], required=True, help="serve's backend")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--minutes", type=float, default=None, help="default: 0.75 (full), 0.05 (quick)")
    args = parser.parse_args(argv)
    minutes = args.minutes if args.minutes is not None else (0.05 if args.quick else 0.75)
    logging.basicConfig(level=logging.ERROR)
    L.emit(anyio.run(run, args.backend, minutes * 60, backend="asyncio"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
