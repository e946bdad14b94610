"""Signalling and probing a child's process group.

Every stdio child is started in a session of its own, so its pid is also its
process group id and every descendant (the real server behind ``npx``, ``uvx``
or a shell script) is in that group unless it deliberately left it. Signalling
the group reaches all of them, even those whose parent already died.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import suppress

__all__ = ["group_alive", "signal_group"]


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
