"""Benchmark of the whole bridge through real stdio MCP: start-up, added latency, throughput.

Run: ``python -m benchmarks.frontend --backend asyncio [--quick]``; it prints one JSON line of figures.
The simulated LM Studio runs in its own process, ``lmstudio-bridge serve`` in another (as Claude Code
starts it), and this process is the MCP client, so the figures include everything a user's call goes
through: MCP client -> stdio -> front end -> actors -> HTTP -> simulator, and back.

Scenarios:

* ``initialize``: seconds from spawning ``serve`` to its answer to ``initialize`` (goal: <= 1.0 s),
  with no LLM server up and with the simulator up. As on a user's machine after the first start,
  Python's bytecode cache is on (even if ``PYTHONDONTWRITEBYTECODE`` is set here) and warm: one
  unmeasured start fills it, in a cache directory of the run's own.
* ``added latency``: 64 callers at once, each sending calls back to back to a model that holds every
  request ``LATENCY`` seconds (enough slots that nothing queues); the same workload from a bare httpx
  client to the same simulator. Added = bridge percentile - bare percentile (goals: p50 < 2 ms, p99 < 10 ms).
* ``throughput``: 8 models x 4 slots at 100 ms per request, 64 concurrent callers through one MCP
  session; achieved requests/s against the server-bound limit 8 * 4 / 0.1 = 320/s (goal: >= 90 %).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
import msgspec
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult

from bridge.sim.testing import sim_process

CALLERS = 64
LATENCY = 0.5
THROUGHPUT_MODELS = 8
THROUGHPUT_SLOTS = 4
THROUGHPUT_LATENCY = 0.1

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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


async def _time_initialize(url: str, config: Path, backend: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    async with await anyio.open_process(
        _serve_command(url, config, backend),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        await process.stdin.send(json.dumps(INITIALIZE).encode() + b"\n")
        buffer = b""
        with anyio.fail_after(30):
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


async def initialize(quick: bool, work: Path, backend: str, sim_url: str) -> dict[str, float]:
    rounds = 1 if quick else 10
    env = {k: v for k, v in _env().items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    config = work / "empty.toml"
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


# --------------------------------------------------------------------------- an MCP session to serve


@asynccontextmanager
async def mcp_session(url: str, config: Path, backend: str, errlog: TextIO) -> AsyncIterator[ClientSession]:
    command = _serve_command(url, config, backend)
    params = StdioServerParameters(command=command[0], args=command[1:], env=_env())
    async with (
        stdio_client(params, errlog=errlog) as (read, write),
        ClientSession(read, write, read_timeout_seconds=120) as session,
    ):
        await session.initialize()
        yield session


async def _chat(session: ClientSession, model: str, prompt: str) -> None:
    result = await session.call_tool("chat_completion", {"prompt": prompt, "model": model})
    if not isinstance(result, CallToolResult) or result.is_error:
        raise RuntimeError(f"chat_completion failed: {result}")


# --------------------------------------------------------------------------- added latency


async def _bare_latencies(url: str, model: str, rounds: int) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=CALLERS * 2, max_keepalive_connections=CALLERS * 2)
    async with httpx.AsyncClient(base_url=url, trust_env=False, limits=limits, timeout=60) as client:

        async def one(i: int) -> None:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": f"q{i}"}],
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            start = time.perf_counter()
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        msgspec.json.decode(line[6:])
            latencies.append(time.perf_counter() - start)

        await _callers(one, rounds)
    return latencies


async def _callers(one: Any, rounds: int) -> None:
    """``CALLERS`` callers, each sending ``rounds`` calls back to back.

    Their starts are spread over one hold time, so in steady state all of them are in flight at once
    and calls arrive evenly, as from independent users, rather than as one synchronized burst.
    """

    async def caller(c: int) -> None:
        await anyio.sleep(c * LATENCY / CALLERS)
        for r in range(rounds):
            await one(c * rounds + r)

    await one(-1)  # warm: connection pool, model listing, worker start
    async with anyio.create_task_group() as tg:
        for c in range(CALLERS):
            tg.start_soon(caller, c)


async def added_latency(quick: bool, work: Path, backend: str, errlog: TextIO) -> dict[str, float]:
    rounds = 2 if quick else 25
    model = "bench/held"
    sim_json = work / "sim-latency.json"
    sim_json.write_text(
        json.dumps(
            {"models": [{"id": model, "loaded": True, "parallel": CALLERS * 2, "latency": LATENCY, "reply_tokens": 1}]}
        )
    )
    config = work / "latency.toml"
    config.write_text(f"[default_limits]\nslots = {CALLERS * 2}\nqueue = {CALLERS * 2}\n")
    async with sim_process(["--config", str(sim_json)]) as sim:
        bare = await _bare_latencies(sim.url, model, rounds)
        bridged: list[float] = []
        async with mcp_session(sim.url, config, backend, errlog) as session:

            async def one(i: int) -> None:
                start = time.perf_counter()
                await _chat(session, model, f"q{i}")
                bridged.append(time.perf_counter() - start)

            await _callers(one, rounds)
    # Drop the warm-up call of each side before comparing.
    bare, bridged = bare[1:], bridged[1:]
    return {
        "latency_model_hold_s": LATENCY,
        "latency_calls": float(len(bridged)),
        "bare_httpx_p50_ms": percentile(bare, 0.5) * 1e3,
        "bare_httpx_p99_ms": percentile(bare, 0.99) * 1e3,
        "bridge_mcp_p50_ms": percentile(bridged, 0.5) * 1e3,
        "bridge_mcp_p99_ms": percentile(bridged, 0.99) * 1e3,
        "added_p50_ms": (percentile(bridged, 0.5) - percentile(bare, 0.5)) * 1e3,
        "added_p99_ms": (percentile(bridged, 0.99) - percentile(bare, 0.99)) * 1e3,
    }


# --------------------------------------------------------------------------- throughput


async def throughput(quick: bool, work: Path, backend: str, errlog: TextIO) -> dict[str, float]:
    requests = 160 if quick else 3200
    ids = [f"bench/model-{i}" for i in range(THROUGHPUT_MODELS)]
    sim_json = work / "sim-throughput.json"
    sim_json.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "id": i,
                        "loaded": True,
                        "parallel": THROUGHPUT_SLOTS,
                        "latency": THROUGHPUT_LATENCY,
                        "reply_tokens": 1,
                    }
                    for i in ids
                ]
            }
        )
    )
    config = work / "throughput.toml"
    config.write_text(f"[default_limits]\nslots = {THROUGHPUT_SLOTS}\nqueue = 64\n")
    failures = 0
    async with (
        sim_process(["--config", str(sim_json)]) as sim,
        mcp_session(sim.url, config, backend, errlog) as session,
    ):
        async with anyio.create_task_group() as tg:
            for model in ids:
                tg.start_soon(_chat, session, model, "warm")
        next_index = 0

        async def caller() -> None:
            nonlocal next_index, failures
            while next_index < requests:
                index = next_index
                next_index += 1
                try:
                    await _chat(session, ids[index % len(ids)], f"q{index}")
                except RuntimeError:
                    failures += 1

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(CALLERS):
                tg.start_soon(caller)
        elapsed = time.perf_counter() - start
    limit = THROUGHPUT_MODELS * THROUGHPUT_SLOTS / THROUGHPUT_LATENCY
    achieved = requests / elapsed
    return {
        "throughput_req_per_s": achieved,
        "throughput_limit_req_per_s": limit,
        "throughput_ratio": achieved / limit,
        "throughput_requests": float(requests),
        "throughput_failures": float(failures),
    }


# --------------------------------------------------------------------------- main


async def run_all(quick: bool, backend: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-frontend-") as tmp:
        work = Path(tmp)
        (work / "empty.toml").write_text("# nothing: flags only\n")
        sim_json = work / "sim-init.json"
        sim_json.write_text(json.dumps({"models": [{"id": "m", "loaded": True}]}))
        with open(work / "serve-stderr.log", "w", encoding="utf-8") as errlog:  # noqa: ASYNC230 -- set-up, not measured
            async with sim_process(["--config", str(sim_json)]) as sim:
                figures.update(await initialize(quick, work, backend, sim.url))
            figures.update(await added_latency(quick, work, backend, errlog))
            figures.update(await throughput(quick, work, backend, errlog))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.frontend", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop of both sides")
    parser.add_argument("--quick", action="store_true", help="small sizes: proves it runs, not speed")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    # The client side is measured too: keep its collector's full passes over the SDK's import-time
    # objects out of the figures, as `serve` does for itself.
    gc.freeze()
    figures = anyio.run(run_all, args.quick, args.backend, backend=args.backend)
    sys.stdout.write(msgspec.json.encode(figures).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
