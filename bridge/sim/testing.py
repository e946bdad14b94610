"""Helpers for tests and benchmarks that use the simulator.

* :func:`read_sse` turns a streamed httpx response into ``(event, data)`` pairs;
* :func:`wait_until` polls a condition (for counters the server updates a moment
  after the client saw something, such as a disconnect);
* :func:`sim_process` runs the simulator in a child process and yields its URL,
  for benchmarks that must not share the event loop with the client.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import httpx
from anyio.abc import Process

__all__ = ["SimProcess", "SseEvent", "read_sse", "sim_process", "wait_until"]


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One server-sent event: the ``event:`` name (``None`` if absent) and its ``data:`` text."""

    event: str | None
    data: str


async def read_sse(response: httpx.Response) -> list[SseEvent]:
    """Read a streamed response to its end (or until the connection fails) as events."""
    events: list[SseEvent] = []
    name: str | None = None
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            events.append(SseEvent(name, line[5:].strip()))
            name = None
    return events


async def wait_until(condition: Callable[[], bool], *, timeout: float = 5.0, interval: float = 0.002) -> None:
    """Return once ``condition()`` is true; ``TimeoutError`` after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 -- counters have no event to wait on; polling is the point
            await anyio.sleep(interval)


@dataclass(frozen=True, slots=True)
class SimProcess:
    """A simulator running in a child process."""

    url: str
    port: int
    process: Process


@asynccontextmanager
async def sim_process(args: Sequence[str] = (), *, startup_timeout: float = 30.0) -> AsyncIterator[SimProcess]:
    """Run ``python -m bridge.sim --port 0 ARGS…`` and yield it once listening; SIGTERM (then kill) on exit.

    Args:
        args: Extra command-line arguments (see ``python -m bridge.sim --help``).
        startup_timeout: Seconds to wait for the ``LISTENING <port>`` line.
    """
    command = [sys.executable, "-m", "bridge.sim", "--port", "0", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    async with await anyio.open_process(command, stdin=None, stdout=subprocess.PIPE, stderr=None, env=env) as process:
        try:
            assert process.stdout is not None
            buffer = b""
            with anyio.fail_after(startup_timeout):
                while b"\n" not in buffer:
                    try:
                        buffer += await process.stdout.receive()
                    except anyio.EndOfStream:
                        raise RuntimeError(f"the simulator exited before listening: {buffer!r}") from None
            first_line = buffer.split(b"\n", 1)[0]
            if not first_line.startswith(b"LISTENING "):
                raise RuntimeError(f"unexpected simulator output: {first_line!r}")
            port = int(first_line.split()[1])
            yield SimProcess(f"http://127.0.0.1:{port}", port, process)
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    with anyio.move_on_after(10):
                        await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
