"""Soak: steady mixed load for N minutes; serve's RSS, descriptors, threads, children and tasks sampled.

4 models x 4 slots (10-token streamed replies at 200 tokens/s) on the simulator; 24 callers mixing
``chat_completion`` (most), a 3-in-5 chance of a call cancelled half-way, ``batch_chat`` of 8,
``list_models``, ``list_available_mcps`` and ``bridge_status``; serve also runs two child MCP
servers (the test suite's echo server). Every second: serve's RSS, open descriptors, threads and
live child processes (from outside, by pid), and the live tasks in its event loop (``bridge_status``,
``process.tasks``). The task count is also taken idle: after a warm-up burst that fills every slot
once (what serve keeps once used: workers, pooled connections, child sessions) and a second after the
load; the two should match.

Figures per series, over the steady window (samples taken under load after a warm-up of a fifth of
the run, while allocator arenas and caches fill): first, last, max, slope per minute, ``growth``
(the least-squares line's rise from the window's first to its last sample), ``noise`` (three
standard errors of that rise, from the scatter about the line) and a verdict ``<key>_flat`` (1.0 or
0.0). A series is flat when its growth is within noise:

* ``rss`` (MB):                     growth < max(2 MB, 2 % of the first sample, noise);
* ``fds``, ``threads``, ``children``: last sample == first sample, or growth < max(1, noise);
* ``tasks``:                        growth < max(5, 2 % of the first sample, noise).

The noise term matters for tasks: under load their count moves with the calls in flight (±25
between samples a second apart), so over a short window a line fitted through pure scatter rises
by more than 5 about one time in four. A leak is a rise the scatter cannot explain, and a longer
soak (``--minutes``) narrows what the scatter can explain.

``flat`` is 1.0 when every series is. A window of fewer than 10 samples is too short to judge: the
verdicts are then NaN (``null`` in the JSON). Quick mode (3 s, 2 steady samples) proves the sampling
works and gives no verdict. Idle task counts that differ by a few tasks, by as much after 3 s as after
3 min, are pools that filled under load, not a leak.

Run: ``python -m benchmarks.stress.soak --backend asyncio|trio [--quick] [--minutes N]``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import sys
import time

import anyio
from mcp import ClientSession

from benchmarks import _report
from benchmarks.stress import _load as L

SERIES = ("rss", "fds", "threads", "children", "tasks")
MIN_STEADY = 10
SCALE = {"rss": 2.0**20}


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The least-squares line through ``points``: its slope per minute and three standard errors of
    its rise over the window (the noise of the module docstring). NaN and 0 for too few points."""
    n = len(points)
    if n < 2:
        return float("nan"), 0.0
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0, 0.0
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
    if n < 3:
        return slope * 60.0, 0.0
    residual = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=True)) / (n - 2)
    return slope * 60.0, 3.0 * math.sqrt(residual / var) * (xs[-1] - xs[0])


def is_flat(key: str, points: list[tuple[float, float]], growth: float, noise: float) -> bool:
    """The verdict of the module docstring for one series."""
    first, last = points[0][1], points[-1][1]
    if key == "rss":
        return growth < max(2.0, 0.02 * first, noise)
    if key == "tasks":
        return growth < max(5.0, 0.02 * first, noise)
    return last == first or growth < max(1.0, noise)


async def serve_tasks(session: ClientSession) -> float:
    """serve's live tasks, from ``bridge_status``; NaN when it does not say (a typed error, say)."""
    with anyio.fail_after(35):
        data = await L.status(session)
    tasks = data.get("process", {}).get("tasks")
    return float(tasks) if isinstance(tasks, int) else float("nan")


async def warm_up(session: ClientSession, ids: list[str]) -> None:
    """Fill every slot once, so the idle task count before the load has what serve keeps once used
    (per-model workers, pooled connections, child sessions) and compares with the one after it."""
    async with anyio.create_task_group() as tg:
        for k in range(16 * len(ids)):
            tg.start_soon(functools.partial(L.chat, session, ids[k % len(ids)], f"w{k}", deadline=30))
        tg.start_soon(functools.partial(L.call, session, "list_available_mcps", {}, deadline=30))
        items = [{"prompt": f"wb{j}", "model": ids[j % len(ids)]} for j in range(8)]
        tg.start_soon(functools.partial(L.call, session, "batch_chat", {"items": items}, deadline=30))


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
                await warm_up(session, ids)
                idle_before = await serve_tasks(session)
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
                        at = time.perf_counter() - start
                        sample = L.proc_sample(served.pid)
                        sample["tasks"] = await serve_tasks(session)
                        samples.append((at, sample))
                        await anyio.sleep(max(0.0, at + 1.0 - (time.perf_counter() - start)))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(sampler)
                    for k in range(24):
                        tg.start_soon(caller, k)
                await anyio.sleep(1.0)
                idle_after = await serve_tasks(session)
        finally:
            config.unlink(missing_ok=True)
            children.unlink(missing_ok=True)
    figures: dict[str, float] = {
        "seconds": seconds,
        "calls": float(tally.total),
        "ok": tally.n("ok"),
        "typed_errors": tally.n("error"),
        "cancelled": tally.n("cancelled"),
        "lost": tally.n("lost"),
        "samples": float(len(samples)),
        "tasks_idle_before": idle_before,
        "tasks_idle_after": idle_after,
    }
    return figures | verdicts(samples, warmup=seconds / 5)


def verdicts(samples: list[tuple[float, dict[str, float]]], *, warmup: float) -> dict[str, float]:
    """first / last / max / slope / growth / flat per series over the steady window, and ``flat`` overall."""
    steady = [s for s in samples if s[0] >= warmup] or samples
    figures: dict[str, float] = {"steady_samples": float(len(steady))}
    verdicts: list[float] = []
    for key in SERIES:
        points = [(t, v[key] / SCALE.get(key, 1.0)) for t, v in steady if not math.isnan(v[key])]
        if not points:
            verdicts.append(0.0)  # a series that could not be sampled is no evidence of anything
            figures[f"{key}_flat"] = 0.0
            continue
        slope, noise = fit(points)
        growth = slope / 60.0 * (points[-1][0] - points[0][0])
        verdict = float("nan")
        if len(points) >= MIN_STEADY:
            verdict = 1.0 if is_flat(key, points, growth, noise) else 0.0
        verdicts.append(verdict)
        figures |= {
            f"{key}_first": points[0][1],
            f"{key}_last": points[-1][1],
            f"{key}_max": max(p[1] for p in points),
            f"{key}_slope_per_min": slope,
            f"{key}_growth": growth,
            f"{key}_noise": noise,
            f"{key}_flat": verdict,
        }
    figures["flat"] = float("nan") if any(math.isnan(v) for v in verdicts) else min(verdicts)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = L.scenario_parser("soak")
    parser.add_argument("--minutes", type=float, default=None, help="default: 0.6 (full), 0.05 (quick)")
    args = parser.parse_args(argv)
    minutes = args.minutes if args.minutes is not None else (0.05 if args.quick else 0.6)
    logging.basicConfig(level=logging.ERROR)
    _report.emit(anyio.run(run, args.backend, minutes * 60, backend="asyncio"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
