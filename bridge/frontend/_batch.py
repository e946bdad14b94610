"""The batch engine behind ``batch_chat``: many chats at once, each within its model's limits and the call's time."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import anyio
import msgspec
from pydantic import BaseModel, ConfigDict, Field

from bridge.errors import BadRequestError, BridgeError
from bridge.frontend._batch_file import write_batch_results
from bridge.frontend._format import BatchOutcome, ToolOutput, batch_fits, batch_output, batch_rows
from bridge.frontend._frontend import Ctx, Frontend, wants_progress
from bridge.frontend._progress import ProgressForwarder, describe
from bridge.llm import ChatMessage
from bridge.messages import Chat, Progress

__all__ = ["MAX_BATCH_ITEMS", "BatchItem", "batch_work", "chat_messages", "none_if_blank", "run_batch"]

log = logging.getLogger("bridge.frontend")

MAX_BATCH_ITEMS: Final = 1000
"""Items one ``batch_chat`` call may carry: enough for a large fan-out, bounded so one call cannot queue
unbounded work (each item still waits its turn within its model's limits and the call's budget)."""


class BatchItem(BaseModel):
    """One prompt of a batch; unset fields come from the call's own arguments."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="The user message.")
    model: str | None = Field(default=None, description="Model id; default: the call's models or the default model.")
    system_prompt: str | None = Field(default=None, description="System prompt for this item.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)


def chat_messages(prompt: str, system_prompt: str | None) -> list[ChatMessage]:
    """A prompt, after its system prompt if there is one."""
    messages = []
    if system_prompt:
        messages.append(ChatMessage(role="system", content=system_prompt))
    messages.append(ChatMessage(role="user", content=prompt))
    return messages


def none_if_blank(value: str | None) -> str | None:
    return value if value and value.strip() else None


def batch_work(
    prompts: list[str] | None,
    models: list[str] | None,
    items: list[BatchItem] | None,
    *,
    system_prompt: str | None,
    temperature: float | None,
    max_tokens: int | None,
) -> list[tuple[str | None, Chat]]:
    """The (model, message) pairs a ``batch_chat`` call asks for: its items, then every prompt on every model."""
    work: list[tuple[str | None, Chat]] = []
    for item in items or []:
        work.append(
            (
                item.model,
                Chat(
                    model=item.model,
                    messages=chat_messages(item.prompt, none_if_blank(item.system_prompt or system_prompt)),
                    temperature=item.temperature if item.temperature is not None else temperature,
                    max_tokens=item.max_tokens or max_tokens,
                ),
            )
        )
    targets: list[str | None] = list(models) if models else [None]
    for prompt in prompts or []:
        for model in targets:
            work.append(
                (
                    model,
                    Chat(
                        model=model,
                        messages=chat_messages(prompt, none_if_blank(system_prompt)),
                        temperature=temperature,
                        max_tokens=max_tokens,
                    ),
                )
            )
    if not work:
        raise BadRequestError(
            "nothing to run: pass prompts (each runs on every model in models) or items ([{prompt, model}, ...])"
        )
    if len(work) > MAX_BATCH_ITEMS:
        raise BadRequestError(
            f"{len(work)} items is more than one batch takes ({MAX_BATCH_ITEMS}); split it into several calls",
            details={"items": len(work), "max_items": MAX_BATCH_ITEMS},
        )
    return work


async def run_batch(fe: Frontend, ctx: Ctx, items: Sequence[tuple[str | None, Chat]]) -> ToolOutput:
    """Every item at once, each asked with the call's deadline and waiting its model's turn; one result."""
    started = anyio.current_time()
    deadline = started + fe.settings.call_budget
    registry = await fe.registry()
    outcomes = [BatchOutcome(index=i, model=model) for i, (model, _) in enumerate(items)]
    forwarder = ProgressForwarder(ctx.report_progress, total=None) if wants_progress(ctx) else None
    done = 0

    async def run_item(outcome: BatchOutcome, message: Chat) -> None:
        nonlocal done
        sink = None
        if forwarder is not None:
            label = f"[{outcome.index}] "

            async def sink(progress: Progress) -> None:
                if progress.stage == "generating":
                    return  # per-item token counts would flood the client; completions are reported
                await forwarder.send(forwarder.value, label + describe(progress, model=outcome.model))

        try:
            # The worker queues a patient item for as long as its budget lasts instead of
            # refusing it as busy; it alone knows the model's capacity.
            patient = msgspec.structs.replace(message, wait_for_slot=True)
            outcome.result = await fe.ask(ctx, registry, patient, deadline=deadline, sink=sink)
        except BridgeError as error:
            outcome.error = error
        done += 1
        if forwarder is not None:
            failed = sum(1 for o in outcomes if o.error is not None)
            state = f"ok ({outcome.result.model})" if outcome.result else f"{outcome.error and outcome.error.code}"
            await forwarder.send(
                forwarder.value, f"{done}/{len(items)} done, {failed} failed; [{outcome.index}] {state}"
            )

    async with anyio.create_task_group() as tg:
        for outcome, (_, message) in zip(outcomes, items, strict=True):
            tg.start_soon(run_item, outcome, message)
    elapsed = anyio.current_time() - started
    if batch_fits(outcomes, elapsed, fe.limit):
        return batch_output(outcomes, elapsed, fe.limit)
    try:
        path = await write_batch_results(batch_rows(outcomes), fe.batch_dir)
    except (OSError, BridgeError) as exc:  # an unsafe or unwritable directory: the answers still go back
        log.warning("could not keep the full batch results in %s: %s", fe.batch_dir, exc)
        return batch_output(outcomes, elapsed, fe.limit)
    return batch_output(outcomes, elapsed, fe.limit, results_file=str(path))
