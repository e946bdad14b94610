"""A model's parallel slots and the bounded queue in front of them, served to callers in turn.

LM Studio runs a fixed number of predictions per loaded model at once and queues
the rest inside the server, where a client cannot see or bound the wait. The
worker keeps its own queue instead: positions are known (and reported), the
queue is bounded (``busy`` past it), and a cancelled waiter leaves at once.
A *patient* waiter (a batch item that asked to wait for its turn) queues past
the bound and does not count against it, so a big batch never turns other
callers away as busy and never is turned away itself.

Waiters queue per caller (a shared bridge's session; one caller in ``serve``)
and a freed slot goes to the callers in turn (round robin over the callers
that wait), so one session's 1,000-item batch cannot starve another's single
chat. Within a caller the order is first come, first served.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["SlotQueue"]


class SlotQueue:
    """Strictly owned by one worker actor."""

    __slots__ = ("_free", "_patient", "_queues", "_turns", "queue_limit", "slots")

    def __init__(self, slots: int, queue_limit: int) -> None:
        if slots < 1 or queue_limit < 0:
            raise ValueError(f"need slots >= 1 and queue >= 0, got slots={slots}, queue={queue_limit}")
        self.slots = slots
        self.queue_limit = queue_limit
        self._free = slots
        self._patient = 0
        self._queues: dict[str, deque[anyio.Event]] = {}
        self._turns: deque[str] = deque()  # the callers that wait, next to be served first

    @property
    def queued(self) -> int:
        return sum(len(waiters) for waiters in self._queues.values())

    def queued_by_caller(self) -> dict[str, int]:
        return {caller: len(waiters) for caller, waiters in self._queues.items()}

    @property
    def in_use(self) -> int:
        return self.slots - self._free

    def full(self) -> bool:
        """Whether a request that is not patient must be refused: no free slot and the queue at its bound."""
        return self._free == 0 and self.queued - self._patient >= self.queue_limit

    async def acquire(
        self,
        on_position: Callable[[int], Awaitable[None]] | None = None,
        *,
        report_every: float = 1.0,
        patient: bool = False,
        caller: str = "",
    ) -> None:
        """Take a slot, waiting for ``caller``'s turn; ``on_position(n)`` hears the place in the caller's line.

        Call :meth:`full` first (unless ``patient``): this method does not enforce the queue bound.
        """
        if self._free > 0 and not self._queues:
            self._free -= 1
            return
        turn = anyio.Event()
        waiters = self._queues.get(caller)
        if waiters is None:
            waiters = self._queues[caller] = deque()
            self._turns.append(caller)
        waiters.append(turn)
        self._patient += patient
        try:
            if on_position is None:
                await turn.wait()
                return
            while not turn.is_set():
                await on_position(self._queues[caller].index(turn) + 1)
                with anyio.move_on_after(report_every):
                    await turn.wait()
        except BaseException:
            if turn.is_set():
                self.release()  # the slot was handed to us as we were cancelled: pass it on
            else:
                self._leave(caller, turn)
            raise
        finally:
            self._patient -= patient

    def _leave(self, caller: str, turn: anyio.Event) -> None:
        waiters = self._queues[caller]
        waiters.remove(turn)
        if not waiters:
            del self._queues[caller]
            self._turns.remove(caller)

    def release(self) -> None:
        """Give the slot to the first waiter of the caller whose turn it is, or free it."""
        if not self._turns:
            self._free += 1
            return
        caller = self._turns.popleft()
        waiters = self._queues[caller]
        waiters.popleft().set()
        if waiters:
            self._turns.append(caller)  # to the back: every other waiting caller comes first
        else:
            del self._queues[caller]
