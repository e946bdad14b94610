"""The supervisor: restart policies, intensity, dynamic and nested children, orderly shutdown."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from bridge.errors import ActorCrashedError, ActorUnavailableError
from bridge.runtime import (
    ChildAlreadyStartedError,
    ChildSpec,
    RestartIntensityError,
    RestartPolicy,
    Supervisor,
    SupervisorRef,
    SupervisorSpec,
    open_supervisor,
)
from tests._runtime_actors import Block, Count, CounterActor, Crash, Increment, Journal
from tests._util import eventually


def spec(journal: Journal, name: str, **kwargs: Any) -> ChildSpec[Any]:
    return ChildSpec(name, lambda: CounterActor(journal), **kwargs)


async def crash(ref: Any) -> None:
    with pytest.raises(ActorCrashedError):
        await ref.ask(Crash())


async def test_permanent_child_is_restarted_after_a_crash() -> None:
    """one_for_one: only the crashed child restarts; its sibling keeps its state."""
    journal = Journal()
    async with open_supervisor(children=[spec(journal, "a"), spec(journal, "b")], intensity=5) as sup:
        a, b = sup.lookup("a"), sup.lookup("b")
        await b.ask(Increment(by=7))
        await crash(a)
        await eventually(lambda: a.state == "running" and a.restarts == 1)
        assert await b.ask(Increment()) == Count(value=8)
        assert b.restarts == 0
        assert journal.started == ["a", "b", "a"]


async def test_transient_child_is_restarted_after_crash_but_removed_after_normal_exit() -> None:
    """transient: crash -> restart; a normal stop -> gone for good."""
    journal = Journal()
    async with open_supervisor(children=[spec(journal, "t", restart=RestartPolicy.TRANSIENT)]) as sup:
        ref = sup.lookup("t")
        await crash(ref)
        await eventually(lambda: ref.state == "running")
        await sup.stop_child("t")
        assert sup.lookup("t") is None
        assert ref.state == "stopped"


async def test_temporary_child_is_never_restarted() -> None:
    """temporary: a crash removes the child and closes its address."""
    journal = Journal()
    async with open_supervisor(children=[spec(journal, "tmp", restart=RestartPolicy.TEMPORARY)]) as sup:
        ref = sup.lookup("tmp")
        await crash(ref)
        await eventually(lambda: sup.lookup("tmp") is None)
        with pytest.raises(ActorUnavailableError):
            await ref.ask(Increment())
        assert journal.started == ["tmp"]


async def test_intensity_exceeded_fails_the_root_supervisor() -> None:
    """More than `intensity` restarts within `period` and the supervisor gives up and raises."""
    journal = Journal()
    with pytest.raises(RestartIntensityError, match="gave up"):
        async with open_supervisor(children=[spec(journal, "flaky")], intensity=2, period=60) as sup:
            ref = sup.lookup("flaky")
            for restarts in range(3):
                await eventually(lambda n=restarts: ref.state == "running" and ref.restarts == n)
                await crash(ref)
            await anyio.sleep_forever()
    assert journal.started == ["flaky", "flaky", "flaky"]


async def test_nested_supervisor_failure_escalates_to_its_parent() -> None:
    """A child supervisor that gives up is restarted by its parent, with fresh children."""
    journal = Journal()
    inner = SupervisorSpec("inner", children=[spec(journal, "w")], intensity=1, period=60)
    async with open_supervisor(children=[inner], intensity=5) as sup:
        inner_ref = sup.lookup("inner")
        assert isinstance(inner_ref, SupervisorRef)
        worker = sup.lookup("inner/w")
        await worker.ask(Increment(by=3))
        await crash(worker)
        await eventually(lambda: worker.state == "running")
        await crash(worker)
        # The inner supervisor exceeded its intensity: the parent restarts it and its children anew.
        await eventually(lambda: sup.which_children()[0].restarts == 1 and sup.which_children()[0].state == "running")
        fresh = sup.lookup("inner/w")
        assert fresh is not None
        assert fresh is not worker
        assert await fresh.ask(Increment()) == Count(value=1)
        with pytest.raises(ActorUnavailableError):
            await worker.ask(Increment())


async def test_dynamic_children_start_stop_and_lookup() -> None:
    """Children can be added and removed at run time; names are unique."""
    journal = Journal()
    async with open_supervisor() as sup:
        ref = await sup.start_child(spec(journal, "m1"))
        assert sup.lookup("m1") is ref
        assert await ref.ask(Increment()) == Count(value=1)
        with pytest.raises(ChildAlreadyStartedError, match="exist_ok=True"):
            await sup.start_child(spec(journal, "m1"))
        assert await sup.start_child(spec(journal, "m1"), exist_ok=True) is ref
        await sup.start_child(spec(journal, "m2"))
        assert sorted(sup.address_book) == ["m1", "m2"]
        await sup.stop_child("m1")
        assert sorted(sup.address_book) == ["m2"]
        assert [c.name for c in sup.which_children()] == ["m2"]


async def test_start_failure_is_raised_to_the_caller_and_not_restarted() -> None:
    """A child whose start fails makes start_child raise; nothing is left behind."""
    journal = Journal()
    async with open_supervisor() as sup:
        with pytest.raises(RuntimeError, match="cannot start"):
            await sup.start_child(ChildSpec("bad", lambda: CounterActor(journal, fail_start=True)))
        assert sup.lookup("bad") is None
        assert sup.which_children() == []


async def test_nested_dynamic_children_via_supervisor_ref() -> None:
    """A nested supervisor's address takes dynamic children; lookups follow `a/b` paths."""
    journal = Journal()
    async with open_supervisor(children=[SupervisorSpec("workers")]) as sup:
        workers = sup.lookup("workers")
        assert isinstance(workers, SupervisorRef)
        qwen = await workers.start_child(spec(journal, "qwen"))
        assert sup.lookup("workers/qwen") is qwen
        assert await qwen.ask(Increment()) == Count(value=1)
        assert [c.name for c in workers.which_children()] == ["qwen"]


async def test_shutdown_stops_children_in_reverse_start_order() -> None:
    """Orderly shutdown: last started, first stopped; every on_stop runs."""
    journal = Journal()
    children = [spec(journal, "first"), SupervisorSpec("mid", children=[spec(journal, "inner")]), spec(journal, "last")]
    async with open_supervisor(children=children) as sup:
        await sup.start_child(spec(journal, "dynamic"))
    assert journal.stopped == ["dynamic", "last", "inner", "first"]


async def shut_down_during(
    journal: Journal, key: str, job: Callable[[Any], Awaitable[None]], *, shutdown_grace: float, release: bool = False
) -> None:
    """Run ``job`` against child ``c``; once the handler of ``Block(key=key)`` runs, shut the supervisor down
    (with ``release``, the block is released a moment later, while it shuts down)."""
    async with anyio.create_task_group() as tg:
        async with open_supervisor(children=[spec(journal, "c", shutdown_grace=shutdown_grace)]) as sup:
            entered, released = journal.gate(key)
            tg.start_soon(job, sup.lookup("c"))
            await entered.wait()
            if release:
                tg.start_soon(_release_soon, released)


async def test_shutdown_lets_in_flight_work_finish_within_grace() -> None:
    """A request in flight at shutdown completes if it finishes within the grace period."""
    journal = Journal()
    results: list[Count] = []

    async def job(ref: Any) -> None:
        results.append(await ref.ask(Block(key="job")))

    await shut_down_during(journal, "job", job, shutdown_grace=30, release=True)
    assert results == [Count(value=0)]
    assert journal.finished == ["job"]


async def _release_soon(release: anyio.Event) -> None:
    await anyio.sleep(0.05)
    release.set()


async def test_shutdown_cancels_work_past_grace_and_tells_the_asker() -> None:
    """Past the grace period in-flight work is cancelled and its asker gets a typed error."""
    journal = Journal()
    errors: list[BaseException] = []

    async def job(ref: Any) -> None:
        try:
            await ref.ask(Block(key="stuck"), timeout=30)
        except ActorUnavailableError as exc:
            errors.append(exc)

    await shut_down_during(journal, "stuck", job, shutdown_grace=0.05)
    assert journal.cancelled == ["stuck"]
    assert len(errors) == 1
    assert "grace" in str(errors[0])


async def test_no_task_left_running_after_shutdown() -> None:
    """After the supervisor exits, every task it started has finished."""
    journal = Journal()
    before = len(anyio.get_running_tasks())
    async with open_supervisor(
        children=[spec(journal, "a"), SupervisorSpec("s", children=[spec(journal, "b")])]
    ) as sup:
        for _ in range(50):
            await sup.lookup("a").ask(Increment())
        await sup.lookup("s/b").ask(Increment())
        assert len(anyio.get_running_tasks()) > before
    assert len(anyio.get_running_tasks()) == before


async def test_supervisor_rejects_bad_intensity() -> None:
    """Nonsense limits are refused with a message that names them."""
    with pytest.raises(ValueError, match="intensity >= 0 and period > 0"):
        Supervisor("x", intensity=-1)


async def test_body_exception_shuts_down_and_propagates_unwrapped() -> None:
    """An error in the supervised body stops the children and surfaces as itself, not as a group."""
    journal = Journal()
    with pytest.raises(KeyError):
        async with open_supervisor(children=[spec(journal, "a")]):
            raise KeyError("boom")
    assert journal.stopped == [] or journal.stopped == ["a"]
