"""One job's record: what it runs, where it is, what it has produced so far, and how it ended.

Owned by the JobsActor: only its tasks read or change a record. Progress reports from the
actor serving the work land in :meth:`Job.on_progress`, which keeps the latest of each figure
and hands the report on to whoever is waiting on the job right now.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Iterator
from typing import Any, Final

import anyio
import msgspec

from bridge.errors import BridgeError, ErrorInfo
from bridge.messages import (
    BatchResult,
    ChatResult,
    CompletionResult,
    JobState,
    JobView,
    Progress,
    RunBatch,
    RunResult,
    SeriesResult,
    SubmitJob,
)
from bridge.runtime import ProgressSink, RequestContext

__all__ = ["Job", "new_job_id"]

log = logging.getLogger("bridge.jobs")

TRACE_LINES: Final = 50
"""Progress lines a job keeps (the latest): enough to see what an autonomous run is doing."""


def new_job_id() -> str:
    """128 random bits: a job id is its own access token, so it must not be guessable."""
    return "job_" + secrets.token_urlsafe(16)


class Job:
    """A job and its progress. Caution: created and changed by the JobsActor only."""

    def __init__(self, job_id: str, message: SubmitJob, *, caller: str, now: float) -> None:
        self.id = job_id
        self.tool = message.tool
        self.work = message.work
        self.route = message.route
        self.model = message.model
        self.raw = message.raw
        self.caller = caller
        self.created = now
        self.finished_at: float | None = None
        self.state: JobState = (
            "running" if message.route != "registry" or isinstance(message.work, RunBatch) else "queued"
        )
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self.reported = anyio.Event()
        """Set by the first report (queued, started, ...) or the end: when the position is known."""
        self.position: int | None = None
        self.tokens = 0
        self.rounds = 0
        self.items_done = 0
        self.items_total = len(message.work.items) if isinstance(message.work, RunBatch) else 0
        self.text = ""
        self.trace: deque[str] = deque(maxlen=TRACE_LINES)
        self.outcome: dict[str, Any] = {}
        self.error: ErrorInfo | None = None
        self.size = 0
        self.detached = message.wait is None
        """Kept after it ends: a background job, or one whose caller stopped waiting."""
        self.listeners: list[ProgressSink] = []
        self.cancel_reason = ""

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    # --- progress -------------------------------------------------------------
    async def on_progress(self, progress: Progress) -> None:
        """The serving actor's report: keep the latest figures, then pass it to the waiting callers."""
        match progress.stage:
            case "queued":
                self.position = progress.position
            case "started" | "first_token" | "generating":
                if self.state == "queued":
                    self.state = "running"
                self.position = None
                if progress.model and not self.model:
                    self.model = progress.model
            case "round":
                self.rounds = max(self.rounds, int(progress.progress))
            case "item":
                self.items_done = int(progress.progress)
        if progress.tokens is not None:
            self.tokens = max(self.tokens, progress.tokens)
        if progress.text is not None and len(progress.text) >= len(self.text):
            self.text = progress.text
        if progress.message and progress.stage not in ("generating", "first_token"):
            self.trace.append(progress.message)
        self.reported.set()
        for listener in list(self.listeners):
            try:
                await listener(progress)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception:  # a caller's sink failing must not end the job
                log.debug("a job listener failed; dropping it", exc_info=True)
                self.listeners.remove(listener)

    @contextlib.contextmanager
    def listened_by(self, ctx: RequestContext) -> Iterator[None]:
        """Pass this job's progress to ``ctx``'s asker for the body of the ``with``, if it listens."""
        if not ctx.wants_progress:
            yield
            return
        listener = ctx.report_progress
        self.listeners.append(listener)
        try:
            yield
        finally:
            if listener in self.listeners:
                self.listeners.remove(listener)

    # --- the end ----------------------------------------------------------------
    def succeed(self, result: object, now: float) -> None:
        match result:
            case ChatResult():
                self.outcome = {"chat": result}
                self.text = result.content
            case CompletionResult():
                self.outcome = {"completion": result}
                self.text = result.text
            case RunResult():
                self.outcome = {"run": result}
                self.rounds = result.rounds
            case SeriesResult():
                self.outcome = {"series": result}
                self.rounds = sum(item.run.rounds for item in result.items if item.run is not None)
            case BatchResult():
                self.outcome = {"batch": result}
                self.items_done = len(result.items)
            case _:
                raise TypeError(f"a job cannot keep a {type(result).__name__}")
        self._end("done", now)

    def fail(self, error: BridgeError, now: float, *, state: JobState = "failed") -> None:
        self.error = error.to_info()
        self._end(state, now)

    def _end(self, state: JobState, now: float) -> None:
        self.state = state
        self.finished_at = now
        self.position = None
        if self.detached:
            self.size = len(msgspec.json.encode(self.view(now, ttl=None)))
        self.reported.set()
        self.done.set()

    # --- what callers see ---------------------------------------------------------
    def view(self, now: float, *, ttl: float | None) -> JobView:
        end = self.finished_at if self.finished_at is not None else now
        expires = None if ttl is None or self.finished_at is None else max(0.0, self.finished_at + ttl - now)
        return JobView(
            job_id=self.id,
            tool=self.tool,
            state=self.state,
            model=self.model,
            position=self.position,
            elapsed_s=round(end - self.created, 3),
            tokens=self.tokens,
            rounds=self.rounds,
            items_done=self.items_done,
            items_total=self.items_total,
            partial_text="" if self.finished else self.text,
            trace=list(self.trace),
            expires_in_s=None if expires is None else round(expires, 1),
            raw=self.raw,
            error=self.error,
            **self.outcome,
        )
