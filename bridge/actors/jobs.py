"""JobsActor: work that outlives the tool call that asked for it.

A job is a chat, completion, batch or autonomous run that the JobsActor asks of the actor
that serves it (the registry, a planner) with the job's own time budget, in a task of its
own. The caller that submitted it may wait for it (a plain call: the job is then the call's
work, cancelled with it), stop waiting and leave it running (a call out of its budget,
``on_budget = "job"``), or not wait at all (``background``). Any caller of this bridge who has
the id can then ask for its status or result, wait for it, or cancel it.

Finished jobs are kept for ``jobs.ttl`` seconds, at most ``jobs.max_kept`` of them and
``jobs.max_bytes`` in all, the oldest finished going first; expiry is checked on every
request, so no timer runs. The records are this incarnation's: a crash ends every job (their
waiters get ``actor_crashed``) and their ids are then unknown (``job_not_found``).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any, Final

import anyio

from bridge.actors._batch import run_batch
from bridge.actors._job import Job, new_job_id
from bridge.errors import (
    BridgeError,
    BusyError,
    DeadlineExceededError,
    ErrorCode,
    JobNotFoundError,
    RequestCancelledError,
)
from bridge.messages import (
    AwaitJob,
    AwaitSessionJobs,
    CancelJob,
    GetJob,
    JobList,
    JobsMessage,
    JobView,
    ListJobs,
    RegistryMessage,
    RunBatch,
    SubmitJob,
)
from bridge.runtime import Actor, ActorRef, Request, RequestContext, Supervisor
from bridge.settings import JobSettings

__all__ = ["JobsActor"]

FIRST_REPORT_WAIT: Final = 1.0
"""Seconds a background submission waits for the job's first report (its queue position)."""
CANCEL_WAIT: Final = 5.0
"""Seconds a cancel waits for the job's work to unwind (closing a stream takes milliseconds)."""


class JobsActor(Actor[JobsMessage]):
    """Owns every job of the bridge: runs them, keeps their results, answers for them."""

    max_concurrent_requests = 16_384
    """Each waiting call holds one request; a batch of calls must not be refused for want of handlers."""

    def __init__(self, settings: JobSettings, root: Supervisor, registry: ActorRef[RegistryMessage]) -> None:
        super().__init__()
        self.settings = settings
        self.root = root
        self.registry = registry
        self.jobs: dict[str, Job] = {}
        self.kept: OrderedDict[str, Job] = OrderedDict()
        """Finished detached jobs, oldest finished first."""
        self.kept_bytes = 0
        self.active = 0

    async def handle(self, message: JobsMessage, ctx: RequestContext) -> object:
        self._expire()
        match message:
            case SubmitJob():
                return await self._submit(message, ctx)
            case GetJob(job_id=job_id):
                return self._view(self._find(job_id))
            case AwaitJob(job_id=job_id, wait=wait):
                return await self._await(self._find(job_id), wait, ctx)
            case CancelJob(job_id=job_id):
                job = self._find(job_id)
                await self._cancel(job, "cancelled with cancel_job")
                return self._view(job)
            case ListJobs():
                views = [self._view(job) for job in self.jobs.values() if job.detached]
                return JobList(jobs=views, active=self.active, kept=len(self.kept), kept_bytes=self.kept_bytes)
            case AwaitSessionJobs(session=session):
                using = [
                    j
                    for j in self.jobs.values()
                    if not j.finished and (session is None or j.route.startswith(f"{session}/"))
                ]
                for job in using:
                    await job.done.wait()
                return len(using)

    # --- submitting -----------------------------------------------------------------
    async def _submit(self, message: SubmitJob, ctx: RequestContext) -> JobView:
        if self.active >= self.settings.max_active:
            raise BusyError(
                f"{self.active} jobs are queued or running, the most this bridge takes (jobs.max_active); "
                "wait for some to finish (list_jobs) or cancel some",
                retry_after=1.0,
                details={"active": self.active, "max_active": self.settings.max_active},
            )
        job = Job(new_job_id(), message, caller=ctx.caller, now=anyio.current_time())
        self.jobs[job.id] = job
        self.active += 1
        self.start_background(functools.partial(self._run, job, message), name=f"job {job.id}")
        if message.wait is None:
            with anyio.move_on_after(FIRST_REPORT_WAIT):
                await job.reported.wait()
            return self._view(job)
        finished = await self._wait_for(job, message.wait, ctx)
        if finished and not job.detached:
            self._forget(job)  # its caller has the result: nothing to keep
        elif not finished and message.detach:
            job.detached = True
        elif not finished:
            await self._cancel(job, "the call's time budget ran out (jobs.on_budget = cut)")
            self._forget(job)
        return job.view(anyio.current_time(), ttl=self.settings.ttl)

    async def _wait_for(self, job: Job, wait: float, ctx: RequestContext) -> bool:
        """Wait up to ``wait`` s for ``job`` to end, passing its progress on; ``True`` if it ended.

        The caller giving up cancels a job it has not let go of: a plain call's work is the job.
        """
        try:
            with job.listened_by(ctx), anyio.move_on_after(wait):
                await job.done.wait()
        except anyio.get_cancelled_exc_class():
            if not job.detached and not job.finished:
                job.scope.cancel()
                self._forget(job)
            raise
        return job.finished

    async def _await(self, job: Job, wait: float, ctx: RequestContext) -> JobView:
        if not job.finished and wait > 0:
            # End a little before the asker's deadline, so the answer is the job's state, not a timeout.
            room = ctx.remaining() - min(0.5, ctx.remaining() * 0.05)
            with job.listened_by(ctx), anyio.move_on_after(max(0.0, min(wait, room))):
                await job.done.wait()
        return self._view(job)

    # --- running --------------------------------------------------------------------
    async def _run(self, job: Job, message: SubmitJob) -> None:
        budget = message.time_budget if message.time_budget is not None else self.settings.time_budget
        deadline = anyio.current_time() + budget
        error: BridgeError | None = None
        with job.scope:
            try:
                if isinstance(job.work, RunBatch):
                    result: object = await run_batch(
                        self.registry, job.work, deadline=deadline, caller=job.caller, report=job.on_progress
                    )
                else:
                    target = self.root.actor(job.route)
                    work: Request[Any] = job.work
                    result = await target.ask(work, timeout=budget, progress=job.on_progress, caller=job.caller)
            except BridgeError as exc:
                error = self._explain(exc, message, budget)
            else:
                job.succeed(result, anyio.current_time())
        if not job.finished:
            if error is None:
                error = RequestCancelledError(f"job {job.id} was {job.cancel_reason or 'cancelled'}")
                job.fail(error, anyio.current_time(), state="cancelled")
            else:
                job.fail(error, anyio.current_time())
        self.active -= 1
        if job.detached and job.id in self.jobs:
            self._keep(job)

    def _explain(self, error: BridgeError, message: SubmitJob, budget: float) -> BridgeError:
        """A job's own time budget running out is ``jobs.time_budget``; the caller's is explained by it."""
        if message.time_budget is not None or error.code != ErrorCode.TIMEOUT or "actor" not in error.details:
            return error
        return DeadlineExceededError(
            f"the job did not finish within its time budget of {budget:g} s (jobs.time_budget), so the bridge "
            "stopped it. Ask for less (max_tokens, fewer items or rounds), or raise jobs.time_budget",
            retryable=error.retryable,
            details={**error.details, "budget": "job", "job_time_budget_s": budget},
        )

    async def _cancel(self, job: Job, reason: str) -> None:
        if job.finished:
            return
        job.cancel_reason = reason
        job.scope.cancel()
        with anyio.move_on_after(CANCEL_WAIT):
            await job.done.wait()

    # --- keeping --------------------------------------------------------------------
    def _keep(self, job: Job) -> None:
        self.kept[job.id] = job
        self.kept_bytes += job.size
        while len(self.kept) > self.settings.max_kept or self.kept_bytes > self.settings.max_bytes:
            _, oldest = self.kept.popitem(last=False)
            self._drop(oldest)

    def _expire(self) -> None:
        """Drop finished jobs older than the TTL: ``kept`` is in finish order, so stop at the first young one."""
        if not self.kept:
            return
        horizon = anyio.current_time() - self.settings.ttl
        while self.kept:
            job = next(iter(self.kept.values()))
            if job.finished_at is None or job.finished_at > horizon:
                return
            self.kept.popitem(last=False)
            self._drop(job)

    def _drop(self, job: Job) -> None:
        self.kept_bytes -= job.size
        self.jobs.pop(job.id, None)

    def _forget(self, job: Job) -> None:
        self.jobs.pop(job.id, None)

    def _find(self, job_id: str) -> Job:
        job = self.jobs.get(job_id.strip())
        if job is None or not job.detached:
            ttl = self.settings.ttl
            raise JobNotFoundError(
                f"no job {job_id[:64]!r}: the id is wrong, its result expired ({ttl:g} s after it finished, "
                f"jobs.ttl) or was evicted to keep the newest {self.settings.max_kept} (jobs.max_kept), or the "
                "bridge restarted since. list_jobs shows the jobs there are; run the work again if you need it",
                details={"job_id": job_id[:64]},
            )
        return job

    def _view(self, job: Job) -> JobView:
        return job.view(anyio.current_time(), ttl=self.settings.ttl)
