"""Running one generation: instance, slot, timing, mid-stream faults, eviction.

The engine knows nothing of wire formats: it drives a :class:`Sink` (one per
API and per stream/non-stream) with reasoning tokens, content tokens and tool
call pieces, and pauses between them. Pausing is where a streaming sink sends
what it has, so a reply produced at once costs one write.

Order of events for a request: get an instance (maybe JIT-loading it), wait in
the instance's FIFO for a slot, check the prompt fits the loaded context,
wait ``ttft``, then emit tokens every ``1 / tokens_per_s`` until the plan, the
``max_tokens`` budget or the context runs out. An unload of the instance at
any point from the slot on cancels the generation and raises
:class:`GenerationFailed` ("Model unloaded.").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol

import anyio

from bridge.sim._config import FaultKind, SimModel
from bridge.sim._faults import DURING_WORK
from bridge.sim._generate import Plan, PlannedCall
from bridge.sim._http import DropConnection
from bridge.sim._models import Instance, ModelNotLoaded, ModelRegistry, ModelUnloaded, ServerTurns
from bridge.sim._script import Fault
from bridge.sim._stats import SimStats
from bridge.sim._wire import MODEL_UNLOADED_MESSAGE, NO_MODELS_LOADED_MESSAGE, overflow_message

__all__ = ["GenerationFailed", "Job", "Sink", "run_generation", "server_turn"]

FailureKind = Literal["model_unloaded", "context_overflow", "not_loaded", "interrupted"]


class GenerationFailed(Exception):
    """The request failed the way LM Studio reports in-band: unloaded model, context overflow, nothing loaded."""

    def __init__(self, kind: FailureKind, message: str, *, prompt_tokens: int = 0, context_length: int = 0) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.message = message
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length


class Sink(Protocol):
    """Where a generation's output goes (a stream's frames or a reply being collected)."""

    def reasoning(self, text: str) -> None: ...
    def content(self, text: str) -> None: ...
    def call_start(self, index: int, call: PlannedCall) -> None: ...
    def call_arguments(self, index: int, fragment: str) -> None: ...
    async def pause(self, seconds: float) -> None: ...


@dataclass(slots=True)
class Job:
    """One generation request, and what happened to it (filled in as it runs)."""

    spec: SimModel
    instance_id: str | None
    plan: Plan
    prompt_tokens: int
    max_tokens: int | None
    fault: Fault | None = None
    ttl: float | None = None
    tokens_sent: int = 0
    instance: Instance | None = None
    slot_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    interrupted: anyio.Event = field(default_factory=anyio.Event)
    """Set when another request cuts this one (``SimConfig.interrupt_requests``)."""


def _units(plan: Plan) -> list[tuple[str, int, str]]:
    units = [("reasoning", 0, t) for t in plan.reasoning] + [("content", 0, t) for t in plan.content]
    for index, call in enumerate(plan.calls):
        units.append(("call", index, ""))
        units.extend(("args", index, fragment) for fragment in call.fragments)
    return units


async def _fire(fault: Fault, job: Job, sink: Sink) -> None:
    if fault.kind is FaultKind.DROP:
        await sink.pause(0)  # what was generated reaches the client first
        raise DropConnection
    if fault.kind is FaultKind.STALL:
        if fault.seconds is None:
            await sink.pause(0)
            await anyio.sleep_forever()
        else:
            await sink.pause(fault.seconds)
    elif fault.kind is FaultKind.MODEL_UNLOADED:
        raise GenerationFailed("model_unloaded", fault.message or MODEL_UNLOADED_MESSAGE)
    elif fault.kind is FaultKind.INTERRUPT:
        await sink.pause(0)  # what was generated reaches the client first
        raise GenerationFailed("interrupted", fault.message or "interrupted by another request")
    elif fault.kind is FaultKind.CONTEXT_OVERFLOW:
        context = job.instance.context_length if job.instance else job.spec.context_length
        shown = max(job.prompt_tokens, context + 1)
        message = fault.message or overflow_message(shown, context)
        raise GenerationFailed("context_overflow", message, prompt_tokens=shown, context_length=context)


async def _emit(job: Job, instance: Instance, sink: Sink) -> str:
    """Emit the plan with its timing; returns the finish reason."""
    spec = job.spec
    budget = instance.context_length - job.prompt_tokens
    if job.max_tokens is not None and job.max_tokens > 0:
        budget = min(budget, job.max_tokens)
    fault = job.fault if job.fault is not None and job.fault.kind in DURING_WORK else None
    interval = spec.token_interval
    await sink.pause(spec.first_token_delay)
    job.first_token_at = anyio.current_time()
    finish: str = job.plan.finish_reason
    for kind, index, text in _units(job.plan):
        if job.interrupted.is_set():
            await sink.pause(0)  # what was generated reaches the client first
            raise GenerationFailed("interrupted", "interrupted by another request")
        if fault is not None and job.tokens_sent >= fault.after_tokens:
            await _fire(fault, job, sink)
            fault = None
        if job.tokens_sent >= budget:
            finish = "length"
            break
        if job.tokens_sent:
            if interval:
                await sink.pause(interval)
            elif job.tokens_sent % 256 == 0:
                await sink.pause(0)  # a checkpoint in very long instant replies
        if kind == "reasoning":
            sink.reasoning(text)
        elif kind == "content":
            sink.content(text)
        elif kind == "call":
            sink.call_start(index, job.plan.calls[index])
        else:
            sink.call_arguments(index, text)
        job.tokens_sent += 1
    if fault is not None:
        await _fire(fault, job, sink)
    return finish


async def _take_slot(instance: Instance, model_id: str, stats: SimStats) -> None:
    if instance.slots.try_acquire():
        stats.slot_taken(model_id, 0.0)
        return
    started = anyio.current_time()
    stats.queue_changed(model_id, +1)
    try:
        await instance.slots.wait()
    finally:
        stats.queue_changed(model_id, -1)
    stats.slot_taken(model_id, anyio.current_time() - started)


@asynccontextmanager
async def server_turn(turns: ServerTurns | None, stats: SimStats, job: Job | None = None) -> AsyncIterator[None]:
    """Hold one of the whole server's turns (llama-cpp-python's lock), cutting the oldest running generation if
    told to (``interrupt_requests``). ``job``: the generation holding it, which a later request may cut; ``None``
    for a listing, which nothing cuts."""
    if turns is None:
        yield
        return
    if not turns.slots.try_acquire():
        if turns.interrupting and turns.holders:
            model_id, interrupt = turns.holders[0]
            interrupt.set()
            stats.fault(model_id, FaultKind.INTERRUPT)
        await turns.slots.wait()
    holder = (job.spec.id, job.interrupted) if job is not None else None
    if holder is not None:
        turns.holders.append(holder)
    try:
        yield
    finally:
        if holder is not None:
            turns.holders.remove(holder)
        turns.slots.release()


async def run_generation(job: Job, sink: Sink, registry: ModelRegistry, stats: SimStats) -> str:
    """Run ``job`` into ``sink``; returns the finish reason (``stop``, ``length`` or ``tool_calls``).

    Raises:
        GenerationFailed: Unloaded, overflowed, nothing loaded (JIT off), or interrupted by another request.
        DropConnection: A ``drop`` fault.
    """
    async with server_turn(registry.server_turns, stats, job):
        return await _run_in_turn(job, sink, registry, stats)


async def _run_in_turn(job: Job, sink: Sink, registry: ModelRegistry, stats: SimStats) -> str:
    model_id = job.spec.id
    try:
        instance = await registry.instance_for(job.spec, job.instance_id, job.ttl)
        job.instance = instance
        await _take_slot(instance, model_id, stats)
    except ModelUnloaded:
        raise GenerationFailed("model_unloaded", MODEL_UNLOADED_MESSAGE) from None
    except ModelNotLoaded:
        raise GenerationFailed("not_loaded", NO_MODELS_LOADED_MESSAGE) from None
    job.slot_at = instance.last_used = anyio.current_time()
    try:
        with registry.generating(instance) as scope:
            if job.prompt_tokens > instance.context_length:
                message = overflow_message(job.prompt_tokens, instance.context_length)
                raise GenerationFailed(
                    "context_overflow",
                    message,
                    prompt_tokens=job.prompt_tokens,
                    context_length=instance.context_length,
                )
            finish = await _emit(job, instance, sink)
        if scope.cancelled_caught:
            raise GenerationFailed("model_unloaded", MODEL_UNLOADED_MESSAGE)
    except ModelUnloaded:
        raise GenerationFailed("model_unloaded", MODEL_UNLOADED_MESSAGE) from None
    finally:
        instance.slots.release()
        stats.slot_released(model_id)
        job.finished_at = instance.last_used = anyio.current_time()
    return finish


def tokens_per_second(job: Job) -> float:
    """Measured output speed, for LM Studio's v0 ``stats``."""
    if job.first_token_at is None or job.finished_at is None:
        return 0.0
    elapsed = job.finished_at - job.first_token_at
    return job.tokens_sent / elapsed if elapsed > 0 else 0.0  # an instant reply has no meaningful speed
