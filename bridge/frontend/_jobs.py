"""The long tools' work, run as jobs; and a finished job's result in its tool's own shape.

Every chat, completion, batch and autonomous run goes to the JobsActor: with ``background``
the call answers at once with the job's id; otherwise it waits within the call budget. When
the budget runs out first, ``jobs.on_budget`` decides: ``"job"`` leaves the work running and
answers with a timeout that names the job and carries the text so far; ``"cut"`` stops it, as
the client's own timeout would, and answers with what was generated.
"""

from __future__ import annotations

import logging

from bridge.errors import BridgeError, error_from_info
from bridge.frontend._batch_file import write_batch_results
from bridge.frontend._format import (
    BatchOutcome,
    ToolOutput,
    batch_fits,
    batch_output,
    batch_rows,
    chat_output,
    completion_output,
    error_output,
    run_output,
    series_output,
)
from bridge.frontend._frontend import Ctx, Frontend
from bridge.frontend._job_format import continuing_output, job_ticket_output
from bridge.messages import BatchResult, JobView, JobWork, SubmitJob

__all__ = ["finished_output", "run_as_job"]

log = logging.getLogger("bridge.frontend")


def _margin(budget: float) -> float:
    """Seconds kept back from the call budget so the answer beats the ask's own deadline.

    Half of it is the room the jobs actor's answer has to arrive in: 5% of the budget, at most
    1 s, at least 0.2 s (0.025 s at a 1 s budget was missed on a loaded machine, and the call
    timed out without the id of the job it had started), and never more than half the budget.
    """
    return min(1.0, max(0.4, budget * 0.05), budget / 2)


async def run_as_job(
    fe: Frontend,
    ctx: Ctx,
    *,
    tool: str,
    work: JobWork,
    route: str | None = None,
    model: str | None = None,
    total: float | None = None,
    background: bool = False,
    raw: bool = False,
) -> ToolOutput:
    """Run ``work`` as a job: its ticket (``background``), its result, or a timeout naming it."""
    jobs = await fe.jobs()
    route = route or "registry"
    if background:
        view = await fe.ask(ctx, jobs, SubmitJob(tool=tool, work=work, route=route, model=model, raw=raw))
        return job_ticket_output(view, fe.limit)
    budget = fe.settings.call_budget
    margin = _margin(budget)
    cut = fe.settings.jobs.on_budget == "cut"
    message = SubmitJob(
        tool=tool,
        work=work,
        route=route,
        model=model,
        raw=raw,
        wait=budget - margin / 2,
        detach=not cut,
        # Cut: the work's own deadline is the call's, so it ends with its typed timeout and the text so far.
        time_budget=budget - margin if cut else None,
    )
    view = await fe.ask(ctx, jobs, message, model=model, total=total)
    if not view.finished:
        return continuing_output(view, budget, fe.limit)
    return await finished_output(fe, view, explain_budget=cut)


async def finished_output(fe: Frontend, view: JobView, *, explain_budget: bool = False) -> ToolOutput:
    """A finished job's result, exactly as its tool returns it when it runs within one call."""
    if view.error is not None:
        error = error_from_info(view.error)
        return error_output(fe.explain(error, view.tool) if explain_budget else error, fe.limit)
    if view.chat is not None:
        return chat_output(view.chat, raw=view.raw, limit=fe.limit)
    if view.completion is not None:
        return completion_output(view.completion, fe.limit)
    if view.run is not None:
        return run_output(view.run, fe.limit)
    if view.series is not None:
        return series_output(view.series, fe.limit)
    if view.batch is not None:
        return await _batch_output(fe, view.batch, explain_budget=explain_budget)
    raise AssertionError(f"job {view.job_id} finished with nothing to show")


async def _batch_output(fe: Frontend, batch: BatchResult, *, explain_budget: bool) -> ToolOutput:
    outcomes: list[BatchOutcome] = []
    for item in batch.items:
        outcome = BatchOutcome(index=item.index, model=item.model, result=item.result)
        if item.error is not None:
            error = error_from_info(item.error)
            outcome.error = fe.explain(error, "Chat") if explain_budget else error
        outcomes.append(outcome)
    if batch_fits(outcomes, batch.elapsed_s, fe.limit):
        return batch_output(outcomes, batch.elapsed_s, fe.limit)
    try:
        path = await write_batch_results(batch_rows(outcomes), fe.batch_dir)
    except (OSError, BridgeError) as exc:  # an unsafe or unwritable directory: the answers still go back
        log.warning("could not keep the full batch results in %s: %s", fe.batch_dir, exc)
        return batch_output(outcomes, batch.elapsed_s, fe.limit)
    return batch_output(outcomes, batch.elapsed_s, fe.limit, results_file=str(path))
