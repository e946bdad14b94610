"""Signalling and probing a child's process group.

Every stdio child is started in a session of its own, so its pid is also its
process group id and every descendant (the real server behind ``npx``, ``uvx``
or a shell script) is in that group unless it deliberately left it. Signalling
the group reaches all of them, even those whose parent already died.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from contextlib import suppress
from typing import Final

import anyio

__all__ = ["ProcessGroups", "group_alive", "signal_group"]

log = logging.getLogger("bridge.children")

_POLL_INTERVAL: Final = 0.02  # no event fires when the last member of a group dies


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to the whole group; ``False`` if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # some members are not ours to signal; the group is still there
    return True


def group_alive(pgid: int) -> bool:
    """Whether any member of the group is still running.

    ``killpg(pgid, 0)`` alone counts zombies: orphans reparented to an init
    that does not reap (common in containers) would make a dead group look
    alive forever. On Linux, ``/proc`` tells zombies apart; elsewhere the
    signal probe is all there is.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if sys.platform != "linux":
        return True
    return _live_member_in_proc(pgid)


def _live_member_in_proc(pgid: int) -> bool:
    # procfs is in memory: reading it does not block, so no thread is needed.
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            with suppress(OSError):
                with open(f"/proc/{entry.name}/stat", "rb") as stat_file:
                    stat = stat_file.read()
                # "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
                fields = stat[stat.rfind(b")") + 2 :].split()
                if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                    return True
    return False


class ProcessGroups:
    """The process groups of every running stdio child of one bridge, so one place can stop them all.

    A child's own stop sequence is orderly and one at a time; this is the bridge-wide backstop: on
    a signal or at exit every group is signalled at once, within a bounded time, whatever the
    actors are doing. Once :meth:`close` is called no new child may start. Owned by the running
    bridge (or by ``serve_stdio``, which hands it to the bridge) and passed down to each child.
    """

    def __init__(self) -> None:
        self._groups: dict[int, str] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether the bridge is exiting: a child that would start now must not."""
        return self._closed

    def close(self) -> None:
        self._closed = True

    def add(self, pgid: int, name: str) -> None:
        """Register a group; one that started after :meth:`close` is killed at once."""
        self._groups[pgid] = name
        if self._closed:
            signal_group(pgid, signal.SIGKILL)

    def discard(self, pgid: int) -> None:
        """Forget a group its stop sequence has reaped (its id may be reused from now on)."""
        self._groups.pop(pgid, None)

    def alive(self) -> list[int]:
        """The registered groups with a member still running."""
        return [pgid for pgid in self._groups if group_alive(pgid)]

    def signal_all(self, sig: signal.Signals) -> list[int]:
        """Send ``sig`` to every registered group still there; returns those signalled."""
        return [pgid for pgid in list(self._groups) if signal_group(pgid, sig)]

    def __len__(self) -> int:
        return len(self._groups)

    async def stop_all(self, *, term_grace: float, kill_wait: float) -> list[int]:
        """SIGTERM every live group, SIGKILL those left after ``term_grace``; the groups still alive after that.

        Every wait is bounded (``term_grace + kill_wait`` in all), so a caller on its way out can
        afford it; the stop sequences of the children themselves reap the leaders meanwhile.
        """
        live = self.alive()
        if not live:
            return []
        log.info("stopping %d child process group(s): SIGTERM to %s", len(live), self._names(live))
        for pgid in live:
            signal_group(pgid, signal.SIGTERM)
        live = await self._wait_gone(live, term_grace)
        if not live:
            return []
        log.warning(
            "child process group(s) %s still running %.1f s after SIGTERM: SIGKILL", self._names(live), term_grace
        )
        for pgid in live:
            signal_group(pgid, signal.SIGKILL)
        live = await self._wait_gone(live, kill_wait)
        if live:
            log.error("child process group(s) %s survived SIGKILL", self._names(live))
        return live

    async def _wait_gone(self, pgids: list[int], timeout: float) -> list[int]:
        # Polled: no event fires when the last member of a group dies.
        with anyio.move_on_after(timeout):
            while True:
                pgids = [pgid for pgid in pgids if group_alive(pgid)]
                if not pgids:
                    break
                await anyio.sleep(_POLL_INTERVAL)
        return [pgid for pgid in pgids if group_alive(pgid)]

    def _names(self, pgids: list[int]) -> str:
        return ", ".join(f"{self._groups.get(pgid, '?')!r} ({pgid})" for pgid in pgids)
