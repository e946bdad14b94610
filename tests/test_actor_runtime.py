"""The actor runtime: ask, deadlines, cancellation, crashes, backpressure."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup

from bridge.errors import (
    ActorCrashedError,
    ActorUnavailableError,
    BadRequestError,
    DeadlineExceededError,
)
from bridge.messages import Progress
from bridge.runtime import ChildSpec, open_supervisor
from bridge.runtime._envelope import Envelope
from tests._runtime_actors import (
    Block,
    Count,
    CounterActor,
    Crash,
    Fail,
    Finish,
    Increment,
    Journal,
    Report,
)
from tests._util import eventually


def counter(journal: Journal, name: str = "counter", **kwargs: object) -> ChildSpec[object]:
    return ChildSpec(name, lambda: CounterActor(journal), **kwargs)  # type: ignore[arg-type]


async def block_in_flight(tg: TaskGroup, ref: Any, journal: Journal, key: str) -> anyio.Event:
    """Ask ``ref`` for ``Block(key=key)`` in ``tg`` and wait until its handler runs; the event that releases it."""
    entered, release = journal.gate(key)
    tg.start_soon(ref.ask, Block(key=key))
    await entered.wait()
    return release


def serial_counter(journal: Journal, *, mailbox_size: int) -> ChildSpec[object]:
    """A counter that handles one request at a time, the rest waiting in a mailbox of ``mailbox_size``."""

    def start() -> CounterActor:
        actor = CounterActor(journal)
        actor.max_concurrent_requests = 1
        return actor

    return ChildSpec("counter", start, mailbox_size=mailbox_size)  # type: ignore[arg-type]


async def test_ask_returns_the_handlers_reply() -> None:
    """ask() delivers the message and returns what the handler returned."""
    journal = Journal()
    async with open_supervisor(children=[counter(journal)]) as sup:
        ref = sup.lookup("counter")
        assert await ref.ask(Increment(by=2)) == Count(value=2)
        assert await ref.ask(Increment(by=3)) == Count(value=5)


async def test_typed_error_from_handler_reaches_asker_and_actor_lives() -> None:
    """A BridgeError raised by a handler is the reply; the actor keeps its state."""
    journal = Journal()
    async with open_supervisor(children=[counter(journal)]) as sup:
        ref = sup.lookup("counter")
        await ref.ask(Increment())
        with pytest.raises(BadRequestError, match="fail was asked for"):
            await ref.ask(Fail())
        assert await ref.ask(Increment()) == Count(value=2)
        assert ref.restarts == 0


async def test_deadline_expiry_gives_timeout_and_cancels_the_handler() -> None:
    """When the deadline passes, the asker gets `timeout` and the handler is cancelled."""
    journal = Journal()
    async with open_supervisor(children=[counter(journal)]) as sup:
        ref = sup.lookup("counter")
        with pytest.raises(DeadlineExceededError) as info:
            await ref.ask(Block(key="slow"), timeout=0.05)
        assert info.value.code == "timeout"
        assert info.value.retryable
        await eventually(lambda: journal.cancelled == ["slow"])
        assert journal.finished == []


async def test_cancelled_asker_cancels_the_work_it_asked_for() -> None:
    """Cancelling the asker's scope reaches the handler's cancel scope."""
    journal = Journal()
    async with open_supervisor(children=[counter(journal)]) as sup:
        ref = sup.lookup("counter")
        async with anyio.create_task_group() as tg:
            await block_in_flight(tg, ref, journal, "work")
            tg.cancel_scope.cancel()
        await eventually(lambda: journal.cancelled == ["work"])
        assert ref.restarts == 0
        assert await ref.ask(Increment()) == Count(value=1)


async def test_slow_request_does_not_block_the_mailbox() -> None:
    """Each request runs in its own task: a blocked one does not delay the next."""
    journal = Journal()
    async with open_supervisor(children=[counter(journal)]) as sup:
        ref = sup.lookup("counter")
        async with anyio.create_task_group() as tg:
            release = await block_in_flight(tg, ref, journal, "slow")
            assert await ref.ask(Increment()) == Count(value=1)
            assert journal.finished == []
            release.set()
        assert journal.finished == ["slow"]


async def test_crash_fails_every_pending_ask_at_once_and_restarts_fresh() -> None:
    """A crash gives every in-flight asker `actor_crashed`; the new incarnation has fresh state."""
    journal = Journal()
    async with open_supervisor(children=[counter(journal)]) as sup:
        ref = sup.lookup("counter")
        await ref.ask(Increment(by=10))
        entered, _ = journal.gate("victim")
        outcome: list[BaseException] = []

        async def victim() -> None:
            try:
                await ref.ask(Block(key="victim"), timeout=30)
            except ActorCrashedError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(victim)
            await entered.wait()
            with pytest.raises(ActorCrashedError) as info:
                await ref.ask(Crash())
        assert len(outcome) == 1
        assert outcome[0].retryable
        assert "crash was asked for" in info.value.message
        await eventually(lambda: ref.restarts == 1 and ref.state == "running")
        assert await ref.ask(Increment()) == Count(value=1)
        assert journal.started == ["counter", "counter"]


async def test_progress_reports_reach_the_asker() -> None:
    """A handler's progress reports go to the asker's sink, in order."""
    journal = Journal()
    seen: list[Progress] = []

    async def sink(progress: Progress) -> None:
        seen.append(progress)

    async with open_supervisor(children=[counter(journal)]) as sup:
        ref = sup.lookup("counter")
        assert await ref.ask(Report(steps=3), progress=sink) == Count(value=3)
    assert [p.progress for p in seen] == [1, 2, 3]
    assert {p.total for p in seen} == {3}


async def test_full_mailbox_applies_backpressure() -> None:
    """A saturated actor stops reading; its bounded mailbox fills and refuses, it does not grow."""
    journal = Journal()
    async with open_supervisor(children=[serial_counter(journal, mailbox_size=2)]) as sup:
        ref = sup.lookup("counter")
        async with anyio.create_task_group() as tg:
            release = await block_in_flight(tg, ref, journal, "hold")
            tg.start_soon(ref.ask, Increment())
            tg.start_soon(ref.ask, Increment())
            await eventually(lambda: ref.queued() == 2)
            with pytest.raises(DeadlineExceededError) as info:
                await ref.ask(Increment(), timeout=0.05)
            assert info.value.details["delivered"] is False
            assert ref.queued() == 2
            release.set()
        assert await ref.ask(Increment()) == Count(value=3)


async def test_queued_messages_survive_a_restart() -> None:
    """Messages waiting in the mailbox when the actor crashes are served by the next incarnation."""
    journal = Journal()
    async with open_supervisor(children=[serial_counter(journal, mailbox_size=4)]) as sup:
        ref = sup.lookup("counter")
        results: list[Count] = []

        async def later() -> None:
            results.append(await ref.ask(Increment(by=5)))

        async with anyio.create_task_group() as tg:
            crash_entered = anyio.Event()

            async def crasher() -> None:
                crash_entered.set()
                with pytest.raises(ActorCrashedError):
                    await ref.ask(Crash())

            tg.start_soon(crasher)
            await crash_entered.wait()
            tg.start_soon(later)
        assert results == [Count(value=5)]
        await eventually(lambda: ref.restarts == 1)


async def test_ask_on_a_stopped_actor_fails_fast() -> None:
    """After a child is stopped, its address answers `actor_unavailable` at once."""
    journal = Journal()
    async with open_supervisor(children=[counter(journal)]) as sup:
        ref = sup.lookup("counter")
        await sup.stop_child("counter")
        assert ref.state == "stopped"
        with pytest.raises(ActorUnavailableError, match="takes no more requests"):
            await ref.ask(Increment())


async def test_exactly_one_outcome_when_the_reply_races_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler that finishes after its asker timed out does not produce a second reply:
    the asker's timeout settles the envelope, the handler's late answer is refused, and the
    next ask gets its own answer."""
    accepted: dict[int, int] = {}
    refused: dict[int, int] = {}
    seen: list[Envelope[Any]] = []  # kept alive, so no two envelopes share an id()

    def counting(original: Any) -> Any:
        def settle(self: Envelope[Any], outcome: Any) -> bool:
            ok: bool = original(self, outcome)
            if not isinstance(self.message, Finish | Increment):
                return ok  # the supervisor's own traffic
            seen.append(self)
            (accepted if ok else refused)[id(self)] = (accepted if ok else refused).get(id(self), 0) + 1
            return ok

        return settle

    monkeypatch.setattr(Envelope, "settle", counting(Envelope.settle))
    monkeypatch.setattr(Envelope, "settle_error", counting(Envelope.settle_error))
    journal = Journal()
    async with open_supervisor(children=[counter(journal)]) as sup:
        ref = sup.lookup("counter")
        entered, release = journal.gate("late")
        with pytest.raises(DeadlineExceededError):
            await ref.ask(Finish(key="late"), timeout=0.05)
        assert entered.is_set()  # the handler was running when the asker gave up
        release.set()
        await eventually(lambda: journal.finished == ["late"])
        await eventually(lambda: sum(refused.values()) == 1)  # the handler's answer came, and was refused
        assert await ref.ask(Increment()) == Count(value=2)  # its own answer, after the late one counted

        # and under a real race, many times over: each ask ends exactly once
        results: list[object] = []
        for _ in range(20):
            try:
                results.append(await ref.ask(Increment(), timeout=0.0))
            except DeadlineExceededError as exc:
                results.append(exc)
        assert all(isinstance(r, Count | DeadlineExceededError) for r in results)
    assert set(accepted.values()) == {1}  # no envelope was settled twice
    assert len(accepted) == 22  # and every one was settled: 1 late Finish, 1 Increment, 20 raced


class _Sink:
    """A progress sink the test can watch die."""

    def __init__(self) -> None:
        self.heard: list[object] = []

    async def __call__(self, progress: object) -> None:
        self.heard.append(progress)


async def test_an_answered_request_keeps_nothing_of_its_asker_alive() -> None:
    """Regression (issue 21's benchmark): an idle handler task kept its last envelope, and with it the asker's
    progress sink and the reply, until its next message (a job per idle handler, 16 per actor, stayed alive)."""
    import gc
    import weakref

    journal = Journal()
    async with open_supervisor(children=[counter(journal)]) as sup:
        ref = sup.lookup("counter")
        sink = _Sink()
        assert await ref.ask(Report(steps=2), progress=sink) == Count(value=2)
        assert len(sink.heard) == 2
        watched = weakref.ref(sink)
        del sink
        gc.collect()
        assert watched() is None
        assert await ref.ask(Increment()) == Count(value=1)
