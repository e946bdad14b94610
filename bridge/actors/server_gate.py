"""ServerGateActor: one per LLM server with a server-wide limit (``max_concurrent``).

Some servers run fewer requests at once than the sum of their models' slots:
llama-cpp-python generates one request at a time for all its models (and, with
``interrupt_requests``, cuts a running stream when another arrives), Ollama has
its own ceilings. Per-model slots cannot express that, because several workers
share the server; so the server's turns belong to this actor, and a worker asks
for a turn per attempt, after it holds its model's slot (always in that order,
so no two requests wait on each other in a cycle).

A turn is held for exactly as long as the holder's ``HoldServerTurn`` ask is
open: the grant is a progress report, and the handler then waits until the asker
leaves. A holder that finishes, fails, times out or is cancelled gives its turn
back by leaving; nothing can forget to release it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio

from bridge.actors._slots import SlotQueue
from bridge.errors import BridgeError
from bridge.messages import GateStats, GetGateStats, HoldServerTurn, Progress, ServerGateMessage
from bridge.runtime import Actor, ActorRef, RequestContext

__all__ = ["SERVER_TURN", "ServerGateActor", "turn_if_free"]

SERVER_TURN = "server_turn"
"""The ``Progress.stage`` that grants a turn."""


@contextlib.asynccontextmanager
async def turn_if_free(
    gate: ActorRef[ServerGateMessage] | None, holder: str, *, wait: float, timeout: float
) -> AsyncIterator[bool]:
    """Hold one of ``gate``'s turns for the ``async with`` block if one comes within ``wait`` seconds.

    Yields whether it came (``True`` at once without a gate); the block runs either way and
    decides what to do without one. For short side requests such as model listings, which
    must not reach a server that is running its ``max_concurrent`` generations, and must not
    wait long for one either. The turn is an open ``HoldServerTurn`` ask (``timeout`` bounds
    it, waiting included) in a task of its own; leaving the block ends it, and a turn that
    did not come in time is given up before the block runs.
    """
    if gate is None:
        yield True
        return
    granted = anyio.Event()
    asking = anyio.CancelScope()

    async def on_progress(progress: Progress) -> None:
        if progress.stage == SERVER_TURN:
            granted.set()

    async def ask() -> None:
        with asking, contextlib.suppress(BridgeError):  # no turn (deadline, gate stopped): the block knows
            await gate.ask(HoldServerTurn(model=holder), timeout=timeout, progress=on_progress)

    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        with anyio.move_on_after(wait):
            await granted.wait()
        if not granted.is_set():
            asking.cancel()  # leave the queue now, not after the block
        try:
            yield granted.is_set()
        except Exception as exc:  # raised again outside the task group, which would wrap it in a group
            failure = exc
        asking.cancel()
    if failure is not None:
        raise failure


class ServerGateActor(Actor[ServerGateMessage]):
    """Owns one server's ``max_concurrent`` turns; grants them in arrival order.

    Args:
        server: The server's name (for messages and figures).
        max_concurrent: Requests the server runs at once, all models together.
    """

    # Holders and waiters are each a handler; every worker's slots together bound them.
    max_concurrent_requests = 4096

    def __init__(self, server: str, max_concurrent: int) -> None:
        super().__init__()
        self.server = server
        self.turns = SlotQueue(max_concurrent, 0)
        self.granted = 0

    async def handle(self, message: ServerGateMessage, ctx: RequestContext) -> object:
        match message:
            case HoldServerTurn():
                await self._hold(message, ctx)
                return None
            case GetGateStats():
                return GateStats(
                    server=self.server,
                    max_concurrent=self.turns.slots,
                    in_flight=self.turns.in_use,
                    queued=self.turns.queued,
                    granted=self.granted,
                )

    async def _hold(self, message: HoldServerTurn, ctx: RequestContext) -> None:
        server, limit = self.server, self.turns.slots

        async def report(position: int) -> None:
            await ctx.report_progress(
                Progress(
                    stage="queued",
                    position=position,
                    message=f"waiting for server {server} (max_concurrent {limit}): position {position}",
                )
            )

        await self.turns.acquire(report if ctx.wants_progress else None, patient=True)
        try:
            self.granted += 1
            await ctx.report_progress(Progress(stage=SERVER_TURN, message=f"{message.model} on {server}"))
            await anyio.sleep_forever()  # until the holder leaves its ask (or its deadline passes)
        finally:
            self.turns.release()
