"""What every tool shares: the bridge's addresses, the call budget, progress, and asking within it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec
from mcp.server.mcpserver import Context

from bridge.errors import ActorUnavailableError, BridgeError, DeadlineExceededError, ErrorCode
from bridge.frontend._batch_file import default_batch_dir
from bridge.frontend._images import image_parts
from bridge.frontend._progress import ProgressForwarder
from bridge.frontend._slot import BridgeSlot
from bridge.llm import ChatMessage
from bridge.messages import Chat, ChildServersMessage, JobsMessage, PlannerMessage, Progress, RegistryMessage, Request
from bridge.runtime import ActorRef
from bridge.settings import BridgeSettings

__all__ = ["Ctx", "Frontend", "wants_progress"]

R = TypeVar("R")
Ctx = Context[Any, Any]


def wants_progress(ctx: Ctx) -> bool:
    """Whether progress reports reach anyone: a token on legacy connections, a direct callback on modern ones."""
    request = ctx.request_context
    meta = request.meta
    if meta is not None and meta.get("progress_token") is not None:
        return True
    return str(getattr(request, "protocol_version", "")) >= "2026"


class Frontend:
    """What the tools share: the bridge's addresses, the call budget and the output limit.

    Every ask names the session (``Bridge.caller``) to the actors: a shared bridge serves sessions in turn.

    Caution: built by :func:`create_server`.
    """

    def __init__(
        self,
        slot: BridgeSlot,
        settings: BridgeSettings,
        *,
        output_limit: int,
        batch_dir: Path | None = None,
    ) -> None:
        self.slot = slot
        self.settings = settings
        self.limit = output_limit
        self.batch_dir = batch_dir or default_batch_dir()

    async def registry(self) -> ActorRef[RegistryMessage]:
        return (await self.slot.get()).registry

    async def children(self) -> ActorRef[ChildServersMessage] | None:
        return (await self.slot.get()).children

    async def image_roots(self) -> list[Path]:
        """Where image paths may be: the configured roots, else the session's working directory."""
        configured = self.settings.images.allowed_roots
        if configured:
            return [Path(await anyio.Path(root).expanduser()) for root in configured]
        return [Path((await self.slot.get()).working_dir)]

    async def with_images(self, message: Chat, images: Sequence[str]) -> Chat:
        """``message`` with ``images`` as image parts of its last (user) turn."""
        if not images:
            return message
        last = message.messages[-1]
        text = last.content if isinstance(last.content, str) else ""
        parts = [{"type": "text", "text": text}, *await self.image_parts(images)]
        turns = [*message.messages[:-1], ChatMessage(role=last.role, content=parts)]
        return msgspec.structs.replace(message, messages=turns)

    async def image_parts(self, images: Sequence[str]) -> list[dict[str, Any]]:
        """``images`` loaded and checked, as ``image_url`` parts."""
        return await image_parts(images, roots=await self.image_roots(), settings=self.settings.images)

    async def jobs(self) -> ActorRef[JobsMessage]:
        jobs = (await self.slot.get()).jobs
        if jobs is None:
            raise ActorUnavailableError("this bridge runs no jobs actor; restart it (lmstudio-bridge serve)")
        return jobs

    async def planner_route(self) -> str:
        """Where this session's planner is, for a job to ask it."""
        await self.planner()
        return (await self.slot.get()).planner_route

    async def planner(self) -> ActorRef[PlannerMessage]:
        planner = (await self.slot.get()).planner
        if planner is None:
            raise ActorUnavailableError(
                "autonomous runs need child MCP servers, and this bridge was started without them "
                "(--no-child-servers); restart it without that flag"
            )
        return planner

    async def ask(
        self,
        ctx: Ctx,
        ref: ActorRef[Any],
        message: Request[R],
        *,
        model: str | None = None,
        total: float | None = None,
        deadline: float | None = None,
        sink: Callable[[Progress], Awaitable[None]] | None = None,
    ) -> R:
        """Ask ``ref`` within the call budget, forwarding progress if the client wants it."""
        if sink is None and wants_progress(ctx):
            sink = ProgressForwarder(ctx.report_progress, model=model, total=total)
        budget = self.settings.call_budget
        timeout = budget if deadline is None else max(0.0, deadline - anyio.current_time())
        try:
            reply: R = await ref.ask(message, timeout=timeout, progress=sink, caller=self.slot.caller)
        except BridgeError as error:
            raise self.explain(error, type(message).__name__) from None
        return reply

    def explain(self, error: BridgeError, what: str) -> BridgeError:
        """The runtime's "did not answer within its deadline" is the call budget running out: say so.

        ``what``: the kind of work (the message's class name).
        """
        if error.code == ErrorCode.TIMEOUT and "actor" in error.details:
            budget = self.settings.call_budget
            return DeadlineExceededError(
                f"the call did not finish within its time budget of {budget:g} s (call_budget), so the bridge "
                f"stopped it ({what}) and freed the model's slot instead of letting the client cut it off. "
                "Ask for less output (max_tokens), use a faster or already loaded model, split the work, "
                "or raise call_budget (keep it below the client's tool timeout, about 60 s in Claude Code)",
                retryable=error.retryable,
                retry_after=error.retry_after,
                details={**error.details, "budget": "call", "call_budget_s": budget},
            )
        return error
