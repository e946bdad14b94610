"""Chaos: faults at a rate, and child servers killed during autonomous runs.

Part 1, through MCP into ``serve`` (simulator out of process): 4 loaded models plus 2 just-in-time
models that evict each other mid-generation (real evictions), with random faults on every request
at the rates below (HTTP 500, 429 with Retry-After, dropped streams, stalls that never resume,
"Model unloaded", requests never answered). 64 callers; call budget 6 s (first token 2 s, stream
idle 1 s). Every call must end in a result or a typed error, within its budget (+1 s of slack for
the pipe and the client).

Part 2, through MCP into ``serve`` with two real stdio child servers (the test suite's echo server
as echo-a and echo-b, started with serve): concurrent ``autonomous_with_mcp`` runs over 4 scripted
models (each round calls ``sleep(0.3)``, distinct arguments so loop detection stays out of it), while
a killer SIGKILLs a random echo process among serve's descendants every 250 ms. Each child call may
take 3 s. Every run must end in a result or a typed error within its time budget of 8 s (+5 s of
slack: the run's last tool call, the pipe), and no child process may be left once serve has stopped
(found by a marker in their environment, since serve's orphans are reparented).

Run: ``python -m benchmarks.stress.chaos --backend asyncio|trio [--quick]``.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
from collections import Counter

import anyio
import psutil  # type: ignore[import-untyped]

from benchmarks._callers import run_callers
from benchmarks.stress import _load as L
from benchmarks.stress import autonomous as A
from bridge.sim import CallTools, Say, ToolCallSpec

RATES = {"http_500": 0.03, "rate_limit": 0.03, "drop": 0.03, "stall": 0.03, "model_unloaded": 0.03, "no_answer": 0.02}
CALL_BUDGET = 6.0
RUN_BUDGET, RUN_SLACK = 8.0, 5.0


async def faults(backend: str, quick: bool) -> dict[str, float]:
    calls = 100 if quick else 800
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

                async def one(index: int) -> None:
                    nonlocal over_budget, longest
                    outcome = await L.chat(served.session, ids[index % len(ids)], f"x{index}", deadline=CALL_BUDGET + 4)
                    tally.add(outcome)
                    longest = max(longest, outcome.seconds)
                    if outcome.seconds > CALL_BUDGET + 1.0:
                        over_budget += 1

                elapsed = await run_callers(calls, 64, one)
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


def _echo_children(served: L.Served) -> list[psutil.Process]:
    """serve's live echo server processes (its descendants running the echo server)."""
    found: list[psutil.Process] = []
    try:
        descendants = served.process().children(recursive=True)
    except psutil.Error:
        return found
    for process in descendants:
        try:
            if str(A.ECHO) in " ".join(process.cmdline()) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


async def child_kills(backend: str, quick: bool) -> dict[str, float]:
    runs = 4 if quick else 24
    rounds = 6
    budget = RUN_BUDGET
    ids = L.model_ids(4)
    models = [{"id": m, "loaded": True, "parallel": 4, "latency": 0.02, "reply_tokens": 1} for m in ids]
    marker = A.new_marker()
    outcomes: Counter[str] = Counter()
    tool_failures = untyped_failures = tool_calls = kills = over_budget = 0
    longest = 0.0
    tally = L.Tally()
    async with L.open_sim(models) as sim:
        for m in ids:
            # Distinct arguments every turn, so the planner's loop detection does not stop the runs.
            turns = [CallTools([ToolCallSpec("sleep", {"seconds": 0.3 + 0.001 * j})]) for j in range(rounds * runs)]
            await A.script(sim.url, m, [*turns, Say("done")])
        children = A.children_file(marker, timeout=3.0)
        config = L.bridge_toml(sim.url, {m: (4, 256) for m in ids}, call_budget=budget + 5, children=[str(children)])
        try:
            async with L.serve(backend, config, child_servers=True) as served:
                await A.wait_ready(served.session, A.SERVERS)
                rng = random.Random(5)
                done = anyio.Event()

                async def killer() -> None:
                    nonlocal kills
                    while not done.is_set():
                        await anyio.sleep(0.25)
                        victims = _echo_children(served)
                        if victims:
                            try:
                                os.kill(rng.choice(victims).pid, signal.SIGKILL)
                                kills += 1
                            except ProcessLookupError:
                                pass

                async def one(i: int) -> None:
                    nonlocal tool_failures, untyped_failures, tool_calls, longest, over_budget
                    arguments = {
                        "mcp_name": A.SERVERS[i % 2],
                        "task": f"run {i}",
                        "model": ids[i % len(ids)],
                        "max_rounds": rounds,
                        "time_budget": budget,
                    }
                    outcome, data = await A.run_call(
                        served.session, "autonomous_with_mcp", arguments, deadline=budget + RUN_SLACK
                    )
                    tally.add(outcome)
                    longest = max(longest, outcome.seconds)
                    over_budget += int(outcome.seconds > budget + RUN_SLACK)
                    if outcome.kind == "ok":
                        outcomes[f"result:{data.get('stop_reason')}"] += 1
                        calls = data.get("tool_calls", [])
                        tool_calls += len(calls)
                        tool_failures += sum(1 for c in calls if not c.get("ok") and c.get("error"))
                        untyped_failures += sum(1 for c in calls if not c.get("ok") and not c.get("error"))
                    elif outcome.kind == "error":
                        outcomes[f"error:{outcome.code}"] += 1
                    else:
                        outcomes["lost"] += 1

                async with anyio.create_task_group() as tg:
                    tg.start_soon(killer)
                    async with anyio.create_task_group() as runs_tg:
                        for i in range(runs):
                            runs_tg.start_soon(one, i)
                    done.set()
        finally:
            config.unlink(missing_ok=True)
            children.unlink(missing_ok=True)
    leaked = await A.leftover_children(marker)
    if tally.lost_details:
        print("chaos: lost runs:", *tally.lost_details, sep="\n  ", file=sys.stderr)
    figures = {
        "runs": float(runs),
        "runs_result": float(sum(n for k, n in outcomes.items() if k.startswith("result:"))),
        "runs_typed_error": float(sum(n for k, n in outcomes.items() if k.startswith("error:"))),
        "runs_lost": float(outcomes.get("lost", 0)),
        "runs_over_budget": float(over_budget),
        "runs_longest_s": longest,
        "run_budget_s": budget,
        "run_slack_s": RUN_SLACK,
        "child_kills": float(kills),
        "tool_calls": float(tool_calls),
        "tool_calls_failed_typed": float(tool_failures),
        "tool_calls_failed_untyped": float(untyped_failures),
        "leaked_children": float(leaked),
    }
    for key, n in outcomes.items():
        figures["run_" + key.replace(":", "_")] = float(n)
    return figures


async def run(backend: str, quick: bool) -> dict[str, float]:
    return await faults(backend, quick) | await child_kills(backend, quick)


def main(argv: list[str] | None = None) -> int:
    return L.scenario_main("chaos", run, argv, log_level=logging.CRITICAL)


if __name__ == "__main__":
    raise SystemExit(main())
