"""A model's parallel slots on each of its servers, and the bounded queue in front of them all.

LM Studio runs a fixed number of predictions per loaded model at once and queues
the rest inside the server, where a client cannot see or bound the wait. The
worker keeps its own queue instead: positions are known (and reported), the
queue is bounded (``busy`` past it), and a cancelled waiter leaves at once.
A *patient* waiter (a batch item that asked to wait for its turn) queues past
the bound and does not count against it, so a big batch never turns other
callers away as busy and never is turned away itself.

A model served by several servers has a pool of slots on each. A request takes
a slot on the server with the most free capacity (the largest free share of its
slots; ties go to the server used least recently, so load spreads), and waits
only when every server is full; a freed slot goes to the next waiter whatever
its server. So two servers give the throughput of two.

Waiters queue per caller (a shared bridge's session; one caller in ``serve``)
and a freed slot goes to the callers in turn (round robin over the callers
that wait), so one session's 1,000-item batch cannot starve another's single
chat. Within a caller the order is first come, first served.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

import anyio

__all__ = ["SlotQueue"]


class _Turn:
    """A waiter: set once a slot is handed to it, on ``server`` (never one of ``avoid``)."""

    __slots__ = ("avoid", "event", "server")

    def __init__(self, avoid: frozenset[str]) -> None:
        self.event = anyio.Event()
        self.server = ""
        self.avoid = avoid


class SlotQueue:
    """Strictly owned by one worker actor.

    ``slots``: one pool (an int; its server is ``""``) or the slots of each server by name.
    """

    __slots__ = ("_busy", "_clock", "_last_used", "_patient", "_pools", "_queues", "_turns", "queue_limit", "slots")

    def __init__(self, slots: int | Mapping[str, int], queue_limit: int) -> None:
        pools = {"": slots} if isinstance(slots, int) else dict(slots)
        if not pools or min(pools.values()) < 1 or queue_limit < 0:
            raise ValueError(f"need slots >= 1 on every server and queue >= 0, got slots={slots}, queue={queue_limit}")
        self._pools = pools
        self._busy = dict.fromkeys(pools, 0)
        self._last_used = dict.fromkeys(pools, 0)
        self._clock = itertools.count(1)
        self.slots = sum(pools.values())
        self.queue_limit = queue_limit
        self._patient = 0
        self._queues: dict[str, deque[_Turn]] = {}
        self._turns: deque[str] = deque()  # the callers that wait, next to be served first

    @property
    def queued(self) -> int:
        return sum(len(waiters) for waiters in self._queues.values())

    def queued_by_caller(self) -> dict[str, int]:
        return {caller: len(waiters) for caller, waiters in self._queues.items()}

    @property
    def in_use(self) -> int:
        return sum(self._busy.values())

    def in_use_by_server(self) -> dict[str, int]:
        return dict(self._busy)

    def slots_by_server(self) -> dict[str, int]:
        return dict(self._pools)

    def full(self) -> bool:
        """Whether a request that is not patient must be refused: no free slot and the queue at its bound."""
        return self.in_use >= self.slots and self.queued - self._patient >= self.queue_limit

    def _best(self, allowed: Callable[[str], bool] | None = None, avoid: frozenset[str] = frozenset()) -> str | None:
        """The server with the largest free share of its slots (``allowed`` ones first), or ``None``."""
        free = [s for s, size in self._pools.items() if self._busy[s] < size and s not in avoid]
        preferred = [s for s in free if allowed(s)] if allowed is not None else free
        candidates = preferred or free
        if not candidates:
            return None
        return max(candidates, key=lambda s: ((self._pools[s] - self._busy[s]) / self._pools[s], -self._last_used[s]))

    def _take(self, server: str) -> str:
        self._busy[server] += 1
        self._last_used[server] = next(self._clock)
        return server

    async def acquire(
        self,
        on_position: Callable[[int], Awaitable[None]] | None = None,
        *,
        report_every: float = 1.0,
        patient: bool = False,
        caller: str = "",
        allowed: Callable[[str], bool] | None = None,
        avoid: frozenset[str] = frozenset(),
    ) -> str:
        """Take a slot, waiting for ``caller``'s turn; returns the slot's server. ``on_position(n)`` hears the
        place in the caller's line; ``allowed`` servers (breaker closed) are preferred for a free slot, and
        ``avoid`` (servers this request already failed on) are not taken while the model has others.

        Call :meth:`full` first (unless ``patient``): this method does not enforce the queue bound.
        """
        if avoid >= self._pools.keys():
            avoid = frozenset()  # it failed everywhere: any server will do
        if not self._queues:
            server = self._best(allowed, avoid)
            if server is not None:
                return self._take(server)
        turn = _Turn(avoid)
        waiters = self._queues.get(caller)
        if waiters is None:
            waiters = self._queues[caller] = deque()
            self._turns.append(caller)
        waiters.append(turn)
        self._patient += patient
        try:
            if on_position is None:
                await turn.event.wait()
                return turn.server
            while not turn.event.is_set():
                await on_position(self._queues[caller].index(turn) + 1)
                with anyio.move_on_after(report_every):
                    await turn.event.wait()
            return turn.server
        except BaseException:
            if turn.event.is_set():
                self.release(turn.server)  # the slot was handed to us as we were cancelled: pass it on
            else:
                self._leave(caller, turn)
            raise
        finally:
            self._patient -= patient

    def _leave(self, caller: str, turn: _Turn) -> None:
        waiters = self._queues[caller]
        waiters.remove(turn)
        if not waiters:
            del self._queues[caller]
            self._turns.remove(caller)

    def resize(self, slots: Mapping[str, int]) -> None:
        """Serve from these servers with these slots from now on (the servers' listings changed).

        A server that left keeps the slots in use there until they are released, and gets no more;
        new room goes to waiters at once.
        """
        if not slots or min(slots.values()) < 1:
            raise ValueError(f"need slots >= 1 on every server, got {dict(slots)}")
        self._pools = dict(slots)
        for server in slots:
            self._busy.setdefault(server, 0)
            self._last_used.setdefault(server, 0)
        for server in [s for s, busy in self._busy.items() if s not in slots and busy == 0]:
            del self._busy[server], self._last_used[server]
        self.slots = sum(self._pools.values())
        for server in list(self._pools):
            while self._busy[server] < self._pools[server] and self._hand_on(server):
                pass

    def release(self, server: str = "") -> None:
        """Free a slot of ``server``: it goes to the first waiter of the caller whose turn it is (the first
        one that does not avoid ``server``)."""
        self._busy[server] -= 1
        if server not in self._pools:  # a server that stopped serving the model: its slot goes nowhere
            if not self._busy[server]:
                del self._busy[server], self._last_used[server]
            return
        self._hand_on(server)

    def _hand_on(self, server: str) -> bool:
        """Give a free slot of ``server`` to the next waiter that may take it; whether one did."""
        for place, caller in enumerate(self._turns):
            waiters = self._queues[caller]
            turn = next((t for t in waiters if server not in t.avoid), None)
            if turn is None:
                continue
            waiters.remove(turn)
            turn.server = self._take(server)
            turn.event.set()
            del self._turns[place]
            if waiters:
                self._turns.append(caller)  # to the back: every other waiting caller comes first
            else:
                del self._queues[caller]
            return True
        return False
