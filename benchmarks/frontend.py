"""Benchmark of the whole bridge through real stdio MCP: start-up and throughput.

Run: ``python -m benchmarks.frontend --backend asyncio [--quick]``; it prints one JSON line of figures.
The simulated LM Studio runs in its own process, ``lmstudio-bridge serve`` in another (as Claude Code
starts it), and this process is the MCP client, so the figures include everything a user's call goes
through: MCP client -> stdio -> front end -> actors -> HTTP -> simulator, and back.

Scenarios:

* ``initialize``: seconds from spawning ``serve`` to its answer to ``initialize`` (goal: <= 1.0 s),
  with no LLM server up and with the simulator up. As on a user's machine after the first start,
  Python's bytecode cache is on (even if ``PYTHONDONTWRITEBYTECODE`` is set here) and warm: one
  unmeasured start fills it, in a cache directory of the run's own.
* ``added latency`` at 64 concurrent is measured once, by the stress suite
  (:func:`benchmarks.stress.latency.concurrent`, through this same path); its table has the figures.
* ``throughput``: 8 models x 4 slots at 100 ms per request, 64 concurrent callers through one MCP
  session; achieved requests/s against the server-bound limit 8 * 4 / 0.1 = 320/s (goal: >= 90 %).

The MCP client side is the stress suite's load generator (:mod:`benchmarks.stress._load`), on asyncio
whatever ``serve``'s backend.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from benchmarks import _report
from benchmarks.stress import _load as L
from bridge.sim.testing import sim_process

CALLERS = 64
THROUGHPUT_MODELS = 8
THROUGHPUT_SLOTS = 4
THROUGHPUT_LATENCY = 0.1

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LMSTUDIO", "MCP_JSON"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _serve_command(url: str, config: Path, backend: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bridge",
        "serve",
        "--base-url",
        url,
        "--config",
        str(config),
        "--no-child-servers",
        "--log-level",
        "ERROR",
        "--backend",
        backend,
    ]


# --------------------------------------------------------------------------- initialize


async def time_initialize(command: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning ``command`` (an MCP server on stdio) to its answer to ``initialize``."""
    start = time.perf_counter()
    async with await anyio.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        await process.stdin.send(json.dumps(INITIALIZE).encode() + b"\n")
        buffer = b""
        with anyio.fail_after(60):
            while b"\n" not in buffer:
                buffer += await process.stdout.receive()
        took = time.perf_counter() - start
        reply = json.loads(buffer.split(b"\n", 1)[0])
        if reply.get("id") != 1 or "result" not in reply:
            raise RuntimeError(f"unexpected answer to initialize: {reply}")
        await process.stdin.aclose()
        with anyio.fail_after(30):
            await process.wait()
    return took


async def _time_initialize(url: str, config: Path, backend: str, env: dict[str, str]) -> float:
    return await time_initialize(_serve_command(url, config, backend), env)


async def initialize(quick: bool, work: Path, backend: str, sim_url: str) -> dict[str, float]:
    rounds = 1 if quick else 5
    env = _env()
    config = work / "empty.toml"
    if not quick:  # a smoke run skips the warm cache: it compiles every dependency once, seconds of CPU
        env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        await _time_initialize(sim_url, config, backend, env)  # fills the bytecode cache
    with socket_port() as dead_port:
        dead_url = f"http://127.0.0.1:{dead_port}"
        dead = [await _time_initialize(dead_url, config, backend, env) for _ in range(rounds)]
    live = [await _time_initialize(sim_url, config, backend, env) for _ in range(rounds)]
    return {
        "initialize_no_server_median_s": statistics.median(dead),
        "initialize_no_server_max_s": max(dead),
        "initialize_with_sim_median_s": statistics.median(live),
        "initialize_with_sim_max_s": max(live),
        "initialize_rounds": float(rounds),
    }


class socket_port:
    """A loopback port nothing listens on (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        return None


# --------------------------------------------------------------------------- throughput


async def throughput(quick: bool, backend: str) -> dict[str, float]:
    """8 models x 4 slots at 100 ms, ``CALLERS`` closed-loop callers on one MCP session."""
    requests = 160 if quick else 960
    ids = L.model_ids(THROUGHPUT_MODELS)
    models = [
        {"id": m, "loaded": True, "parallel": THROUGHPUT_SLOTS, "latency": THROUGHPUT_LATENCY, "reply_tokens": 1}
        for m in ids
    ]
    async with (
        L.open_sim(models) as sim,
        L.serve_warm(backend, sim.url, {m: (THROUGHPUT_SLOTS, 64) for m in ids}) as served,
    ):
        tally, elapsed = await L.closed_loop(served.session, ids, requests=requests, callers=CALLERS, deadline=60)
    limit = THROUGHPUT_MODELS * THROUGHPUT_SLOTS / THROUGHPUT_LATENCY
    achieved = requests / elapsed
    return {
        "throughput_req_per_s": achieved,
        "throughput_limit_req_per_s": limit,
        "throughput_ratio": achieved / limit,
        "throughput_requests": float(requests),
        "throughput_failures": tally.n("error"),
        "throughput_lost": tally.n("lost"),
    }


# --------------------------------------------------------------------------- main


async def run_all(quick: bool, backend: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-frontend-") as tmp:
        work = Path(tmp)
        (work / "empty.toml").write_text("# nothing: flags only\n")
        sim_json = work / "sim-init.json"
        sim_json.write_text(json.dumps({"models": [{"id": "m", "loaded": True}]}))
        async with sim_process(["--config", str(sim_json)]) as sim:
            figures.update(await initialize(quick, work, backend, sim.url))
        figures.update(await throughput(quick, backend))
    return figures


def main(argv: list[str] | None = None) -> int:
    return _report.client_main(
        "python -m benchmarks.frontend",
        __doc__.splitlines()[0],
        run_all,
        argv,
        backend_help="serve's event loop",
        log_level=logging.ERROR,
    )


if __name__ == "__main__":
    raise SystemExit(main())
