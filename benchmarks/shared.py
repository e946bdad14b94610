"""Benchmark of shared mode: sessions through ``serve --shared`` relays into one shared bridge.

Run: ``python -m benchmarks.shared --backend asyncio [--quick]``; it prints one JSON line of figures.
The simulator runs in its own process; each session is a real ``serve --shared`` relay (as Claude Code
starts it) attached to one shared bridge (a detached ``daemon``, on the same backend), in a runtime
directory of the run's own; this process is the MCP client of every session.

Scenarios:

* ``initialize``: seconds from spawning the relay to its answer to ``initialize``: cold (no shared
  bridge yet: the relay starts one) and warm (it attaches to the running one; goal < 100 ms).
* ``relay latency``: p50 of a cheap call (``bridge_status``) through a relay minus through ``serve``
  alone, calls one at a time (goal < 0.5 ms).
* ``throughput``: 4 sessions x 64 callers (600 calls each) over 8 models x 4 slots @ 100 ms; requests/s against the
  server-bound limit 320/s (goal >= 90 %), and the most the simulator ever had generating (at most 4)
  or waiting in its own queue (0: the shared bridge never sends more than a model's slots).
* ``fairness``: session A floods one 4-slot model @ 50 ms with a 1,000-item ``batch_chat``; session B
  sends single chats one after another meanwhile; B's wait (its latency minus one service time) in
  service times, p50 and max.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from benchmarks import _report
from benchmarks.frontend import time_initialize
from benchmarks.stress import _load as L

SESSIONS = 4
CALLERS = 64
MODELS = 8
SLOTS = 4
LATENCY = 0.1
FAIR_LATENCY = 0.05
FAIR_MODEL = "fair/m"


class SharedRun:
    """The run's own user: a runtime directory (short: socket paths are limited) and an environment."""

    def __init__(self, work: Path, backend: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lbb-", dir="/tmp"))
        self.backend = backend
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("LMSTUDIO", "MCP_JSON"))}
        self.env.update(XDG_RUNTIME_DIR=str(self.root), PYTHONUNBUFFERED="1", HOME=str(work))
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")

    def relay_args(self, config: Path) -> list[str]:
        return ["-m", "bridge", "serve", "--shared", "--backend", self.backend, "--config", str(config)]

    def stop(self, config: Path) -> None:
        subprocess.run(
            [sys.executable, "-m", "bridge", "daemon", "stop", "--config", str(config)],
            env=self.env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        for pid in _pids_in(self.root):
            _wait_gone(pid)

    @asynccontextmanager
    async def session(self, config: Path) -> AsyncIterator[L.Served]:
        command = [*self.relay_args(config), "--no-child-servers", "--log-level", "ERROR"]
        async with L.serve(self.backend, None, command=command, env_extra=self.env) as served:
            yield served


def _pids_in(root: Path) -> list[int]:
    import socket

    pids = []
    for path in root.glob("*/*.sock"):
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.settimeout(5)
                s.connect(str(path))
                s.sendall(b'{"kind":"status"}\n')
                pids.append(int(json.loads(s.makefile("rb").readline())["pid"]))
            except (OSError, ValueError, KeyError):
                continue
    return pids


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, 9)


# --------------------------------------------------------------------------- initialize


async def _time_initialize(run: SharedRun, config: Path) -> float:
    return await time_initialize([sys.executable, *run.relay_args(config), "--no-child-servers"], run.env)


async def initialize(quick: bool, run: SharedRun, config: Path) -> dict[str, float]:
    rounds = 1 if quick else 5
    await _time_initialize(run, config)  # fills the bytecode cache (and starts a bridge)
    cold = []
    for _ in range(rounds):
        run.stop(config)
        cold.append(await _time_initialize(run, config))
    warm = [await _time_initialize(run, config) for _ in range(rounds * 4)]
    run.stop(config)
    return {
        "initialize_cold_median_s": statistics.median(cold),
        "initialize_warm_median_ms": statistics.median(warm) * 1000,
        "initialize_warm_max_ms": max(warm) * 1000,
        "initialize_rounds": float(rounds),
    }


# --------------------------------------------------------------------------- relay latency


async def relay_latency(quick: bool, run: SharedRun, sim_url: str) -> dict[str, float]:
    calls = 50 if quick else 400
    config = L.bridge_toml(sim_url, {"stress/m0": (SLOTS, 64)})
    try:

        async def p50(served: L.Served) -> float:
            for _ in range(20):
                await L.status(served.session)
            took = []
            for _ in range(calls):
                start = time.perf_counter()
                await L.status(served.session)
                took.append(time.perf_counter() - start)
            return statistics.median(took)

        async with L.serve(run.backend, config) as alone:
            direct = await p50(alone)
        async with run.session(config) as relayed:
            through = await p50(relayed)
        run.stop(config)
    finally:
        config.unlink(missing_ok=True)
    return {
        "status_call_serve_p50_ms": direct * 1000,
        "status_call_relay_p50_ms": through * 1000,
        "relay_added_p50_ms": (through - direct) * 1000,
    }


# --------------------------------------------------------------------------- throughput


async def throughput(quick: bool, run: SharedRun) -> dict[str, float]:
    per_session = 40 if quick else 600
    ids = L.model_ids(MODELS)
    models = [{"id": m, "loaded": True, "parallel": SLOTS, "latency": LATENCY, "reply_tokens": 1} for m in ids]
    async with L.open_sim(models) as sim:
        config = L.bridge_toml(sim.url, {m: (SLOTS, 256) for m in ids})
        try:
            tallies: list[L.Tally] = []
            async with (
                run.session(config) as s1,
                run.session(config) as s2,
                run.session(config) as s3,
                run.session(config) as s4,
            ):
                sessions = [s1, s2, s3, s4][:SESSIONS]
                for served in sessions:  # first connections and listings, unmeasured
                    for model in ids:
                        await L.chat(served.session, model, "warm", deadline=30)
                await L.sim_reset(sim.url)
                start = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for served in sessions:

                        async def load(served: L.Served = served) -> None:
                            tally, _ = await L.closed_loop(
                                served.session, ids, requests=per_session, callers=CALLERS, deadline=60
                            )
                            tallies.append(tally)

                        tg.start_soon(load)
                elapsed = time.perf_counter() - start
                stats = (await L.sim_stats(sim.url))["models"]
            run.stop(config)
        finally:
            config.unlink(missing_ok=True)
    requests = per_session * SESSIONS
    limit = MODELS * SLOTS / LATENCY
    return {
        "throughput_req_per_s": requests / elapsed,
        "throughput_limit_req_per_s": limit,
        "throughput_ratio": requests / elapsed / limit,
        "throughput_requests": float(requests),
        "throughput_failures": sum(t.n("error") + t.n("lost") for t in tallies),
        "sim_max_generating_per_model": float(max(m["max_generating"] for m in stats.values())),
        "sim_max_queued_per_model": float(max(m["max_queued"] for m in stats.values())),
    }


# --------------------------------------------------------------------------- fairness


async def fairness(quick: bool, run: SharedRun) -> dict[str, float]:
    items = 100 if quick else 1000
    model = {"id": FAIR_MODEL, "loaded": True, "parallel": SLOTS, "latency": FAIR_LATENCY, "reply_tokens": 1}
    async with L.open_sim([model]) as sim:
        config = L.bridge_toml(sim.url, {FAIR_MODEL: (SLOTS, 64)}, call_budget=50.0)
        try:
            async with run.session(config) as a, run.session(config) as b:
                await L.chat(a.session, FAIR_MODEL, "warm", deadline=30)
                await L.chat(b.session, FAIR_MODEL, "warm", deadline=30)
                waits: list[float] = []
                batch: list[L.Outcome] = []
                async with anyio.create_task_group() as tg:

                    async def flood() -> None:
                        prompts = [f"item {n}" for n in range(items)]
                        batch.append(await L.call(a.session, "batch_chat", {"prompts": prompts}, deadline=50))

                    tg.start_soon(flood)
                    while not any(
                        s.get("queued", 0) >= SLOTS for s in (await L.status(b.session)).get("sessions", {}).values()
                    ):
                        await anyio.sleep(0.01)
                    while not batch:
                        outcome = await L.chat(b.session, FAIR_MODEL, "mine", deadline=30)
                        if outcome.kind == "ok":
                            waits.append(max(0.0, outcome.seconds - FAIR_LATENCY) / FAIR_LATENCY)
                        if len(waits) >= (10 if quick else 40):
                            break
            run.stop(config)
        finally:
            config.unlink(missing_ok=True)
    return {
        "fairness_batch_items": float(items),
        "fairness_b_calls": float(len(waits)),
        "fairness_b_wait_p50_service_times": statistics.median(waits) if waits else float("nan"),
        "fairness_b_wait_max_service_times": max(waits) if waits else float("nan"),
        "fairness_fifo_wait_estimate_service_times": items / SLOTS,
    }


# --------------------------------------------------------------------------- main


async def run_all(quick: bool, backend: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-shared-") as tmp:
        work = Path(tmp)
        run = SharedRun(work, backend)
        try:
            async with L.open_sim([{"id": "stress/m0", "loaded": True, "reply_tokens": 1}]) as sim:
                config = L.bridge_toml(sim.url, {"stress/m0": (SLOTS, 64)})
                try:
                    figures: dict[str, Any] = await initialize(quick, run, config)
                finally:
                    config.unlink(missing_ok=True)
                figures.update(await relay_latency(quick, run, sim.url))
            figures.update(await throughput(quick, run))
            figures.update(await fairness(quick, run))
        finally:
            for pid in _pids_in(run.root):
                _wait_gone(pid)
            shutil.rmtree(run.root, ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    return _report.client_main(
        "python -m benchmarks.shared", __doc__.splitlines()[0], run_all, argv, backend_help="relay's and bridge's loop"
    )


if __name__ == "__main__":
    sys.exit(main())
