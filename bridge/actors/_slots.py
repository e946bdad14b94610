"""A model's parallel slots and the bounded FIFO queue in front of them.

LM Studio runs a fixed number of predictions per loaded model at once and queues
the rest inside the server, where a client cannot see or bound the wait. The
worker keeps its own queue instead: positions are known (and reported), the
queue is bounded (``busy`` past it), and a cancelled waiter leaves at once.
A *patient* waiter (a batch item that asked to wait for its turn) queues past
the bound and does not count against it, so a big batch never turns other
callers away as busy and never is turned away itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["SlotQueue"]


class SlotQueue:
    """Strictly owned by one worker actor."""

    __slots__ = ("_free", "_patient", "_waiters", "queue_limit", "slots")

    def __init__(self, slots: int, queue_limit: int) -> None:
        if slots < 1 or queue_limit < 0:
            raise ValueError(f"need slots >= 1 and queue >= 0, got slots={slots}, queue={queue_limit}")
        self.slots = slots
        self.queue_limit = queue_limit
        self._free = slots
        self._patient = 0
        self._waiters: deque[anyio.Event] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def in_use(self) -> int:
        return self.slots - self._free

    def full(self) -> bool:
        """Whether a request that is not patient must be refused: no free slot and the queue at its bound."""
        return self._free == 0 and len(self._waiters) - self._patient >= self.queue_limit

    async def acquire(
        self,
        on_position: Callable[[int], Awaitable[None]] | None = None,
        *,
        report_every: float = 1.0,
        patient: bool = False,
    ) -> None:
        """Take a slot, waiting in FIFO order; ``on_position(n)`` hears the place in line.

        Call :meth:`full` first (unless ``patient``): this method does not enforce the queue bound.
        """
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        turn = anyio.Event()
        self._waiters.append(turn)
        self._patient += patient
        try:
            if on_position is None:
                await turn.wait()
                return
            while not turn.is_set():
                await on_position(self._waiters.index(turn) + 1)
                with anyio.move_on_after(report_every):
                    await turn.wait()
        except BaseException:
            if turn.is_set():
                self.release()  # the slot was handed to us as we were cancelled: pass it on
            else:
                self._waiters.remove(turn)
            raise
        finally:
            self._patient -= patient

    def release(self) -> None:
        """Give the slot to the first waiter, or free it."""
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self._free += 1
