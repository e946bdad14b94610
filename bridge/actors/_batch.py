"""The batch engine behind ``batch_chat`` jobs: many chats at once, each within its model's limits.

Every item is asked of the registry at once and waits its model's turn there (``wait_for_slot``):
the worker alone knows the model's capacity, so the engine neither throttles nor refuses. An
item's failure is its own answer; the rest go on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import msgspec

from bridge.errors import BridgeError
from bridge.messages import BatchItemResult, BatchResult, Chat, Progress, RegistryMessage, RunBatch
from bridge.runtime import ActorRef

__all__ = ["run_batch"]

Report = Callable[[Progress], Awaitable[None]]


async def run_batch(
    registry: ActorRef[RegistryMessage], batch: RunBatch, *, deadline: float, caller: str, report: Report
) -> BatchResult:
    """Every item of ``batch`` at once, each asked with ``deadline``; one result per item, in order."""
    started = anyio.current_time()
    results: list[BatchItemResult | None] = [None] * len(batch.items)
    counts = {"done": 0, "failed": 0}
    total = len(batch.items)

    async def run_item(index: int, message: Chat) -> None:
        label = f"[{index}] "

        async def item_progress(progress: Progress) -> None:
            if progress.stage in ("queued", "loading", "retry"):
                await report(Progress(stage=progress.stage, message=label + (progress.message or progress.stage)))

        patient = msgspec.structs.replace(message, wait_for_slot=True)
        try:
            reply = await registry.ask(
                patient, timeout=max(0.0, deadline - anyio.current_time()), progress=item_progress, caller=caller
            )
            item = BatchItemResult(index=index, model=message.model, result=reply)
            state = f"ok ({reply.model})"
        except BridgeError as error:
            item = BatchItemResult(index=index, model=message.model, error=error.to_info())
            counts["failed"] += 1
            state = str(error.code)
        results[index] = item
        counts["done"] += 1
        await report(
            Progress(
                stage="item",
                progress=float(counts["done"]),
                total=float(total),
                message=f"{counts['done']}/{total} done, {counts['failed']} failed; {label.strip()} {state}",
            )
        )

    async with anyio.create_task_group() as tg:
        for index, message in enumerate(batch.items):
            tg.start_soon(run_item, index, message)
    items = [item for item in results if item is not None]
    return BatchResult(items=items, elapsed_s=anyio.current_time() - started)
