"""The MCP server: one ``async`` tool per message, over the running bridge's actors.

A tool turns its arguments into one message, asks the right actor with the
call's time budget and a progress sink (when the client asked for progress),
and formats the reply or the :class:`~bridge.errors.BridgeError` it got. It
has no logic of its own beyond that: validation, routing, queueing, retries
and time budgets of the LLM calls live in the actors.

Cancellation needs no code here: the MCP SDK cancels the tool's task when the
client sends ``notifications/cancelled``, the cancellation reaches
``ActorRef.ask``, and the ask abandons its envelope, which cancels the
handler and closes the LLM stream.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import anyio
import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as SDKToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge._diagnostics import task_count
from bridge.errors import (
    ActorUnavailableError,
    BadRequestError,
    BridgeError,
    DeadlineExceededError,
    ErrorCode,
    InternalError,
)
from bridge.frontend._batch_file import default_batch_dir, write_batch_results
from bridge.frontend._format import (
    DEFAULT_OUTPUT_LIMIT,
    BatchOutcome,
    ToolOutput,
    batch_fits,
    batch_output,
    batch_rows,
    chat_output,
    children_output,
    completion_output,
    current_model_output,
    embeddings_output,
    error_output,
    health_output,
    loaded_output,
    models_output,
    response_output,
    run_output,
    status_output,
    unloaded_output,
)
from bridge.frontend._progress import ProgressForwarder, describe
from bridge.llm import ChatMessage, ResponseFormat
from bridge.messages import (
    Chat,
    CheckHealth,
    ChildServerList,
    ChildServersMessage,
    Complete,
    Embed,
    GetStatus,
    ListChildServers,
    ListModels,
    LoadModel,
    Message,
    PlannerMessage,
    Progress,
    RegistryMessage,
    Request,
    ResolveModel,
    Respond,
    RunTask,
    UnloadModel,
)
from bridge.runtime import ActorRef
from bridge.settings import BridgeSettings

if TYPE_CHECKING:
    from bridge.app import Bridge

__all__ = ["MAX_BATCH_ITEMS", "BatchItem", "BridgeMCPServer", "BridgeSlot", "create_server"]

log = logging.getLogger("bridge.frontend")

R = TypeVar("R")
Ctx = Context[Any, Any]

MAX_BATCH_ITEMS: Final = 1000
"""Items one ``batch_chat`` call may carry: enough for a large fan-out, bounded so one call cannot queue
unbounded work (each item still waits its turn within its model's limits and the call's budget)."""

INSTRUCTIONS: Final = """\
Local LLMs served by LM Studio (or another OpenAI-compatible server) on this machine.
Use list_models to see what is available; every tool that runs a model takes an optional `model`
(omit it for the default model). batch_chat runs many prompts across one or many models at once.
Errors start with a code (model_not_found, busy, timeout, backend_unavailable, ...) and say what to do;
retryable ones say when to retry."""

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
"""Status and listing tools, and inference: they change nothing a caller could see afterwards."""
STATEFUL = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)


class BatchItem(BaseModel):
    """One prompt of a batch; unset fields come from the call's own arguments."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="The user message.")
    model: str | None = Field(default=None, description="Model id; default: the call's models or the default model.")
    system_prompt: str | None = Field(default=None, description="System prompt for this item.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)


_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def tool_description(docstring: str) -> str:
    """A docstring as one line per paragraph: no source indentation, no wraps inside a sentence."""
    paragraphs = inspect.cleandoc(docstring).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines() if line.strip()) for p in paragraphs)


class BridgeMCPServer(MCPServer[Any]):
    """``MCPServer`` whose every tool failure is a typed tool result, never a traceback or bare string.

    Arguments that fail the input schema become ``bad_request`` results; an unknown tool
    name too; anything unexpected (a bug) becomes an ``internal`` result and is logged.
    """

    output_limit: int = DEFAULT_OUTPUT_LIMIT

    def tool(  # type: ignore[override]  # the same decorator, with the description taken from a clean docstring
        self, *, annotations: ToolAnnotations | None = None, description: str | None = None
    ) -> Callable[[_Fn], _Fn]:
        """Register a tool whose description is its docstring as a client should show it.

        The SDK passes a docstring on as written, source indentation and line wraps included;
        clients show that to the model verbatim.
        """

        def register(fn: _Fn) -> _Fn:
            text = description if description is not None else tool_description(fn.__doc__ or "")
            return super(BridgeMCPServer, self).tool(annotations=annotations, description=text)(fn)

        return register

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except SDKToolError as exc:
            cause = exc.__cause__
            error: BridgeError
            if isinstance(cause, ValidationError):
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in cause.errors()
                )
                error = BadRequestError(
                    f"invalid arguments for {name}: {problems}. Fix them and call again",
                    details={"tool": name},
                )
            elif self._tool_manager.get_tool(name) is None:
                known = ", ".join(t.name for t in self._tool_manager.list_tools())
                error = BadRequestError(f"there is no tool {name!r}; the tools are {known}", details={"tool": name})
            elif isinstance(cause, BridgeError):
                error = cause
            else:
                log.exception("tool %s failed unexpectedly", name)
                error = InternalError(
                    f"the bridge failed while running {name} ({type(cause or exc).__name__}); this is a bug in "
                    "lmstudio-bridge. The bridge keeps running; retry, and report it if it happens again",
                    details={"tool": name},
                )
            return to_result(error_output(error, self.output_limit))


def to_result(output: ToolOutput) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=output.text)],
        structured_content=output.structured,
        is_error=output.is_error,
    )


def _wants_progress(ctx: Ctx) -> bool:
    """Whether progress reports reach anyone: a token on legacy connections, a direct callback on modern ones."""
    request = ctx.request_context
    meta = request.meta
    if meta is not None and meta.get("progress_token") is not None:
        return True
    return str(getattr(request, "protocol_version", "")) >= "2026"


class BridgeSlot:
    """Where the tools find the running bridge, which may start after the server does.

    ``serve_stdio`` answers ``initialize`` before the actor system is up; a tool called
    before then waits here for it. :meth:`wanted` tells the opener that someone waits.
    """

    def __init__(self, bridge: Bridge | None = None) -> None:
        self._bridge = bridge
        self._error: BaseException | None = None
        self._ready: anyio.Event | None = None
        self._wanted: anyio.Event | None = None

    def _events(self) -> tuple[anyio.Event, anyio.Event]:
        if self._ready is None or self._wanted is None:
            self._ready, self._wanted = anyio.Event(), anyio.Event()
        return self._ready, self._wanted

    def set(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._events()[0].set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._events()[0].set()

    async def wanted(self) -> None:
        """Return once a tool waits for the bridge."""
        await self._events()[1].wait()

    async def get(self) -> Bridge:
        if self._bridge is not None:
            return self._bridge
        ready, wanted = self._events()
        wanted.set()
        await ready.wait()
        if self._bridge is None:
            raise ActorUnavailableError(
                f"the bridge failed to start ({self._error!r}); see its log on stderr, fix the cause and restart it",
            )
        return self._bridge


class Frontend:
    """What the tools share: the bridge's addresses, the call budget and the output limit.

    Caution: built by :func:`create_server`.
    """

    def __init__(
        self, slot: BridgeSlot, settings: BridgeSettings, *, output_limit: int, batch_dir: Path | None = None
    ) -> None:
        self.slot = slot
        self.settings = settings
        self.limit = output_limit
        self.batch_dir = batch_dir or default_batch_dir()

    async def registry(self) -> ActorRef[RegistryMessage]:
        return (await self.slot.get()).registry

    async def children(self) -> ActorRef[ChildServersMessage] | None:
        return (await self.slot.get()).children

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
        if sink is None and _wants_progress(ctx):
            sink = ProgressForwarder(ctx.report_progress, model=model, total=total)
        budget = self.settings.call_budget
        timeout = budget if deadline is None else max(0.0, deadline - anyio.current_time())
        try:
            reply: R = await ref.ask(message, timeout=timeout, progress=sink)
        except BridgeError as error:
            raise self.explain(error, message) from None
        return reply

    def explain(self, error: BridgeError, message: Message) -> BridgeError:
        """The runtime's "did not answer within its deadline" is the call budget running out: say so."""
        if error.code == ErrorCode.TIMEOUT and "actor" in error.details:
            budget = self.settings.call_budget
            what = type(message).__name__
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

    async def run(self, produce: Callable[[], Awaitable[ToolOutput]]) -> CallToolResult:
        try:
            output = await produce()
        except BridgeError as error:
            output = error_output(error, self.limit)
        return to_result(output)

    # --- batch -----------------------------------------------------------------------------------
    async def batch(self, ctx: Ctx, items: Sequence[tuple[str | None, Chat]]) -> ToolOutput:
        started = anyio.current_time()
        deadline = started + self.settings.call_budget
        registry = await self.registry()
        outcomes = [BatchOutcome(index=i, model=model) for i, (model, _) in enumerate(items)]
        forwarder = ProgressForwarder(ctx.report_progress, total=None) if _wants_progress(ctx) else None
        done = 0

        async def one(outcome: BatchOutcome, message: Chat) -> None:
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
                outcome.result = await self.ask(ctx, registry, patient, deadline=deadline, sink=sink)
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
                tg.start_soon(one, outcome, message)
        elapsed = anyio.current_time() - started
        if batch_fits(outcomes, elapsed, self.limit):
            return batch_output(outcomes, elapsed, self.limit)
        try:
            path = await write_batch_results(batch_rows(outcomes), self.batch_dir)
        except OSError as exc:
            log.warning("could not keep the full batch results in %s: %s", self.batch_dir, exc)
            return batch_output(outcomes, elapsed, self.limit)
        return batch_output(outcomes, elapsed, self.limit, results_file=str(path))


# --------------------------------------------------------------------------- arguments


def _messages(prompt: str, system_prompt: str | None) -> list[ChatMessage]:
    messages = []
    if system_prompt:
        messages.append(ChatMessage(role="system", content=system_prompt))
    messages.append(ChatMessage(role="user", content=prompt))
    return messages


def _response_format(value: dict[str, Any] | None) -> ResponseFormat | None:
    """A bare JSON schema, or the OpenAI form ``{"type": "json_schema", "json_schema": {"name", "schema"}}``."""
    if not value:
        return None
    kind = value.get("type")
    if kind == "json_object":
        raise BadRequestError(
            "response_format json_object is rejected by LM Studio; pass a JSON schema instead "
            '(e.g. {"type": "object", "properties": {...}, "required": [...]})'
        )
    if kind == "text" and len(value) == 1:
        return ResponseFormat(type="text")
    if kind == "json_schema":
        try:
            return msgspec.convert(value, ResponseFormat)
        except msgspec.ValidationError as exc:
            raise BadRequestError(
                f"response_format is not a valid json_schema format ({exc}); pass "
                '{"type": "json_schema", "json_schema": {"name": "answer", "schema": {...}}} or the bare schema'
            ) from None
    return ResponseFormat.from_schema(value)


def _none_if_blank(value: str | None) -> str | None:
    return value if value and value.strip() else None


# --------------------------------------------------------------------------- the server


def create_server(
    bridge: Bridge | BridgeSlot,
    *,
    settings: BridgeSettings | None = None,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
    name: str = "lmstudio-bridge",
    batch_dir: Path | None = None,
) -> BridgeMCPServer:
    """The MCP server of a bridge. Serve it with :func:`bridge.frontend.serve_stdio`, or in-process
    with ``mcp.Client(server)`` in tests.

    Args:
        bridge: The running bridge (from :func:`bridge.app.open_bridge`), or a :class:`BridgeSlot`
            it will be put in once it runs.
        settings: The settings; required with a slot (default: the bridge's).
        output_limit: Characters allowed in each form of a tool result.
        name: The server name the client sees.
        batch_dir: Where a batch too big for one result keeps every answer (default: a
            ``lmstudio-bridge/batches`` folder in the system's temporary directory).
    """
    import bridge as package

    if isinstance(bridge, BridgeSlot):
        if settings is None:
            raise TypeError("create_server(slot) needs settings=: the bridge is not there yet to ask for them")
        slot = bridge
    else:
        slot = BridgeSlot(bridge)
        settings = settings or bridge.settings
    server = BridgeMCPServer(name, instructions=INSTRUCTIONS, version=str(package.__version__), log_level="WARNING")
    server.output_limit = output_limit
    fe = Frontend(slot, settings, output_limit=output_limit, batch_dir=batch_dir)
    _register_llm_tools(server, fe)
    _register_child_tools(server, fe)
    _register_autonomous_tools(server, fe)
    return server


def _register_llm_tools(server: BridgeMCPServer, fe: Frontend) -> None:
    registry = fe.registry
    limit = fe.limit

    @server.tool(annotations=READ_ONLY)
    async def health_check(ctx: Ctx) -> CallToolResult:
        """Check each configured LLM server now: reachable or not (and why), models listed and loaded, breaker
        state. Answers within a few seconds even when a server is down."""

        async def go() -> ToolOutput:
            return health_output(await fe.ask(ctx, await registry(), CheckHealth()), limit)

        return await fe.run(go)

    @server.tool(annotations=READ_ONLY)
    async def list_models(
        ctx: Ctx,
        model_type: Annotated[str | None, Field(description='Only models of this type: "llm" or "embedding".')] = None,
        loaded_only: Annotated[bool, Field(description="Only models loaded in memory now.")] = False,
        refresh: Annotated[bool, Field(description="List again instead of using the cached list (~10 s old).")] = False,
    ) -> CallToolResult:
        """List the models the LLM servers offer: id, type, loaded or not, context length, tool use, server."""

        async def go() -> ToolOutput:
            message = ListModels(refresh=refresh, model_type=model_type, loaded_only=loaded_only)
            return models_output(await fe.ask(ctx, await registry(), message), limit)

        return await fe.run(go)

    @server.tool(annotations=READ_ONLY)
    async def get_current_model(ctx: Ctx) -> CallToolResult:
        """The model used when a call names none (configured default, else the loaded one), without running it."""

        async def go() -> ToolOutput:
            return current_model_output(await fe.ask(ctx, await registry(), ResolveModel()), limit)

        return await fe.run(go)

    @server.tool(annotations=READ_ONLY)
    async def chat_completion(
        ctx: Ctx,
        prompt: Annotated[str, Field(description="The user message to send to the model.")],
        system_prompt: Annotated[str | None, Field(description="Optional system prompt.")] = None,
        model: Annotated[str | None, Field(description="Model id from list_models; omit for the default.")] = None,
        temperature: Annotated[float | None, Field(description="0 to 2; omit for the model's default.")] = None,
        max_tokens: Annotated[int | None, Field(description="Most tokens to generate; omit for the default.")] = None,
        response_format: Annotated[
            dict[str, Any] | None,
            Field(
                description="A JSON schema the answer must follow (structured output), bare or as "
                '{"type": "json_schema", "json_schema": {"name": ..., "schema": ...}}.'
            ),
        ] = None,
        include_reasoning: Annotated[
            bool, Field(description="Also return the model's reasoning (thinking models).")
        ] = False,
    ) -> CallToolResult:
        """Ask a local model one question and get its answer, with model, token counts and speed.
        Pick the model per call; several calls run at once."""

        async def go() -> ToolOutput:
            message = Chat(
                model=model,
                messages=_messages(prompt, _none_if_blank(system_prompt)),
                temperature=temperature,
                max_tokens=max_tokens,
                response_format=_response_format(response_format),
                include_reasoning=include_reasoning,
            )
            result = await fe.ask(ctx, await registry(), message, model=model, total=max_tokens)
            return chat_output(result, raw=response_format is not None, limit=limit)

        return await fe.run(go)

    @server.tool(annotations=READ_ONLY)
    async def text_completion(
        ctx: Ctx,
        prompt: Annotated[str, Field(description="The text to continue (raw, no chat template).")],
        model: Annotated[str | None, Field(description="Model id; omit for the default.")] = None,
        temperature: Annotated[float | None, Field(description="0 to 2; omit for the model's default.")] = None,
        max_tokens: Annotated[int | None, Field(description="Most tokens to generate.")] = None,
        stop_sequences: Annotated[list[str] | None, Field(description="Stop generating at any of these.")] = None,
    ) -> CallToolResult:
        """Continue a piece of text with a local model (raw completion, no chat template)."""

        async def go() -> ToolOutput:
            message = Complete(
                model=model, prompt=prompt, temperature=temperature, max_tokens=max_tokens, stop=stop_sequences
            )
            return completion_output(await fe.ask(ctx, await registry(), message, model=model, total=max_tokens), limit)

        return await fe.run(go)

    @server.tool(annotations=READ_ONLY)
    async def generate_embeddings(
        ctx: Ctx,
        text: Annotated[str | list[str], Field(description="One text or a list of texts to embed.")],
        model: Annotated[str | None, Field(description="Embedding model id; omit for the default one.")] = None,
    ) -> CallToolResult:
        """Embedding vectors for one text or a list of texts, from a local embedding model."""

        async def go() -> ToolOutput:
            texts = [text] if isinstance(text, str) else list(text)
            return embeddings_output(
                await fe.ask(ctx, await registry(), Embed(model=model, input=texts), model=model), limit
            )

        return await fe.run(go)

    @server.tool(annotations=STATEFUL)
    async def create_response(
        ctx: Ctx,
        input: Annotated[str, Field(description="The user input.")],
        previous_response_id: Annotated[
            str | None, Field(description="Continue the conversation of this earlier response id.")
        ] = None,
        model: Annotated[str | None, Field(description="Model id; omit for the default.")] = None,
        instructions: Annotated[str | None, Field(description="System-level instructions.")] = None,
        temperature: Annotated[float | None, Field(description="0 to 2.")] = None,
        max_output_tokens: Annotated[int | None, Field(description="Most tokens to generate.")] = None,
        include_reasoning: Annotated[bool, Field(description="Also return the model's reasoning.")] = False,
    ) -> CallToolResult:
        """A stateful conversation turn (LM Studio's /v1/responses): returns the answer and a response id to
        pass as previous_response_id next time, so the history stays on the server."""

        async def go() -> ToolOutput:
            message = Respond(
                model=model,
                input=input,
                previous_response_id=_none_if_blank(previous_response_id),
                instructions=_none_if_blank(instructions),
                temperature=temperature,
                max_output_tokens=max_output_tokens,
                include_reasoning=include_reasoning,
            )
            result = await fe.ask(ctx, await registry(), message, model=model, total=max_output_tokens)
            return response_output(result, limit)

        return await fe.run(go)

    @server.tool(annotations=READ_ONLY)
    async def batch_chat(
        ctx: Ctx,
        prompts: Annotated[
            list[str] | None, Field(description="Prompts to run; each runs on every model in `models`.")
        ] = None,
        models: Annotated[
            list[str] | None, Field(description="Models to run every prompt on; omit for the default model.")
        ] = None,
        items: Annotated[
            list[BatchItem] | None, Field(description="Individual items, each with its own prompt and model.")
        ] = None,
        system_prompt: Annotated[str | None, Field(description="System prompt for every item.")] = None,
        temperature: Annotated[float | None, Field(description="0 to 2, for every item.")] = None,
        max_tokens: Annotated[int | None, Field(description="Most tokens per answer.")] = None,
    ) -> CallToolResult:
        """Run many prompts across one or many models in one call, concurrently within each model's limits.
        Returns every item's answer or its own typed error: some may fail while the rest succeed."""

        async def go() -> ToolOutput:
            work: list[tuple[str | None, Chat]] = []
            for item in items or []:
                work.append(
                    (
                        item.model,
                        Chat(
                            model=item.model,
                            messages=_messages(item.prompt, _none_if_blank(item.system_prompt or system_prompt)),
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
                                messages=_messages(prompt, _none_if_blank(system_prompt)),
                                temperature=temperature,
                                max_tokens=max_tokens,
                            ),
                        )
                    )
            if not work:
                raise BadRequestError(
                    "nothing to run: pass prompts (each runs on every model in models) or items "
                    "([{prompt, model}, ...])"
                )
            if len(work) > MAX_BATCH_ITEMS:
                raise BadRequestError(
                    f"{len(work)} items is more than one batch takes ({MAX_BATCH_ITEMS}); split it into several calls",
                    details={"items": len(work), "max_items": MAX_BATCH_ITEMS},
                )
            return await fe.batch(ctx, work)

        return await fe.run(go)

    @server.tool(annotations=STATEFUL)
    async def load_model(
        ctx: Ctx,
        model: Annotated[str, Field(description="Model id to load.")],
        context_length: Annotated[int | None, Field(description="Context length to load it with.", gt=0)] = None,
        ttl: Annotated[int | None, Field(description="Unload after this many idle seconds.", gt=0)] = None,
    ) -> CallToolResult:
        """Load a model into memory ahead of use (LM Studio's native API), optionally with a context length and
        an idle time-to-live. Other servers answer with an `unsupported` error."""

        async def go() -> ToolOutput:
            message = LoadModel(model=model, context_length=context_length, ttl=ttl)
            return loaded_output(await fe.ask(ctx, await registry(), message, model=model))

        return await fe.run(go)

    @server.tool(annotations=DESTRUCTIVE)
    async def unload_model(ctx: Ctx, model: Annotated[str, Field(description="Model id to unload.")]) -> CallToolResult:
        """Unload a model from memory (LM Studio's native API); requests in flight on it fail."""

        async def go() -> ToolOutput:
            return unloaded_output(await fe.ask(ctx, await registry(), UnloadModel(model=model), model=model))

        return await fe.run(go)

    @server.tool(annotations=READ_ONLY)
    async def bridge_status(ctx: Ctx) -> CallToolResult:
        """Per model: slots busy, queue depth, completed/failed, latency and first-token percentiles, retries,
        breakers; per server: reachability. Use it to see why calls wait or fail."""

        async def go() -> ToolOutput:
            return status_output(await fe.ask(ctx, await registry(), GetStatus()), limit, tasks=task_count())

        return await fe.run(go)

    del health_check, list_models, get_current_model, chat_completion, text_completion, generate_embeddings
    del create_response, batch_chat, load_model, unload_model, bridge_status


def _register_child_tools(server: BridgeMCPServer, fe: Frontend) -> None:
    limit = fe.limit

    @server.tool(annotations=READ_ONLY)
    async def list_available_mcps(ctx: Ctx) -> CallToolResult:
        """The MCP servers configured for the bridge (Claude Code's mcpServers files): state, tools, errors."""

        async def go() -> ToolOutput:
            children = await fe.children()
            if children is None:
                return children_output(None, limit)
            reply: ChildServerList = await fe.ask(ctx, children, ListChildServers())
            return children_output(reply, limit)

        return await fe.run(go)

    del list_available_mcps


RunTaskText = Annotated[str, Field(description="What the local model should do, in plain words.")]
RunModel = Annotated[str | None, Field(description="Model id; omit for the default model.")]
RunRounds = Annotated[int, Field(description="Most model turns (each may call tools).", ge=1, le=100)]
RunTokens = Annotated[int | str, Field(description='Most tokens per model turn, or "auto".')]
RunBudget = Annotated[float | None, Field(description="Seconds the run may take (default: the call budget).", gt=0)]
RunAllow = Annotated[list[str] | None, Field(description="Only tools matching these patterns (tool or server__tool).")]
RunDeny = Annotated[list[str] | None, Field(description="Never tools matching these patterns.")]
RunReasoning = Annotated[bool, Field(description="Include the model's reasoning in the result.")]


AUTONOMOUS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True)
"""A local model calls other servers' tools: anything those tools do can happen."""


def _register_autonomous_tools(server: BridgeMCPServer, fe: Frontend) -> None:
    limit = fe.limit

    async def start(
        ctx: Ctx,
        task: str,
        servers: list[str],
        model: str | None,
        max_rounds: int,
        max_tokens: int | str,
        time_budget: float | None,
        allow_tools: list[str] | None,
        deny_tools: list[str] | None,
        include_reasoning: bool,
    ) -> CallToolResult:
        async def go() -> ToolOutput:
            if isinstance(max_tokens, str) and max_tokens.strip().lower() != "auto":
                raise BadRequestError(f'max_tokens must be a number of tokens or "auto", got {max_tokens!r}')
            message = RunTask(
                task=task,
                servers=servers,
                model=_none_if_blank(model),
                max_rounds=max_rounds,
                max_tokens=max_tokens if isinstance(max_tokens, int) else None,
                time_budget=time_budget,
                allow=allow_tools or [],
                deny=deny_tools or [],
                include_reasoning=include_reasoning,
            )
            return run_output(await fe.ask(ctx, await fe.planner(), message, model=model), limit)

        return await fe.run(go)

    @server.tool(annotations=AUTONOMOUS)
    async def autonomous_with_mcp(
        ctx: Ctx,
        mcp_name: Annotated[str, Field(description="The child MCP server whose tools the model may use.")],
        task: RunTaskText,
        model: RunModel = None,
        max_rounds: RunRounds = 20,
        max_tokens: RunTokens = "auto",
        time_budget: RunBudget = None,
        allow_tools: RunAllow = None,
        deny_tools: RunDeny = None,
        include_reasoning: RunReasoning = False,
    ) -> CallToolResult:
        """Hand a task to a local model that works through it with the tools of one child MCP server (see
        list_available_mcps). Returns the answer, why it stopped, and a trace of every tool call."""
        return await start(
            ctx,
            task,
            [mcp_name],
            model,
            max_rounds,
            max_tokens,
            time_budget,
            allow_tools,
            deny_tools,
            include_reasoning,
        )

    @server.tool(annotations=AUTONOMOUS)
    async def autonomous_with_multiple_mcps(
        ctx: Ctx,
        mcp_names: Annotated[list[str], Field(description="The child MCP servers to use.", min_length=1)],
        task: RunTaskText,
        model: RunModel = None,
        max_rounds: RunRounds = 20,
        max_tokens: RunTokens = "auto",
        time_budget: RunBudget = None,
        allow_tools: RunAllow = None,
        deny_tools: RunDeny = None,
        include_reasoning: RunReasoning = False,
    ) -> CallToolResult:
        """Like autonomous_with_mcp with several child servers; the model sees their tools as server__tool."""
        return await start(
            ctx,
            task,
            list(mcp_names),
            model,
            max_rounds,
            max_tokens,
            time_budget,
            allow_tools,
            deny_tools,
            include_reasoning,
        )

    @server.tool(annotations=AUTONOMOUS)
    async def autonomous_discover_and_execute(
        ctx: Ctx,
        task: RunTaskText,
        model: RunModel = None,
        max_rounds: RunRounds = 20,
        max_tokens: RunTokens = "auto",
        time_budget: RunBudget = None,
        allow_tools: RunAllow = None,
        deny_tools: RunDeny = None,
        include_reasoning: RunReasoning = False,
    ) -> CallToolResult:
        """Like autonomous_with_mcp with every enabled child server (never the bridge itself)."""
        return await start(
            ctx, task, [], model, max_rounds, max_tokens, time_budget, allow_tools, deny_tools, include_reasoning
        )

    del autonomous_with_mcp, autonomous_with_multiple_mcps, autonomous_discover_and_execute
