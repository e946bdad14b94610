"""A model's slots are handed out in order within a caller and in turn between callers (the shared bridge's
fair share), on both anyio backends."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest

from bridge.actors._slots import SlotQueue
from tests._util import eventually


class Holders:
    """Tasks that take a slot, note that they have it, and hold it until told to let go."""

    def __init__(self, queue: SlotQueue) -> None:
        self.queue = queue
        self.granted: list[str] = []
        self.release_next = anyio.Event()

    async def hold(self, name: str, caller: str) -> None:
        await self.queue.acquire(caller=caller)
        self.granted.append(name)
        await self.release_next.wait()
        self.release_next = anyio.Event()
        self.queue.release()

    async def take_the_slot(self, tg: anyio.abc.TaskGroup, name: str, caller: str) -> None:
        """Start a holder and wait until it has the (one) slot."""
        tg.start_soon(self.hold, name, caller)
        await eventually(lambda: self.queue.in_use == 1)

    async def queue_up(self, tg: anyio.abc.TaskGroup, names: list[str], caller: str) -> None:
        """Start a holder per name, each in line before the next starts."""
        for name in names:
            waiting = self.queue.queued
            tg.start_soon(self.hold, name, caller)
            await eventually(lambda waiting=waiting: self.queue.queued == waiting + 1)

    async def let_go(self, expect_granted: int) -> None:
        self.release_next.set()
        await eventually(lambda: len(self.granted) >= expect_granted)


async def test_a_freed_slot_goes_to_the_callers_in_turn() -> None:
    """One slot; caller A queues five requests, then B one: B is served right after A's first, not after all five."""
    queue = SlotQueue(1, 64)
    holders = Holders(queue)
    async with anyio.create_task_group() as tg:
        await holders.take_the_slot(tg, "first", "A")
        await holders.queue_up(tg, [f"a{n}" for n in range(1, 6)], "A")
        await holders.queue_up(tg, ["b1"], "B")
        assert queue.queued_by_caller() == {"A": 5, "B": 1}
        for granted in range(2, 8):
            await holders.let_go(granted)
        holders.release_next.set()
    assert holders.granted == ["first", "a1", "b1", "a2", "a3", "a4", "a5"]
    assert queue.in_use == 0
    assert queue.queued_by_caller() == {}


async def test_one_caller_is_first_come_first_served() -> None:
    queue = SlotQueue(1, 64)
    holders = Holders(queue)
    async with anyio.create_task_group() as tg:
        await holders.take_the_slot(tg, "first", "")
        await holders.queue_up(tg, ["w1", "w2", "w3"], "")
        for granted in range(2, 5):
            await holders.let_go(granted)
        holders.release_next.set()
    assert holders.granted == ["first", "w1", "w2", "w3"]


@pytest.mark.parametrize("cancelled", ["only", "one_of_two"])
async def test_a_cancelled_waiter_leaves_its_callers_line(cancelled: str) -> None:
    """A caller whose last waiter gives up loses its turn; the slot goes to the next caller that waits."""
    queue = SlotQueue(1, 64)
    holders = Holders(queue)
    async with anyio.create_task_group() as tg:
        await holders.take_the_slot(tg, "first", "A")
        leaving = anyio.CancelScope()
        tg.start_soon(_hold_in, leaving, holders, "b1", "B")
        await eventually(lambda: queue.queued == 1)
        if cancelled == "one_of_two":
            tg.start_soon(holders.hold, "b2", "B")
            await eventually(lambda: queue.queued == 2)
        tg.start_soon(holders.hold, "c1", "C")
        await eventually(lambda: queue.queued == (3 if cancelled == "one_of_two" else 2))
        leaving.cancel()
        await eventually(lambda: queue.queued == (2 if cancelled == "one_of_two" else 1))
        expected = ["first", "b2", "c1"] if cancelled == "one_of_two" else ["first", "c1"]
        for granted in range(2, len(expected) + 1):
            await holders.let_go(granted)
        holders.release_next.set()
    assert holders.granted == expected
    assert queue.queued_by_caller() == {}


async def _hold_in(scope: anyio.CancelScope, holders: Holders, name: str, caller: str) -> None:
    with scope:
        await holders.hold(name, caller)


async def test_positions_are_counted_within_the_callers_line() -> None:
    queue = SlotQueue(1, 64)
    holders = Holders(queue)
    heard: list[int] = []

    async def on_position(position: int) -> None:
        heard.append(position)

    async with anyio.create_task_group() as tg:
        await holders.take_the_slot(tg, "first", "A")
        await holders.queue_up(tg, ["a1", "a2", "a3"], "A")

        async def b() -> None:
            await queue.acquire(on_position, caller="B")
            queue.release()

        tg.start_soon(b)
        await eventually(lambda: heard == [1])
        for granted in range(2, 5):
            await holders.let_go(granted)
        holders.release_next.set()
    assert heard[0] == 1


async def test_a_model_on_two_servers_fills_the_freest_first_and_waits_only_when_both_are_full() -> None:
    queue = SlotQueue({"a": 1, "b": 2}, 64)
    taken = [await queue.acquire() for _ in range(3)]
    assert sorted(taken) == ["a", "b", "b"]
    assert queue.in_use_by_server() == {"a": 1, "b": 2}
    got: list[str] = []
    async with anyio.create_task_group() as tg:

        async def fourth() -> None:
            got.append(await queue.acquire())

        tg.start_soon(fourth)
        await eventually(lambda: queue.queued == 1)
        queue.release("a")
    assert got == ["a"]


async def test_a_retry_does_not_get_back_the_server_it_failed_on() -> None:
    """A waiter that avoids server a lets a freed slot of a go to the next waiter, and takes b's."""
    queue = SlotQueue({"a": 1, "b": 1}, 64)
    assert {await queue.acquire(), await queue.acquire()} == {"a", "b"}
    got: dict[str, str] = {}
    async with anyio.create_task_group() as tg:

        async def wait(name: str, avoid: frozenset[str]) -> None:
            got[name] = await queue.acquire(avoid=avoid)

        tg.start_soon(wait, "retry", frozenset({"a"}))
        await eventually(lambda: queue.queued == 1)
        tg.start_soon(wait, "other", frozenset())
        await eventually(lambda: queue.queued == 2)
        queue.release("a")
        await eventually(lambda: "other" in got)
        assert "retry" not in got
        queue.release("b")
    assert got == {"other": "a", "retry": "b"}


async def test_a_new_server_takes_waiters_at_once_and_a_removed_one_gets_no_more() -> None:
    """resize: room on a server that started listing the model goes to waiters now; a server that stopped
    listing it keeps its slot in use until released and is never handed another."""
    queue = SlotQueue({"a": 1}, 8)
    assert await queue.acquire() == "a"
    got: list[str] = []

    async def wait_for_one() -> None:
        got.append(await queue.acquire())

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for_one)
        await eventually(lambda: queue.queued == 1)
        queue.resize({"b": 2})
        await eventually(lambda: got == ["b"])
    assert queue.slots == 2
    assert queue.in_use_by_server() == {"a": 1, "b": 1}
    queue.release("a")  # the slot on the server that left: gone with it
    assert queue.in_use_by_server() == {"b": 1}
    assert await queue.acquire() == "b"
    assert queue.in_use == 2
    assert queue.slots_by_server() == {"b": 2}
