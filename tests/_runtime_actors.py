"""Small actors used by the runtime tests: each exists to show one behaviour."""

from __future__ import annotations

import anyio

from bridge.errors import BadRequestError
from bridge.messages import Progress, Reply, Request
from bridge.runtime import Actor, RequestContext


class Count(Reply, frozen=True):
    value: int


class Increment(Request[Count], frozen=True, tag="increment"):
    by: int = 1


class Fail(Request[Count], frozen=True, tag="fail"):
    """Answer with a typed error: the actor lives on."""


class Crash(Request[Count], frozen=True, tag="crash"):
    """Raise a plain exception: the actor crashes."""


class Block(Request[Count], frozen=True, tag="block"):
    """Wait until released (or cancelled); records what happened to it."""

    key: str


class Finish(Request[Count], frozen=True, tag="finish"):
    """Wait until released, shielded from cancellation, then count and answer: a handler that
    finishes its work even after its asker gave up."""

    key: str


class Report(Request[Count], frozen=True, tag="report"):
    steps: int


CounterMessage = Increment | Fail | Crash | Block | Finish | Report


class Journal:
    """What the test actors saw, shared with the test (one per test)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self.entered: dict[str, anyio.Event] = {}
        self.release: dict[str, anyio.Event] = {}

    def gate(self, key: str) -> tuple[anyio.Event, anyio.Event]:
        if key not in self.entered:
            self.entered[key] = anyio.Event()
            self.release[key] = anyio.Event()
        return self.entered[key], self.release[key]


class CounterActor(Actor[CounterMessage]):
    """Holds a count (its state), and can be told to block, fail or crash."""

    def __init__(self, journal: Journal, *, fail_start: bool = False) -> None:
        super().__init__()
        self.journal = journal
        self.count = 0
        self.fail_start = fail_start

    async def on_start(self) -> None:
        if self.fail_start:
            raise RuntimeError("cannot start")
        self.journal.started.append(self.name)

    async def on_stop(self) -> None:
        self.journal.stopped.append(self.name)

    async def handle(self, message: CounterMessage, ctx: RequestContext) -> object:
        match message:
            case Increment(by=by):
                self.count += by
                return Count(value=self.count)
            case Fail():
                raise BadRequestError("fail was asked for")
            case Crash():
                raise RuntimeError("crash was asked for")
            case Block(key=key):
                entered, release = self.journal.gate(key)
                entered.set()
                try:
                    await release.wait()
                except anyio.get_cancelled_exc_class():
                    self.journal.cancelled.append(key)
                    raise
                self.journal.finished.append(key)
                return Count(value=self.count)
            case Finish(key=key):
                entered, release = self.journal.gate(key)
                entered.set()
                with anyio.CancelScope(shield=True):
                    await release.wait()
                self.count += 1
                self.journal.finished.append(key)
                return Count(value=self.count)
            case Report(steps=steps):
                for step in range(steps):
                    await ctx.report_progress(Progress(stage="generating", progress=step + 1, total=steps))
                return Count(value=steps)
