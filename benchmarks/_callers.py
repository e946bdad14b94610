"""Closed-loop callers, the one way every benchmark offers load, so their figures compare."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio


async def run_callers(jobs: int, callers: int, job: Callable[[int], Awaitable[None]], *, spread: float = 0.0) -> float:
    """``callers`` tasks share jobs ``0 .. jobs - 1``, each taking the next as soon as its last is done.

    ``spread``: seconds over which the callers' starts are spread evenly, so calls arrive as from
    independent users instead of in lockstep waves (with 0, all start at once). Returns the seconds
    until every job was done.
    """
    next_index = 0

    async def caller(k: int) -> None:
        nonlocal next_index
        await anyio.sleep(k * spread / max(callers, 1))
        while next_index < jobs:
            index = next_index
            next_index += 1
            await job(index)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for k in range(callers):
            tg.start_soon(caller, k)
    return time.perf_counter() - start
