"""Benchmark of autonomous runs: the loop's own cost per round, and many runs at once.

Run: ``python -m benchmarks planner [--quick]``. Models are simulated (in process);
child servers are real stdio MCP servers (the echo server of the test suite).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

from benchmarks import _report
from bridge.app import open_bridge
from bridge.messages import RunResult, RunTask
from bridge.settings import BridgeSettings, ChildSettings, ModelLimits, ServerSettings
from bridge.sim import CallTools, SimConfig, SimModel, SimServer, ToolCallSpec

ECHO = Path(__file__).resolve().parent.parent / "tests" / "_children" / "echo_server.py"


def children_file(names: list[str]) -> str:
    handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
    json.dump({"mcpServers": {n: {"command": sys.executable, "args": [str(ECHO)]} for n in names}}, handle)
    handle.close()
    return handle.name


def script_rounds(sim: SimServer, model: str, calls: int) -> None:
    sim.script(model, [CallTools([ToolCallSpec("echo", {"text": f"step {k}"})]) for k in range(calls)])


async def scenario(runs: int, rounds: int, models: int, slots: int, latency: float) -> dict[str, float]:
    ids = [f"bench/m{i}" for i in range(models)]
    config = SimConfig(
        models=tuple(SimModel(id=m, loaded=True, parallel=slots, latency=latency, reply_tokens=1) for m in ids)
    )
    path = children_file(["echo-a", "echo-b"])
    try:
        async with SimServer(config) as sim:
            settings = BridgeSettings(
                servers=[ServerSettings(url=sim.url, name="sim")],
                models={m: ModelLimits(slots=slots, queue=1024) for m in ids},
                children=ChildSettings(config_paths=[path], discover=False, watch=False),
            )
            async with open_bridge(settings) as bridge:
                assert bridge.planner is not None
                planner = bridge.planner
                for model in ids:
                    script_rounds(sim, model, rounds * (runs // models + 1))
                # Warm both child servers so process start-up is not counted.
                for server in ("echo-a", "echo-b"):
                    await planner.ask(RunTask(task="warm", model=ids[0], servers=[server], max_rounds=1), timeout=60)
                results: list[RunResult] = []

                async def one(i: int) -> None:
                    task = RunTask(
                        task=f"run {i}", model=ids[i % models], servers=[("echo-a", "echo-b")[i % 2]], max_rounds=rounds
                    )
                    results.append(await planner.ask(task, timeout=300))

                start = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for i in range(runs):
                        tg.start_soon(one, i)
                elapsed = time.perf_counter() - start
    finally:
        Path(path).unlink()  # noqa: ASYNC240 - a tiny temp file, after the measurement
    per_round = [(r.total_s - r.model_time_s - r.tool_time_s) / r.rounds for r in results if r.rounds]
    model_calls = sum(r.rounds for r in results)
    bound = model_calls / (models * slots) * latency
    return {
        "runs": float(runs),
        "rounds_per_run": statistics.mean(r.rounds for r in results),
        "tool_calls": float(sum(len(r.tool_calls) for r in results)),
        "failed_tool_calls": float(sum(1 for r in results for c in r.tool_calls if not c.ok)),
        "total_s": elapsed,
        "slot_bound_s": bound,
        "bridge_share": max(0.0, (elapsed - bound) / elapsed),
        "loop_overhead_per_round_median_ms": statistics.median(per_round) * 1e3,
        "loop_overhead_per_round_p99_ms": sorted(per_round)[int(0.99 * (len(per_round) - 1))] * 1e3,
    }


async def run_all(quick: bool) -> dict[str, float]:
    if quick:
        return await scenario(runs=10, rounds=3, models=4, slots=4, latency=0.05)
    return await scenario(runs=50, rounds=5, models=4, slots=4, latency=0.1)


def main(argv: list[str] | None = None) -> int:
    return _report.child_main("python -m benchmarks.planner", run_all, argv)


if __name__ == "__main__":
    raise SystemExit(main())
