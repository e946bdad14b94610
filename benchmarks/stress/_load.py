"""The shared MCP load generator of the stress suite.

Everything here drives the bridge the way a user's MCP host does: a real
``mcp.ClientSession`` over a real stdio pipe into a ``python -m bridge serve``
subprocess, which talks HTTP to the simulated LM Studio running in a third
process. The load generator itself always runs on asyncio (so the server-side
backend is the only thing that changes between the asyncio and trio columns).

Every call has a deadline (``read_timeout_seconds`` plus an outer
``fail_after``), and ends as one :class:`Outcome`:

* ``ok``        a tool result;
* ``error``     a typed error result (``is_error`` with a ``code`` in its structured content);
* ``cancelled`` the caller itself gave up on purpose (cancellation scenarios);
* ``lost``      anything else: no reply within the deadline, an untyped error, a broken session.

Every process started here is stopped by its pid (and checked to be gone).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
import msgspec
import psutil  # type: ignore[import-untyped]
from mcp import ClientSession, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult

from benchmarks import _report
from benchmarks._callers import run_callers
from bridge.sim.testing import SimProcess, sim_process

__all__ = [
    "Outcome",
    "Served",
    "Tally",
    "bare_httpx_chat",
    "call",
    "open_sim",
    "percentile",
    "proc_sample",
    "scenario_main",
    "serve",
    "serve_warm",
    "sim_stats",
]

Kind = Literal["ok", "error", "cancelled", "lost"]

LOG_DIR = Path(tempfile.gettempdir()) / "lmstudio-bridge-stress"
REPO = Path(__file__).resolve().parents[2]


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(slots=True)
class Outcome:
    kind: Kind
    seconds: float
    code: str | None = None
    detail: str = ""


@dataclass(slots=True)
class Tally:
    """Outcomes of many calls: counts by kind, error codes, latencies of the successful ones."""

    kinds: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    lost_details: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.kinds[outcome.kind] += 1
        if outcome.code:
            self.codes[outcome.code] += 1
        if outcome.kind == "ok":
            self.latencies.append(outcome.seconds)
        if outcome.kind == "lost" and len(self.lost_details) < 5:
            self.lost_details.append(outcome.detail)

    @property
    def total(self) -> int:
        return sum(self.kinds.values())

    def n(self, kind: Kind) -> float:
        return float(self.kinds.get(kind, 0))


# --------------------------------------------------------------------------- the simulator


def _temp_file(suffix: str, text: str) -> Path:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False, dir=LOG_DIR)  # noqa: SIM115
    handle.write(text)
    handle.close()
    return Path(handle.name)


def model_ids(count: int) -> list[str]:
    return [f"stress/m{i}" for i in range(count)]


@asynccontextmanager
async def open_sim(
    models: list[dict[str, Any]], *, extra: Sequence[str] = (), config: dict[str, Any] | None = None
) -> AsyncIterator[SimProcess]:
    """The simulator in its own process, serving ``models`` (``SimModel`` fields), plus ``SimConfig`` fields."""
    path = _temp_file(".json", json.dumps({"models": models, **(config or {})}))
    try:
        async with sim_process(["--config", str(path), *extra]) as sim:
            yield sim
    finally:
        path.unlink(missing_ok=True)


async def sim_stats(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as client:
        response = await client.get("/__sim/stats")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


async def sim_reset(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as client:
        (await client.post("/__sim/reset")).raise_for_status()


# --------------------------------------------------------------------------- the bridge under test


def bridge_toml(
    url: str,
    limits: dict[str, tuple[int, int]],
    *,
    call_budget: float = 30.0,
    budgets: dict[str, float] | None = None,
    retry_attempts: int | None = None,
    children: Sequence[str] = (),
) -> Path:
    """A TOML settings file for ``serve``: one server, per-model ``(slots, queue)``, the call budget."""
    lines = [f'servers = ["{url}"]', f"call_budget = {call_budget}"]
    if budgets:
        lines.append("[budgets]")
        lines += [f"{k} = {v}" for k, v in budgets.items()]
    if retry_attempts is not None:
        lines += ["[retry]", f"attempts = {retry_attempts}"]
    lines += ["[children]", "discover = false", "watch = false"]
    if children:
        lines.append("config_paths = [" + ", ".join(json.dumps(c) for c in children) + "]")
    for model, (slots, queue) in limits.items():
        lines += [f'[models."{model}"]', f"slots = {slots}", f"queue = {queue}"]
    return _temp_file(".toml", "\n".join(lines) + "\n")


@dataclass(slots=True)
class Served:
    """A running ``serve`` subprocess and the client session into it."""

    session: ClientSession
    pid: int
    backend: str

    def process(self) -> psutil.Process:
        return psutil.Process(self.pid)


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@asynccontextmanager
async def serve(
    backend: str,
    config: Path | None,
    *,
    child_servers: bool = False,
    command: Sequence[str] | None = None,
    env_extra: dict[str, str] | None = None,
    startup_timeout: float = 60.0,
) -> AsyncIterator[Served]:
    """Start ``python -m bridge serve --backend B --config F`` (or ``command``, then ``config`` may be None)
    and open an MCP session into it.

    On exit the session is closed (stdin EOF stops the server); a server still alive a few seconds
    later is killed by pid and reported on stderr as leaked.
    """
    assert config is not None or command is not None
    args = command or ["-m", "bridge", "serve", "--backend", backend, "--config", str(config), "--log-level", "ERROR"]
    if command is None and not child_servers:
        args = [*args, "--no-child-servers"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMSTUDIO")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(env_extra or {})
    params = StdioServerParameters(command=sys.executable, args=list(args), env=env, cwd=str(REPO))
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    before = _descendants()
    pid = -1
    with (LOG_DIR / f"serve-{backend}-{os.getpid()}.log").open("a") as errlog:
        try:
            async with stdio_client(params, errlog=errlog) as (read, write):
                started = _descendants() - before
                pid = min(started) if started else -1
                async with ClientSession(read, write) as session:
                    with anyio.fail_after(startup_timeout):
                        await session.initialize()
                    yield Served(session, pid, backend)
        finally:
            if pid > 0:
                with anyio.CancelScope(shield=True):
                    await _ensure_gone(pid)


@asynccontextmanager
async def serve_warm(
    backend: str, url: str, limits: dict[str, tuple[int, int]], *, call_budget: float = 30.0
) -> AsyncIterator[Served]:
    """:func:`serve` on a :func:`bridge_toml` of its own, with one call per model first, so that the
    measured calls do not pay for start-up and first connections."""
    config = bridge_toml(url, limits, call_budget=call_budget)
    try:
        async with serve(backend, config) as served:
            for model in limits:
                await chat(served.session, model, "warm", deadline=30)
            yield served
    finally:
        config.unlink(missing_ok=True)


async def _ensure_gone(pid: int, wait: float = 5.0) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        await anyio.sleep(0.05)
    print(f"stress: serve pid {pid} still alive after its session closed; killing it", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def proc_sample(pid: int) -> dict[str, float]:
    """RSS, peak RSS (VmHWM), open descriptors, threads and live descendant processes of ``pid``."""
    process = psutil.Process(pid)
    hwm = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = float(line.split()[1]) * 1024
    except OSError:
        pass
    children = [c for c in process.children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]
    return {
        "rss": float(process.memory_info().rss),
        "hwm": hwm,
        "fds": float(process.num_fds()),
        "threads": float(process.num_threads()),
        "children": float(len(children)),
    }


# --------------------------------------------------------------------------- calls


def classify(result: CallToolResult | Any, seconds: float) -> Outcome:
    if not isinstance(result, CallToolResult):
        return Outcome("lost", seconds, detail=f"unexpected result type {type(result).__name__}")
    if not result.is_error:
        return Outcome("ok", seconds)
    structured = result.structured_content or {}
    code = structured.get("code") if isinstance(structured, dict) else None
    if isinstance(code, str) and code:
        return Outcome("error", seconds, code=code)
    text = " ".join(getattr(c, "text", "") for c in result.content)[:200]
    return Outcome("lost", seconds, detail=f"untyped error result: {text}")


async def call(session: ClientSession, tool: str, arguments: dict[str, Any], *, deadline: float) -> Outcome:
    """One tool call with a hard deadline; never raises (except cancellation)."""
    start = time.perf_counter()
    try:
        with anyio.fail_after(deadline + 5.0):
            result = await session.call_tool(tool, arguments, read_timeout_seconds=deadline)
    except MCPError as exc:
        return Outcome("lost", time.perf_counter() - start, detail=f"MCPError {exc.code}: {exc.message}"[:200])
    except TimeoutError:
        return Outcome("lost", time.perf_counter() - start, detail="no reply within the hard deadline")
    except Exception as exc:
        return Outcome("lost", time.perf_counter() - start, detail=f"{type(exc).__name__}: {exc}"[:200])
    return classify(result, time.perf_counter() - start)


async def chat(session: ClientSession, model: str, prompt: str, *, deadline: float) -> Outcome:
    return await call(session, "chat_completion", {"prompt": prompt, "model": model}, deadline=deadline)


async def status(session: ClientSession) -> dict[str, Any]:
    """``bridge_status``'s structured content (per-model in_flight/queued …)."""
    result = await session.call_tool("bridge_status", {}, read_timeout_seconds=30)
    assert isinstance(result, CallToolResult)
    data: dict[str, Any] = result.structured_content or {}
    return data


def settle_heap() -> None:
    """Collect, then move every live object out of the collector's sight (``gc.freeze``).

    The load generator measures time on its own clock, so its own pauses land in the figures: a
    full collection over the SDK's and pydantic's import-time objects takes 50-100 ms here, and
    struck the bare-httpx and the bridge rounds at random. ``serve`` does the same for itself.
    Called before each measured loop, on both sides alike.
    """
    gc.collect()
    gc.freeze()


async def closed_loop(
    session: ClientSession,
    ids: Sequence[str],
    *,
    requests: int,
    callers: int,
    deadline: float,
    spread: float = 0.0,
) -> tuple[Tally, float]:
    """``callers`` tasks take request numbers until ``requests`` are done, round-robin over models.

    ``spread`` as in :func:`benchmarks._callers.run_callers`.
    """
    tally = Tally()
    settle_heap()

    async def one(index: int) -> None:
        tally.add(await chat(session, ids[index % len(ids)], f"q{index}", deadline=deadline))

    return tally, await run_callers(requests, callers, one, spread=spread)


async def bare_httpx_chat(
    url: str, ids: Sequence[str], slots: int, *, requests: int, callers: int, spread: float = 0.0
) -> tuple[list[float], float]:
    """The practical ceiling: the same streamed chats from a bare httpx client, ``slots`` at a time per model.

    Returns each request's latency and the elapsed time. ``spread`` as in :func:`closed_loop`.
    """
    limiters = {model: anyio.CapacityLimiter(slots) for model in ids}
    latencies: list[float] = []
    settle_heap()
    limits = httpx.Limits(max_connections=max(callers, 1), max_keepalive_connections=max(callers, 1))
    async with httpx.AsyncClient(base_url=url, trust_env=False, limits=limits, timeout=60) as client:

        async def one(index: int) -> None:
            model = ids[index % len(ids)]
            body = {"model": model, "messages": [{"role": "user", "content": f"q{index}"}], "stream": True}
            start = time.perf_counter()
            async with limiters[model], client.stream("POST", "/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        msgspec.json.decode(line[6:])
            latencies.append(time.perf_counter() - start)

        return latencies, await run_callers(requests, callers, one, spread=spread)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------- a scenario's command line


def scenario_parser(name: str) -> argparse.ArgumentParser:
    return _report.child_parser(f"python -m benchmarks.stress.{name}", backend_help="serve's backend")


def scenario_main(
    name: str,
    run: Callable[[str, bool], Awaitable[dict[str, float]]],
    argv: list[str] | None,
    *,
    log_level: int = logging.ERROR,
) -> int:
    """``main`` of a scenario module: ``--backend`` is serve's; the load generator here is always on asyncio,
    so the backend is the only thing that differs between the two columns."""
    args = scenario_parser(name).parse_args(argv)
    logging.basicConfig(level=log_level)
    _report.emit(anyio.run(run, args.backend, args.quick, backend="asyncio"))
    return 0
