"""The job tools: ``job_status``, ``job_result``, ``cancel_job``, ``list_jobs``; and the ``background`` flag."""

from __future__ import annotations

from typing import Annotated

from mcp.types import ToolAnnotations
from pydantic import Field

from bridge.frontend._format import ToolOutput
from bridge.frontend._frontend import Ctx, Frontend
from bridge.frontend._job_format import job_list_output, job_status_output
from bridge.frontend._jobs import finished_output
from bridge.frontend._mcp_server import ToolSet
from bridge.messages import AwaitJob, CancelJob, GetJob, ListJobs

__all__ = ["Background", "register_job_tools"]

Background = Annotated[
    bool,
    Field(
        description="Return at once with a job_id instead of waiting; fetch the result with job_result. "
        "Use it for long generations, big batches and autonomous runs."
    ),
]
JobId = Annotated[str, Field(description="The job_id a background call (or a call out of time) returned.")]

_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
_CANCEL = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)


def register_job_tools(tools: ToolSet, frontend: Frontend) -> None:
    limit = frontend.limit

    @tools.tool(annotations=_READ)
    async def job_status(ctx: Ctx, job_id: JobId) -> ToolOutput:
        """A job's state (queued, running, done, failed, cancelled), queue position, tokens, rounds or items
        so far, elapsed time, and the text or trace so far. Returns at once."""

        return job_status_output(await frontend.ask(ctx, await frontend.jobs(), GetJob(job_id=job_id)), limit)

    @tools.tool(annotations=_READ)
    async def job_result(
        ctx: Ctx,
        job_id: JobId,
        wait_s: Annotated[
            float, Field(description="Seconds to wait for the job to finish (within the call budget).", ge=0)
        ] = 30.0,
    ) -> ToolOutput:
        """A job's result once it finished, in exactly the form its tool returns (isError for a failed job);
        if it is still running after wait_s seconds, its status instead: call again."""

        view = await frontend.ask(ctx, await frontend.jobs(), AwaitJob(job_id=job_id, wait=wait_s))
        if view.finished:
            return await finished_output(frontend, view)
        return job_status_output(view, limit)

    @tools.tool(annotations=_CANCEL)
    async def cancel_job(ctx: Ctx, job_id: JobId) -> ToolOutput:
        """Cancel a queued or running job: its model stream and child tool calls stop at once."""

        return job_status_output(await frontend.ask(ctx, await frontend.jobs(), CancelJob(job_id=job_id)), limit)

    @tools.tool(annotations=_READ)
    async def list_jobs(ctx: Ctx) -> ToolOutput:
        """The jobs this bridge holds: queued and running ones, and finished ones until their results expire."""

        return job_list_output(await frontend.ask(ctx, await frontend.jobs(), ListJobs()), limit)

    del job_status, job_result, cancel_job, list_jobs
