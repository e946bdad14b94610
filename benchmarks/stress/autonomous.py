"""Autonomous runs through MCP: many at once, over several models and two real child servers.

``serve`` runs two stdio child servers (the test suite's echo server as ``echo-a`` and ``echo-b``,
started with serve) against the simulator in its own process: 4 models x 4 slots at 0.1 s a turn,
plus a fifth model (4 slots) for the runs over both servers. The models are scripted over HTTP
(``/__sim/script``): every run makes R rounds of ``echo`` calls (distinct arguments, so the loop
detector has nothing to stop), then says it is done. A model's turns are one queue shared by all its
runs, so each run takes R call turns on average; ``max_rounds`` leaves room for a few more.

C concurrent ``autonomous_with_mcp`` calls spread over the 4 models and both servers, plus a few
``autonomous_with_multiple_mcps`` calls over both servers that call echo on each one every round.
Those get the fifth model because they call tools by ``server__tool`` names, which a single-server
run would not know: one shared queue cannot serve both kinds of run.

Figures: runs ok / typed error / lost; runs that finished properly (``stop_reason`` final_answer);
wall time vs the slot bound (each model's turns, R+1 per run, spread over its 4 slots at 0.1 s, and
never less than one run's R+1 turns);
share of the runs' time not in the model (the loop, tool calls); tool calls made and failed; child
processes left after serve stopped.

Run: ``python -m benchmarks.stress.autonomous --backend asyncio|trio [--quick]``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import psutil  # type: ignore[import-untyped]
from mcp import ClientSession
from mcp.types import CallToolResult

from benchmarks.stress import _load as L
from bridge.sim import CallTools, Say, ToolCallSpec, Turn

ECHO = L.REPO / "tests" / "_children" / "echo_server.py"
SERVERS = ("echo-a", "echo-b")
MARKER_VAR = "LMSTUDIO_BRIDGE_STRESS_MARKER"
MODELS, SLOTS, LATENCY = 4, 4, 0.1
MULTI = "stress/multi"
CALL_BUDGET = 60.0


# --------------------------------------------------------------------------- helpers (chaos uses them too)


def children_file(marker: str, *, timeout: float | None = None) -> Path:
    """An ``mcpServers`` file with the echo server as echo-a and echo-b, started with serve.

    ``marker`` goes into the children's environment, so they can be found (:func:`marked_children`)
    even after serve is gone and they were reparented.
    """
    entry: dict[str, Any] = {"command": sys.executable, "args": [str(ECHO)], "eager": True, "env": {MARKER_VAR: marker}}
    if timeout is not None:
        entry["timeout"] = timeout
    L.LOG_DIR.mkdir(parents=True, exist_ok=True)
    path = L.LOG_DIR / f"children-{marker}.json"
    path.write_text(json.dumps({"mcpServers": dict.fromkeys(SERVERS, entry)}))
    return path


def new_marker() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def marked_children(marker: str) -> list[psutil.Process]:
    """Live echo server processes whose environment carries ``marker``, wherever they are in the tree."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if str(ECHO) not in " ".join(process.info["cmdline"] or ()):
                continue
            if process.environ().get(MARKER_VAR) == marker and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


async def leftover_children(marker: str, *, within: float = 2.0) -> int:
    """Child processes still alive ``within`` seconds after serve stopped; they are killed (by pid) afterwards."""
    deadline = time.monotonic() + within
    left = marked_children(marker)
    while left and time.monotonic() < deadline:
        await anyio.sleep(0.1)
        left = marked_children(marker)
    for process in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
    return len(left)


async def script(url: str, model: str, turns: Sequence[Turn]) -> None:
    """Queue ``turns`` for ``model`` on the simulator in its own process."""
    body = {"model": model, "turns": msgspec.to_builtins(list(turns))}
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as client:
        (await client.post("/__sim/script", json=body)).raise_for_status()


async def wait_ready(session: ClientSession, names: Sequence[str], *, within: float = 60.0) -> None:
    """Wait until ``list_available_mcps`` shows every one of ``names`` ready (eager children start with serve)."""
    with anyio.fail_after(within):
        while True:
            result = await session.call_tool("list_available_mcps", {}, read_timeout_seconds=30)
            assert isinstance(result, CallToolResult)
            rows = (result.structured_content or {}).get("servers", [])
            if all(any(r.get("name") == n and r.get("state") == "ready" for r in rows) for n in names):
                return
            await anyio.sleep(0.1)


async def run_call(
    session: ClientSession, tool: str, arguments: dict[str, Any], *, deadline: float
) -> tuple[L.Outcome, dict[str, Any]]:
    """``L.call`` that also returns the structured content: the run's stop reason, rounds and tool calls."""
    start = time.perf_counter()
    try:
        with anyio.fail_after(deadline + 5.0):
            result = await session.call_tool(tool, arguments, read_timeout_seconds=deadline)
    except TimeoutError:
        return L.Outcome("lost", time.perf_counter() - start, detail="no reply within the hard deadline"), {}
    except Exception as exc:
        return L.Outcome("lost", time.perf_counter() - start, detail=f"{type(exc).__name__}: {exc}"[:200]), {}
    structured = result.structured_content if isinstance(result, CallToolResult) else None
    return L.classify(result, time.perf_counter() - start), dict(structured or {})


# --------------------------------------------------------------------------- the scenario


def echo_turns(model: str, runs: int, rounds: int, names: Sequence[str]) -> list[Turn]:
    """``runs x rounds`` turns calling each of ``names`` with fresh arguments, then one "done" per run."""
    calls: list[Turn] = [
        CallTools([ToolCallSpec(n, {"text": f"{model} turn {j} via {n}"}) for n in names]) for j in range(runs * rounds)
    ]
    return [*calls, *[Say("done") for _ in range(runs)]]


async def run(backend: str, quick: bool) -> dict[str, float]:
    runs, rounds, multi = (4, 2, 2) if quick else (48, 5, 4)
    ids = L.model_ids(MODELS)
    every = [*ids, MULTI]
    models = [{"id": m, "loaded": True, "parallel": SLOTS, "latency": LATENCY, "reply_tokens": 1} for m in every]
    # Run i: model i % 4; servers alternate, shifted each wave so every model serves both.
    plan = [(ids[i % MODELS], SERVERS[(i + i // MODELS) % 2]) for i in range(runs)]
    per_model = Counter(m for m, _ in plan) + Counter({MULTI: multi})
    marker = new_marker()
    results: list[tuple[L.Outcome, dict[str, Any]]] = []
    async with L.open_sim(models) as sim:
        for m in ids:
            await script(sim.url, m, echo_turns(m, per_model[m], rounds, ["echo"]))
        await script(sim.url, MULTI, echo_turns(MULTI, multi, rounds, [f"{s}__echo" for s in SERVERS]))
        children = children_file(marker)
        config = L.bridge_toml(
            sim.url, {m: (SLOTS, 256) for m in every}, call_budget=CALL_BUDGET, children=[str(children)]
        )
        try:
            async with L.serve(backend, config, child_servers=True) as served:
                await wait_ready(served.session, SERVERS)

                async def one(tool: str, arguments: dict[str, Any]) -> None:
                    arguments |= {"max_rounds": 2 * rounds + 1}
                    results.append(await run_call(served.session, tool, arguments, deadline=CALL_BUDGET + 5))

                start = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for i, (model, server) in enumerate(plan):
                        args: dict[str, Any] = {"mcp_name": server, "task": f"run {i}", "model": model}
                        tg.start_soon(one, "autonomous_with_mcp", args)
                    for i in range(multi):
                        args = {"mcp_names": list(SERVERS), "task": f"multi {i}", "model": MULTI}
                        tg.start_soon(one, "autonomous_with_multiple_mcps", args)
                elapsed = time.perf_counter() - start
        finally:
            config.unlink(missing_ok=True)
            children.unlink(missing_ok=True)
    leaked = await leftover_children(marker)
    return figures_of(results, runs=runs, rounds=rounds, multi=multi, per_model=per_model, elapsed=elapsed) | {
        "leaked_children": float(leaked)
    }


def figures_of(
    results: list[tuple[L.Outcome, dict[str, Any]]],
    *,
    runs: int,
    rounds: int,
    multi: int,
    per_model: Counter[str],
    elapsed: float,
) -> dict[str, float]:
    tally = L.Tally()
    stops: Counter[str] = Counter()
    done = [data for outcome, data in results if outcome.kind == "ok"]
    for outcome, data in results:
        tally.add(outcome)
        if outcome.kind == "ok":
            stops[str(data.get("stop_reason"))] += 1
    calls = [c for data in done for c in data.get("tool_calls", [])]
    total_s = sum(float(d.get("total_s", 0.0)) for d in done)
    model_s = sum(float(d.get("model_time_s", 0.0)) for d in done)
    tool_s = sum(float(d.get("tool_time_s", 0.0)) for d in done)
    rounds_each = [int(d.get("rounds", 0)) for d in done]
    # Each model's turns (R+1 per run) spread over its slots, one LATENCY each, and no run faster than its
    # own R+1 turns one after another; the models run side by side.
    turns = rounds + 1
    bound = max(max(turns, math.ceil(n * turns / SLOTS)) for n in per_model.values()) * LATENCY
    figures: dict[str, float] = {
        "runs": float(runs),
        "rounds": float(rounds),
        "multi_runs": float(multi),
        "runs_total": float(runs + multi),
        "runs_ok": tally.n("ok"),
        "runs_typed_error": tally.n("error"),
        "runs_lost": tally.n("lost") + tally.n("cancelled"),
        "runs_final_answer": float(stops.get("final_answer", 0)),
        "rounds_min": float(min(rounds_each, default=0)),
        "rounds_max": float(max(rounds_each, default=0)),
        "wall_s": elapsed,
        "bound_s": bound,
        "share_of_bound": bound / elapsed if elapsed > 0 else float("nan"),
        "not_in_model_share": 1.0 - model_s / total_s if total_s > 0 else float("nan"),
        "in_tools_share": tool_s / total_s if total_s > 0 else float("nan"),
        "tool_calls": float(len(calls)),
        "tool_calls_failed": float(sum(1 for c in calls if not c.get("ok"))),
    }
    for reason, n in stops.items():
        figures[f"stop_{reason}"] = float(n)
    for code, n in tally.codes.items():
        figures[f"code_{code}"] = float(n)
    if tally.lost_details:
        print("autonomous: lost runs:", *tally.lost_details, sep="\n  ", file=sys.stderr)
    return figures


def main(argv: list[str] | None = None) -> int:
    return L.scenario_main("autonomous", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
