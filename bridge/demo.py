"""``lmstudio-bridge demo``: a short, readable tour of the running system.

Until the LLM path and the MCP front end land, the tour shows the actor
runtime: typed asks, concurrency, a deadline, a crash answered with a typed
error and a restart with fresh state.
"""

from __future__ import annotations

import logging
import sys
import time

import anyio

from bridge.actors import Actor, RequestContext
from bridge.errors import ActorCrashedError, BridgeError
from bridge.messages import Reply, Request
from bridge.supervisor import ChildSpec, SupervisorSpec, open_supervisor

__all__ = ["main"]


class Answer(Reply, frozen=True):
    text: str
    served: int


class Work(Request[Answer], frozen=True, tag="work"):
    text: str
    seconds: float = 0.0


class Explode(Request[Answer], frozen=True, tag="explode"):
    pass


DemoMessage = Work | Explode


class DemoWorker(Actor[DemoMessage]):
    """Stands in for a model worker: sleeps, counts what it served, and can crash."""

    def __init__(self) -> None:
        super().__init__()
        self.served = 0

    async def handle(self, message: DemoMessage, ctx: RequestContext) -> object:
        match message:
            case Work(text=text, seconds=seconds):
                await anyio.sleep(seconds)
                self.served += 1
                return Answer(text=text.upper(), served=self.served)
            case Explode():
                raise RuntimeError("the worker fell over")


class Transcript:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def say(self, line: str) -> None:
        print(f"[{time.perf_counter() - self.start:7.3f}s] {line}", flush=True)


async def tour() -> None:
    out = Transcript()
    workers = SupervisorSpec("workers", intensity=5, period=10)
    async with open_supervisor("bridge", children=[workers]) as root:
        pool = root.child_supervisor("workers")
        for name in ("model-a", "model-b"):
            await pool.start_child(ChildSpec(name, DemoWorker))
        names = [c.name for c in pool.which_children()]
        out.say(f"started supervisor tree: bridge -> workers -> {names}")
        a = root.actor("workers/model-a")
        b = root.actor("workers/model-b")
        first: Answer = await a.ask(Work(text="hello"))
        out.say(f"ask model-a: {first}")

        started = time.perf_counter()
        async def job(i: int) -> None:
            await (a if i % 2 else b).ask(Work(text=f"job {i}", seconds=0.2))

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(job, i)
        out.say(f"8 jobs of 0.2 s each on two workers finished in {time.perf_counter() - started:.2f} s (concurrent)")

        try:
            await b.ask(Work(text="slow", seconds=5), timeout=0.1)
        except BridgeError as exc:
            out.say(
                f"a 5 s job with a 0.1 s deadline -> {exc.code} (retryable={exc.retryable}); the work was cancelled"
            )

        try:
            await a.ask(Explode())
        except ActorCrashedError as exc:
            out.say(f"model-a crashed -> {exc.code}: {exc.message[:70]}...")
        answer = await a.ask(Work(text="after restart"))
        out.say(f"model-a serves again with fresh state (served={answer.served}), restarts={a.restarts}")
    out.say("supervisor stopped in order; no task left running")


def main() -> int:
    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr)
    anyio.run(tour)
    return 0
