"""Benchmark of supervised child MCP servers: crashes, restarts, hot reload, concurrency.

Run: ``python -m benchmarks.children --backend asyncio|trio [--quick]``. Prints one
JSON line of figures (times in milliseconds, from anyio's clock):

* ``crash_to_error_ms_*``: a child is SIGKILLed while a call is in flight; time until
  the caller holds its ``child_server_down`` error (goal: < 100 ms).
* ``restart_to_call_ok_ms_*``: from that error until a call on the restarted child
  succeeds (backoff 0.1 s + start of an mcp-SDK server).
* ``kill_cycles``: N times: call, SIGKILL the child, call again until it answers.
  ``kill_cycles_lost_replies`` counts calls that got neither a reply nor a typed
  error (goal: 0); ``kill_cycles_leftover_processes`` counts child processes still
  running after the bridge stopped (goal: 0).
* ``reload_to_callable_ms_*``: a server is added to a watched config file; time from
  the write until a call to it succeeds, child start included (goal: < 1 s).
* ``concurrent_*``: 64 concurrent ``tools/call`` on one child, through the bridge and
  directly over an ``mcp.ClientSession``: throughput, latencies, and the time the
  bridge adds (bridge median latency minus direct median latency).

Two children are used: a minimal MCP server written here without the SDK (starts in
milliseconds, so the kill cycles measure the bridge, not Python's imports) and a
small mcp-SDK server (the realistic case).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession

from bridge.actors.child_servers import ChildServersActor
from bridge.actors.mcp_session import MCPSessionActor
from bridge.children import ConfigSource, ServerConfig, open_stdio_child
from bridge.errors import BadRequestError, BridgeError, ChildServerDownError
from bridge.messages import (
    CallChildTool,
    CallTool,
    ChildServersMessage,
    DescribeSession,
    SessionMessage,
)
from bridge.runtime import ActorRef, ChildSpec, SupervisorSpec, open_supervisor
from bridge.settings import ChildSettings

TINY_SERVER = r'''
"""A minimal stdio MCP server without the SDK: initialize, ping, tools/list, tools/call (echo, sleep)."""
import json, sys, threading

lock = threading.Lock()
TOOLS = [
    {"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
    {"name": "sleep", "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}}}},
]

def send(message):
    with lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

def text_result(request_id, text):
    send({"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": text}]}})

for line in sys.stdin:
    request = json.loads(line)
    method, request_id = request.get("method"), request.get("id")
    if request_id is None:
        continue
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": request_id, "result": {
            "protocolVersion": request["params"]["protocolVersion"],
            "capabilities": {"tools": {}}, "serverInfo": {"name": "tiny", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": request_id, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        params = request["params"]
        arguments = params.get("arguments") or {}
        if params["name"] == "sleep":
            seconds = float(arguments.get("seconds", 1))
            threading.Timer(seconds, text_result, (request_id, f"slept {seconds}")).start()
        else:
            text_result(request_id, str(arguments.get("text", "")))
    else:
        send({"jsonrpc": "2.0", "id": request_id, "result": {}})
'''

SDK_SERVER = """
import sys

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("sdk-echo")


@server.tool()
async def echo(text: str) -> str:
    return text


@server.tool()
async def sleep(seconds: float) -> str:
    await anyio.sleep(seconds)
    return f"slept {seconds}"


anyio.run(server.run_stdio_async, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
"""

CONCURRENCY = 64
SETTINGS = ChildSettings(call_timeout=30.0, startup_timeout=30.0, stop_grace=2.0, watch=True)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def server(name: str, script: Path, *args: str) -> ServerConfig:
    return ServerConfig(name=name, transport="stdio", command=sys.executable, args=(str(script), *args))


async def until_ok(attempt: Callable[[], Awaitable[object]], *, within: float = 30.0) -> None:
    """Retry ``attempt`` on the errors a restarting or not-yet-added server gives."""
    with anyio.fail_after(within):
        while True:
            try:
                await attempt()
            except (ChildServerDownError, BadRequestError):
                await anyio.sleep(0.002)
            else:
                return


async def pid_of(ref: ActorRef[SessionMessage]) -> int:
    pid = (await ref.ask(DescribeSession())).pid
    assert pid is not None, "the child is not running"
    return pid


async def crash_and_restart(script: Path, trials: int) -> dict[str, float]:
    """SIGKILL an mcp-SDK child during a call: time to the caller's error, then to a good call."""
    to_error: list[float] = []
    to_ok: list[float] = []
    async with open_supervisor("bench") as supervisor:
        config = server("sdk", script)
        ref = await supervisor.start_child(ChildSpec("sdk", lambda: MCPSessionActor(config, SETTINGS)))
        await ref.ask(CallTool(tool="echo", arguments={"text": "warm up"}))
        for _ in range(trials):
            pid = await pid_of(ref)
            killed_at: list[float] = []

            async def kill_soon(pid: int = pid, killed_at: list[float] = killed_at) -> None:
                await anyio.sleep(0.05)  # the call is on the child by then
                killed_at.append(anyio.current_time())
                os.kill(pid, signal.SIGKILL)

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(kill_soon)
                try:
                    await ref.ask(CallTool(tool="sleep", arguments={"seconds": 30}))
                except ChildServerDownError:
                    errored_at = anyio.current_time()
                else:
                    raise RuntimeError("the call survived the kill of its child")
            to_error.append(errored_at - killed_at[0])
            await until_ok(lambda: ref.ask(CallTool(tool="echo", arguments={"text": "back"})))
            to_ok.append(anyio.current_time() - errored_at)
            await anyio.sleep(0.05)
    return {
        "crash_to_error_ms_median": ms(statistics.median(to_error)),
        "crash_to_error_ms_max": ms(max(to_error)),
        "restart_to_call_ok_ms_median": ms(statistics.median(to_ok)),
        "restart_to_call_ok_ms_max": ms(max(to_ok)),
    }


def running_pids(pids: set[int]) -> list[int]:
    """Which of ``pids`` still run (a zombie is not running; a reused pid may count, rarely)."""
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        except OSError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            state = b"R"
        if state not in (b"Z", b"X"):
            alive.append(pid)
    return alive


async def kill_cycles(script: Path, cycles: int) -> dict[str, float]:
    """Call, SIGKILL, call until answered, ``cycles`` times; then count leftovers and lost replies."""
    seen: set[int] = set()
    ok = down = lost = 0
    restart_times: list[float] = []

    async def one_call() -> None:
        nonlocal ok, down, lost
        try:
            await ref.ask(CallTool(tool="echo", arguments={"text": "x"}), timeout=10)
        except ChildServerDownError:
            down += 1
            raise
        except BridgeError:
            lost += 1  # neither an answer nor the typed error a dead child gives
            raise
        ok += 1

    async with open_supervisor("bench") as supervisor:
        config = server("tiny", script)
        ref = await supervisor.start_child(ChildSpec("tiny", lambda: MCPSessionActor(config, SETTINGS)))
        for _ in range(cycles):
            await until_ok(one_call)
            pid = await pid_of(ref)
            seen.add(pid)
            killed_at = anyio.current_time()
            os.kill(pid, signal.SIGKILL)
            await until_ok(one_call)
            restart_times.append(anyio.current_time() - killed_at)
        seen.add(await pid_of(ref))
    with anyio.move_on_after(5):
        while running_pids(seen):
            await anyio.sleep(0.05)
    return {
        "kill_cycles": cycles,
        "kill_cycles_replies": ok,
        "kill_cycles_down_errors": down,
        "kill_cycles_lost_replies": lost,
        "kill_cycles_leftover_processes": len(running_pids(seen)),
        "kill_cycle_restart_ms_median": ms(statistics.median(restart_times)),
    }


async def hot_reload(script: Path, directory: Path, trials: int) -> dict[str, float]:
    """Add a server to a watched config file; time until a call to it succeeds."""
    path = directory / "mcp.json"
    servers: dict[str, Any] = {"first": {"command": sys.executable, "args": [str(script)]}}
    path.write_text(json.dumps({"mcpServers": servers}))
    times: list[float] = []
    async with open_supervisor("bench") as supervisor:
        sessions = await supervisor.start_child(SupervisorSpec("sessions"))
        sources = [ConfigSource(path=path, origin="explicit", required=True)]
        spec: ChildSpec[ChildServersMessage] = ChildSpec(
            "children", lambda: ChildServersActor(SETTINGS, sessions, sources=sources, environ={})
        )
        children = await supervisor.start_child(spec)
        for trial in range(trials):
            name = f"added{trial}"
            servers[name] = {"command": sys.executable, "args": [str(script)]}
            staged = directory / "mcp.json.new"
            staged.write_text(json.dumps({"mcpServers": servers}))
            written_at = anyio.current_time()
            os.replace(staged, path)  # as an editor saves: the watcher never sees half a file
            await until_ok(partial(children.ask, CallChildTool(server=name, tool="echo")))
            times.append(anyio.current_time() - written_at)
    return {
        "reload_to_callable_ms_median": ms(statistics.median(times)),
        "reload_to_callable_ms_max": ms(max(times)),
    }


async def timed_batch(call: Callable[[], Awaitable[object]], latencies: list[float]) -> float:
    """Run ``CONCURRENCY`` calls at once; record each latency; return the batch's wall time."""

    async def one() -> None:
        started = anyio.current_time()
        await call()
        latencies.append(anyio.current_time() - started)

    started = anyio.current_time()
    async with anyio.create_task_group() as task_group:
        for _ in range(CONCURRENCY):
            task_group.start_soon(one)
    return anyio.current_time() - started


async def concurrency(script: Path, rounds: int, backend: str) -> dict[str, float]:
    """64 concurrent echo calls on one mcp-SDK child, through the bridge and directly (rounds interleaved)."""
    config = server("sdk", script, backend)
    direct: list[float] = []
    bridged: list[float] = []
    direct_wall = bridged_wall = 0.0
    async with (
        open_stdio_child(config) as child,
        ClientSession(*child.streams) as session,
        open_supervisor("bench") as supervisor,
    ):
        await session.initialize()
        await session.list_tools()
        ref = await supervisor.start_child(ChildSpec("sdk", lambda: MCPSessionActor(config, SETTINGS)))
        message = CallTool(tool="echo", arguments={"text": "x"})

        def direct_call() -> Awaitable[object]:
            return session.call_tool("echo", {"text": "x"})

        def bridged_call() -> Awaitable[object]:
            return ref.ask(message)

        for _ in range(2):
            await timed_batch(direct_call, [])
            await timed_batch(bridged_call, [])
        for _ in range(rounds):  # interleaved, so a noisy neighbour hits both alike
            direct_wall += await timed_batch(direct_call, direct)
            bridged_wall += await timed_batch(bridged_call, bridged)
    return {
        "concurrent_calls": CONCURRENCY,
        "concurrent_rounds": rounds,
        "concurrent_throughput_per_s_bridge": round(CONCURRENCY * rounds / bridged_wall, 1),
        "concurrent_throughput_per_s_direct": round(CONCURRENCY * rounds / direct_wall, 1),
        "concurrent_latency_ms_median_bridge": ms(statistics.median(bridged)),
        "concurrent_latency_ms_p90_bridge": ms(percentile(bridged, 0.9)),
        "concurrent_latency_ms_median_direct": ms(statistics.median(direct)),
        "concurrent_latency_ms_p90_direct": ms(percentile(direct, 0.9)),
        "concurrent_bridge_added_ms_median": ms(statistics.median(bridged) - statistics.median(direct)),
        "concurrent_bridge_added_ms_per_call": ms((bridged_wall - direct_wall) / (CONCURRENCY * rounds)),
    }


async def run(backend: str, quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-children-") as tmp:
        directory = Path(tmp)
        tiny = directory / "tiny_server.py"
        tiny.write_text(TINY_SERVER)
        sdk = directory / "sdk_server.py"
        sdk.write_text(SDK_SERVER)
        figures: dict[str, Any] = {"backend": backend, "quick": quick}
        figures |= await crash_and_restart(sdk, 2 if quick else 6)
        figures |= await kill_cycles(tiny, 4 if quick else 100)
        figures |= await hot_reload(tiny, directory, 1 if quick else 5)
        figures |= await concurrency(sdk, 3 if quick else 30, backend)
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.children", description=__doc__)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--quick", action="store_true", help="small sizes: proves the benchmark runs, not speed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    figures = anyio.run(run, args.backend, args.quick, backend=args.backend)
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
