"""Results of the job tools, and of a call that goes on as a job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.errors import DeadlineExceededError, error_fields, error_text
from bridge.frontend._format import ToolOutput, fit
from bridge.messages import JobList, JobView

__all__ = ["continuing_output", "job_list_output", "job_status_output", "job_ticket_output"]


def _fields(view: JobView) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "job_id": view.job_id,
        "tool": view.tool,
        "state": view.state,
        "model": view.model,
        "position": view.position,
        "elapsed_s": view.elapsed_s,
        "tokens": view.tokens or None,
        "rounds": view.rounds or None,
        "items_done": view.items_done if view.items_total else None,
        "items_total": view.items_total or None,
        "expires_in_s": view.expires_in_s,
    }
    if view.error is not None:
        fields["error"] = {"code": view.error.code, "message": view.error.message}
    return {k: v for k, v in fields.items() if v is not None}


def _line(view: JobView) -> str:
    parts = [f"{view.job_id} {view.tool}: {view.state}"]
    if view.model:
        parts.append(view.model)
    if view.position is not None:
        parts.append(f"queue position {view.position}")
    if view.items_total:
        parts.append(f"{view.items_done}/{view.items_total} items")
    if view.rounds:
        parts.append(f"{view.rounds} rounds")
    if view.tokens:
        parts.append(f"{view.tokens} tokens")
    parts.append(f"{view.elapsed_s:.1f} s")
    if view.error is not None:
        parts.append(f"{view.error.code}: {view.error.message}")
    return ", ".join(parts)


def _fetch_hint(view: JobView) -> str:
    return f'fetch it with job_result(job_id="{view.job_id}", wait_s=30); cancel it with cancel_job'


def job_ticket_output(view: JobView, limit: int) -> ToolOutput:
    """A background job just started: its id, model and queue position."""
    text = f"started job {_line(view)}.\n{_fetch_hint(view).capitalize()}."
    return fit(lambda _: ToolOutput(text=text, structured=_fields(view)), [], limit)


def job_status_output(view: JobView, limit: int) -> ToolOutput:
    """Where a job is: state, progress, and the text or trace so far (not an error while it runs)."""

    def build(bodies: Sequence[str]) -> ToolOutput:
        text, trace = bodies
        lines = [_line(view)]
        structured = _fields(view)
        if trace:
            lines.append("Trace so far:\n" + trace)
            structured["trace"] = trace.splitlines()
        if text:
            lines.append("Text so far:\n" + text)
            structured["partial_text"] = text
        if view.finished:
            lines.append(f'It has finished: job_result(job_id="{view.job_id}") returns its result.')
        return ToolOutput(text="\n\n".join(lines), structured=structured)

    return fit(build, [view.partial_text, "\n".join(view.trace)], limit)


def continuing_output(view: JobView, budget: float, limit: int) -> ToolOutput:
    """The call's budget ran out and its work goes on as a job: a timeout that says where the rest will be."""
    error = DeadlineExceededError(
        f"the call's time budget of {budget:g} s (call_budget) ran out, so the bridge answers now; the work goes "
        f"on, continuing as job {view.job_id}: {_fetch_hint(view)} instead of running the work again",
        retryable=True,
        details={"job_id": view.job_id, "continuing_as_job": True, "budget": "call", "call_budget_s": budget},
    )
    head = error_text(error)

    def build(bodies: Sequence[str]) -> ToolOutput:
        (partial,) = bodies
        structured: dict[str, Any] = {**error_fields(error), **_fields(view)}
        text = head
        if partial:
            text += f"\n\nPartial output so far (the job's final text starts with it):\n{partial}"
            structured["partial_content"] = partial
        return ToolOutput(text=text, structured=structured, is_error=True)

    return fit(build, [view.partial_text], limit)


def job_list_output(listing: JobList, limit: int) -> ToolOutput:
    """Every job kept: running ones first, then finished ones, newest first."""
    order = {"queued": 0, "running": 0}
    jobs = sorted(listing.jobs, key=lambda v: (order.get(v.state, 1), v.elapsed_s))
    summary = f"{listing.active} jobs queued or running, {listing.kept} finished jobs kept"
    lines = [summary, *(_line(v) for v in jobs)]
    structured = {
        "active": listing.active,
        "kept": listing.kept,
        "jobs": [_fields(v) for v in jobs],
    }
    return fit(lambda _: ToolOutput(text="\n".join(lines), structured=structured), [], limit)
