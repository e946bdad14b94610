"""Process figures for ``bridge_status``: what a soak test watches for leaks from outside.

RSS, descriptors and threads can be read from outside the process; the number of live
tasks cannot, and a slow task leak (a handler that never returns) shows only there.
"""

from __future__ import annotations

import asyncio

import sniffio

__all__ = ["task_count"]


def task_count() -> int:
    """Live tasks of the running event loop, this one included; call it from inside the loop.

    On asyncio: ``asyncio.all_tasks()``. On trio: every task under the root task, found by
    walking each task's nurseries (trio keeps no flat list).
    """
    library = sniffio.current_async_library()
    if library == "trio":
        return _trio_task_count()
    if library == "asyncio":
        return len(asyncio.all_tasks())
    raise RuntimeError(f"task_count: unsupported async library {library!r}")


def _trio_task_count() -> int:
    import trio  # only installed where trio runs, so imported only when it does

    root = trio.lowlevel.current_root_task()
    if root is None:
        return 0
    count = 0
    pending = [root]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count
