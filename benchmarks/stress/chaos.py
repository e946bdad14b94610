"""Chaos: faults at a rate, and child servers killed during autonomous runs.

Part 1, through MCP into ``serve`` (simulator out of process): 4 loaded models plus 2 just-in-time
models that evict each other mid-generation (real evictions), with random faults on every request
at the rates below (HTTP 500, 429 with Retry-After, dropped streams, stalls that never resume,
"Model unloaded", requests never answered). 64 callers; call budget 6 s (first token 2 s, stream
idle 1 s). Every call must end in a result or a typed error, within its budget (+1 s of slack for
the pipe and the client).

Part 2, in-process (the planner tools are not on the MCP front end yet): concurrent autonomous runs
(``RunTask`` through ``open_bridge``) over two real stdio child servers (the test suite's echo
server), each round calling ``sleep(0.3)``, while a killer SIGKILLs a random child server process
every 250 ms. Every run must end in a ``RunResult`` or a typed ``BridgeError`` within its time
budget (+5 s), and no child process may be left once the bridge has stopped.

Run: ``python -m benchmarks.stress.chaos --backend asyncio|trio [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import time
from collections import Counter

import anyio
import psutil  # type: ignore[import-untyped]

from benchmarks.stress import _load as L
from bridge.app import open_bridge
from bridge.errors import BridgeError
from bridge.messages import RunResult, RunTask
from bridge.settings import BridgeSettings, ChildSettings, ModelLimits, ServerSettings
from bridge.sim import CallTools, Say, SimConfig, SimModel, SimServer, ToolCallSpec

ECHO = L.REPO / "tests" / "_children" / "echo_server.py"
RATES = {"http_500": 0.03, "rate_limit": 0.03, "drop": 0.03, "stall": 0.03, "model_unloaded": 0.03, "no_answer": 0.02}
CALL_BUDGET = 6.0


async def faults(backend: str, quick: bool) -> dict[str, float]:
    calls = 100 if quick else 1500
    loaded = L.model_ids(4)
    jit = ["stress/jit-a", "stress/jit-b"]
    timing = {"ttft": 0.02, "tokens_per_s": 200, "reply_tokens": 10}
    models = [{"id": m, "loaded": True, "parallel": 4, **timing} for m in loaded]
    models += [{"id": m, "loaded": False, "parallel": 4, "jit_load_delay": 0.05, **timing} for m in jit]
    ids = loaded + jit
    sim_extra = [a for kind, rate in RATES.items() for a in ("--fault", f"{kind}={rate}")]
    config_fields = {"fault_seconds": None, "retry_after": 0.2, "seed": 11}
    tally = L.Tally()
    over_budget = 0
    longest = 0.0
    async with L.open_sim(models, extra=sim_extra, config=config_fields) as sim:
        config = L.bridge_toml(
            sim.url,
            {m: (4, 256) for m in ids},
            call_budget=CALL_BUDGET,
            budgets={"connect": 2.0, "first_token": 2.0, "idle": 1.0, "total": 5.0},
        )
        try:
            async with L.serve(backend, config) as served:
                next_index = 0

                async def caller() -> None:
                    nonlocal next_index, over_budget, longest
                    while next_index < calls:
                        index = next_index
                        next_index += 1
                        outcome = await L.chat(
                            served.session, ids[index % len(ids)], f"x{index}", deadline=CALL_BUDGET + 4
                        )
                        tally.add(outcome)
                        longest = max(longest, outcome.seconds)
                        if outcome.seconds > CALL_BUDGET + 1.0:
                            over_budget += 1

                start = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for _ in range(64):
                        tg.start_soon(caller)
                elapsed = time.perf_counter() - start
                alive = L.proc_sample(served.pid)
        finally:
            config.unlink(missing_ok=True)
        stats = (await L.sim_stats(sim.url))["total"]
    figures = {
        "calls": float(calls),
        "ok": tally.n("ok"),
        "typed_errors": tally.n("error"),
        "lost": tally.n("lost"),
        "over_budget": float(over_budget),
        "longest_s": longest,
        "wall_s": elapsed,
        "sim_faults": float(sum(stats["faults"].values())),
        "sim_evictions": float(stats["evictions"]),
        "serve_alive": 1.0 if alive["rss"] > 0 else 0.0,
    }
    for code, n in tally.codes.items():
        figures[f"code_{code}"] = float(n)
    if tally.lost_details:
        print("chaos: lost calls:", *tally.lost_details, sep="\n  ", file=sys.stderr)
    return figures


def _echo_processes() -> list[psutil.Process]:
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if str(ECHO) in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


async def child_kills(quick: bool) -> dict[str, float]:
    runs = 4 if quick else 24
    rounds = 6
    budget = 8.0
    ids = L.model_ids(4)
    sim_config = SimConfig(
        models=tuple(SimModel(id=m, loaded=True, parallel=4, latency=0.02, reply_tokens=1) for m in ids)
    )
    path = L.LOG_DIR / f"children-{os.getpid()}.json"
    L.LOG_DIR.mkdir(parents=True, exist_ok=True)
    servers = {n: {"command": sys.executable, "args": [str(ECHO)]} for n in ("echo-a", "echo-b")}
    path.write_text(json.dumps({"mcpServers": servers}))
    outcomes: Counter[str] = Counter()
    tool_failures = 0
    tool_calls = 0
    kills = 0
    longest = 0.0
    try:
        async with SimServer(sim_config) as sim:
            for m in ids:
                # Distinct arguments each round, so the planner's loop detection does not stop the runs.
                turns = [CallTools([ToolCallSpec("sleep", {"seconds": 0.3 + 0.001 * j})]) for j in range(rounds * runs)]
                sim.script(m, [*turns, Say("done")])
            settings = BridgeSettings(
                servers=[ServerSettings(url=sim.url, name="sim")],
                models={m: ModelLimits(slots=4, queue=256) for m in ids},
                children=ChildSettings(config_paths=[str(path)], discover=False, watch=False, call_timeout=3.0),
                call_budget=budget + 5,
            )
            async with open_bridge(settings) as bridge:
                assert bridge.planner is not None
                planner = bridge.planner
                for server in ("echo-a", "echo-b"):
                    await planner.ask(RunTask(task="warm", model=ids[0], servers=[server], max_rounds=1), timeout=60)
                rng = random.Random(5)
                done = anyio.Event()

                async def killer() -> None:
                    nonlocal kills
                    while not done.is_set():
                        await anyio.sleep(0.25)
                        victims = _echo_processes()
                        if victims:
                            victim = rng.choice(victims)
                            try:
                                os.kill(victim.pid, signal.SIGKILL)
                                kills += 1
                            except ProcessLookupError:
                                pass

                async def one(i: int) -> None:
                    nonlocal tool_failures, tool_calls, longest
                    task = RunTask(
                        task=f"run {i}",
                        model=ids[i % len(ids)],
                        servers=[("echo-a", "echo-b")[i % 2]],
                        max_rounds=rounds,
                        time_budget=budget,
                    )
                    start = time.perf_counter()
                    try:
                        with anyio.fail_after(budget + 5):
                            result = await planner.ask(task, timeout=budget + 5)
                    except BridgeError as error:
                        outcomes[f"error:{error.code}"] += 1
                    except TimeoutError:
                        outcomes["lost"] += 1
                    else:
                        assert isinstance(result, RunResult)
                        outcomes[f"result:{result.stop_reason}"] += 1
                        tool_calls += len(result.tool_calls)
                        tool_failures += sum(1 for c in result.tool_calls if not c.ok)
                    longest = max(longest, time.perf_counter() - start)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(killer)
                    async with anyio.create_task_group() as runs_tg:
                        for i in range(runs):
                            runs_tg.start_soon(one, i)
                    done.set()
            await anyio.sleep(0.5)
            leaked = len(_echo_processes())
    finally:
        path.unlink(missing_ok=True)
    figures = {
        "runs": float(runs),
        "runs_result": float(sum(n for k, n in outcomes.items() if k.startswith("result:"))),
        "runs_typed_error": float(sum(n for k, n in outcomes.items() if k.startswith("error:"))),
        "runs_lost": float(outcomes.get("lost", 0)),
        "runs_longest_s": longest,
        "run_budget_s": budget,
        "child_kills": float(kills),
        "tool_calls": float(tool_calls),
        "tool_calls_failed_typed": float(tool_failures),
        "leaked_children": float(leaked),
    }
    for key, n in outcomes.items():
        figures["run_" + key.replace(":", "_")] = float(n)
    return figures


async def run(backend: str, quick: bool) -> dict[str, float]:
    return await faults(backend, quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stress.chaos")
    parser.add_argument("--backend", choices=["asyncio", "trio"], required=True, help="serve's backend")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    figures = anyio.run(run, args.backend, args.quick, backend="asyncio")
    # The in-process part runs the bridge itself, so it runs on the backend under test.
    figures |= anyio.run(child_kills, args.quick, backend=args.backend)
    L.emit(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
