"""The bridge's tools: arguments → message → ask → format, one function each.

A tool is declared with :meth:`ToolSet.tool`: it turns its arguments
into one message, asks the right actor with the call's time budget and a
progress sink (when the client asked for progress), and formats the reply; a
:class:`~bridge.errors.BridgeError` it raises is its result. It has no logic
of its own beyond that: validation, routing, queueing, retries and time
budgets of the LLM calls live in the actors. The long tools (chats,
completions, batches, autonomous runs) ask the JobsActor, which runs their
work as a job the call waits for (``_jobs``).

Cancellation needs no code here: the MCP SDK cancels the tool's task when the
client sends ``notifications/cancelled``, the cancellation reaches
``ActorRef.ask``, and the ask abandons its envelope, which cancels the
handler; the JobsActor's handler cancels the job it waits for, whose own ask
is abandoned in turn, down to the LLM stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
import sniffio
from pydantic import Field

from bridge._diagnostics import task_count
from bridge.errors import BadRequestError
from bridge.frontend._args import (
    AUTONOMOUS,
    DESTRUCTIVE,
    MAX_RUN_ROUNDS,
    READ_ONLY,
    STATEFUL,
    Images,
    MaxTokens,
    RunAllow,
    RunBudget,
    RunDeny,
    RunModel,
    RunReasoning,
    RunRounds,
    RunTaskText,
    RunTokens,
    token_count,
)
from bridge.frontend._batch import BatchItem, batch_work, chat_messages, none_if_blank
from bridge.frontend._compat import register_compat_tools
from bridge.frontend._compat_runs import register_compat_runs
from bridge.frontend._format import (
    DEFAULT_OUTPUT_LIMIT,
    ToolOutput,
    children_output,
    current_model_output,
    embeddings_output,
    health_output,
    loaded_output,
    models_output,
    response_output,
    status_output,
    unloaded_output,
)
from bridge.frontend._frontend import Ctx, Frontend
from bridge.frontend._job_tools import Background, register_job_tools
from bridge.frontend._jobs import run_as_job
from bridge.frontend._mcp_server import BridgeMCPServer, ToolCatalog, ToolSet, parameter, with_signature
from bridge.frontend._slot import BridgeSlot
from bridge.llm import ResponseFormat
from bridge.messages import (
    Chat,
    CheckHealth,
    ChildServerList,
    Complete,
    Embed,
    GetStatus,
    ListChildServers,
    ListModels,
    LoadModel,
    ResolveModel,
    Respond,
    RunBatch,
    RunTask,
    UnloadModel,
)
from bridge.settings import BridgeSettings

if TYPE_CHECKING:
    from bridge.app import Bridge

__all__ = ["create_server"]

INSTRUCTIONS: Final = """\
Local LLMs served by LM Studio (or another OpenAI-compatible server) on this machine.
Use list_models to see what is available; every tool that runs a model takes an optional `model`
(omit it for the default model). batch_chat runs many prompts across one or many models at once.
The autonomous_* tools hand a whole task to a local model that uses other MCP servers' tools
(list_available_mcps). Images go to vision models with `images`.
Long work (long generations, big batches, autonomous runs) can take background: true and return a job_id
at once; fetch it with job_result. A call that runs out of time goes on as a job and says which.
Errors start with a code (model_not_found, busy, timeout, backend_unavailable, ...) and say what to do;
retryable ones say when to retry."""
COMPAT_INSTRUCTIONS: Final = (
    INSTRUCTIONS
    + "\nThe older LM Studio bridge's tool names (vision tools, lms_*, autonomous_*_full) are aliases of these."
)

# --------------------------------------------------------------------------- arguments


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


# --------------------------------------------------------------------------- the server


def create_server(
    bridge: Bridge | BridgeSlot,
    *,
    settings: BridgeSettings | None = None,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
    name: str = "lmstudio-bridge",
    batch_dir: Path | None = None,
    catalog: ToolCatalog | None = None,
) -> BridgeMCPServer:
    """The MCP server of a bridge. Serve it with :func:`bridge.frontend.serve_stdio`, or in-process
    with ``mcp.Client(server)`` in tests.

    Args:
        bridge: The running bridge (from :func:`bridge.app.open_bridge`), or a :class:`BridgeSlot`
            it will be put in once it runs.
        settings: The settings; required with a slot (default: the bridge's).
        output_limit: Characters allowed in each form of a tool result.
        name: The server name the client sees.
        batch_dir: Where a batch too big for one result keeps every answer (default:
            ``$XDG_STATE_HOME/lmstudio-bridge/batches``, else ``~/.local/state/lmstudio-bridge/batches``).
        catalog: What the SDK knows of each tool, shared by the servers that pass the same one (a shared
            bridge makes one server per session); default: built for this server alone.
    """
    import bridge as package

    if isinstance(bridge, BridgeSlot):
        if settings is None:
            raise TypeError("create_server(slot) needs settings=: the bridge is not there yet to ask for them")
        slot = bridge
    else:
        slot = BridgeSlot(bridge)
        settings = settings or bridge.settings
    instructions = COMPAT_INSTRUCTIONS if settings.tools == "compat" else INSTRUCTIONS
    frontend = Frontend(slot, settings, output_limit=output_limit, batch_dir=batch_dir)
    tools = ToolSet(catalog or ToolCatalog(), output_limit=output_limit)
    _register_llm_tools(tools, frontend)
    _register_child_tools(tools, frontend)
    _register_autonomous_tools(tools, frontend)
    register_job_tools(tools, frontend)
    if settings.tools == "compat":
        register_compat_tools(tools, frontend)
        register_compat_runs(tools, frontend)
    version = str(package.__version__)
    server = BridgeMCPServer(name, instructions=instructions, version=version, log_level="WARNING", tools=tools.tools)
    server.output_limit = output_limit
    return server


def _register_llm_tools(tools: ToolSet, frontend: Frontend) -> None:
    registry = frontend.registry
    limit = frontend.limit

    @tools.tool(annotations=READ_ONLY)
    async def health_check(ctx: Ctx) -> ToolOutput:
        """Check each configured LLM server now: reachable or not (and why), models listed and loaded, breaker
        state. Answers within a few seconds even when a server is down."""

        return health_output(await frontend.ask(ctx, await registry(), CheckHealth()), limit)

    @tools.tool(annotations=READ_ONLY)
    async def list_models(
        ctx: Ctx,
        model_type: Annotated[str | None, Field(description='Only models of this type: "llm" or "embedding".')] = None,
        loaded_only: Annotated[bool, Field(description="Only models loaded in memory now.")] = False,
        refresh: Annotated[bool, Field(description="List again instead of using the cached list (~10 s old).")] = False,
    ) -> ToolOutput:
        """List the models the LLM servers offer: id, type, loaded or not, context length, tool use, server."""

        message = ListModels(refresh=refresh, model_type=model_type, loaded_only=loaded_only)
        return models_output(await frontend.ask(ctx, await registry(), message), limit)

    @tools.tool(annotations=READ_ONLY)
    async def get_current_model(ctx: Ctx) -> ToolOutput:
        """The model used when a call names none (configured default, else the loaded one), without running it."""

        return current_model_output(await frontend.ask(ctx, await registry(), ResolveModel()), limit)

    @tools.tool(annotations=READ_ONLY)
    async def chat_completion(
        ctx: Ctx,
        prompt: Annotated[str, Field(description="The user message to send to the model.")],
        system_prompt: Annotated[str | None, Field(description="Optional system prompt.")] = None,
        model: Annotated[str | None, Field(description="Model id from list_models; omit for the default.")] = None,
        temperature: Annotated[float | None, Field(description="0 to 2; omit for the model's default.")] = None,
        max_tokens: MaxTokens = None,
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
        images: Images = None,
        background: Background = False,
    ) -> ToolOutput:
        """Ask a local model one question and get its answer, with model, token counts and speed.
        Pick the model per call; several calls run at once. `images` go to a vision model (list_models)."""

        message = Chat(
            model=model,
            messages=chat_messages(prompt, none_if_blank(system_prompt)),
            temperature=temperature,
            max_tokens=token_count(max_tokens),
            response_format=_response_format(response_format),
            include_reasoning=include_reasoning,
        )
        message = await frontend.with_images(message, images or [])
        return await run_as_job(
            frontend,
            ctx,
            tool="chat_completion",
            work=message,
            model=model,
            total=token_count(max_tokens),
            background=background,
            raw=response_format is not None,
        )

    @tools.tool(annotations=READ_ONLY)
    async def text_completion(
        ctx: Ctx,
        prompt: Annotated[str, Field(description="The text to continue (raw, no chat template).")],
        model: Annotated[str | None, Field(description="Model id; omit for the default.")] = None,
        temperature: Annotated[float | None, Field(description="0 to 2; omit for the model's default.")] = None,
        max_tokens: MaxTokens = None,
        stop_sequences: Annotated[list[str] | None, Field(description="Stop generating at any of these.")] = None,
        background: Background = False,
    ) -> ToolOutput:
        """Continue a piece of text with a local model (raw completion, no chat template)."""

        tokens = token_count(max_tokens)
        message = Complete(model=model, prompt=prompt, temperature=temperature, max_tokens=tokens, stop=stop_sequences)
        return await run_as_job(
            frontend, ctx, tool="text_completion", work=message, model=model, total=tokens, background=background
        )

    @tools.tool(annotations=READ_ONLY)
    async def generate_embeddings(
        ctx: Ctx,
        text: Annotated[str | list[str], Field(description="One text or a list of texts to embed.")],
        model: Annotated[str | None, Field(description="Embedding model id; omit for the default one.")] = None,
    ) -> ToolOutput:
        """Embedding vectors for one text or a list of texts, from a local embedding model."""

        texts = [text] if isinstance(text, str) else list(text)
        return embeddings_output(
            await frontend.ask(ctx, await registry(), Embed(model=model, input=texts), model=model), limit
        )

    @tools.tool(annotations=STATEFUL)
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
    ) -> ToolOutput:
        """A stateful conversation turn (LM Studio's /v1/responses): returns the answer and a response id to
        pass as previous_response_id next time, so the history stays on the server."""

        message = Respond(
            model=model,
            input=input,
            previous_response_id=none_if_blank(previous_response_id),
            instructions=none_if_blank(instructions),
            temperature=temperature,
            max_output_tokens=max_output_tokens,
            include_reasoning=include_reasoning,
        )
        result = await frontend.ask(ctx, await registry(), message, model=model, total=max_output_tokens)
        return response_output(result, limit)

    @tools.tool(annotations=READ_ONLY)
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
        max_tokens: MaxTokens = None,
        background: Background = False,
    ) -> ToolOutput:
        """Run many prompts across one or many models in one call, concurrently within each model's limits.
        Returns every item's answer or its own typed error: some may fail while the rest succeed."""

        work = batch_work(
            prompts,
            models,
            items,
            system_prompt=system_prompt,
            temperature=temperature,
            max_tokens=token_count(max_tokens),
        )
        batch = RunBatch(items=[await frontend.with_images(message, images) for images, message in work])
        return await run_as_job(frontend, ctx, tool="batch_chat", work=batch, background=background)

    @tools.tool(annotations=STATEFUL)
    async def load_model(
        ctx: Ctx,
        model: Annotated[str, Field(description="Model id to load.")],
        context_length: Annotated[int | None, Field(description="Context length to load it with.", gt=0)] = None,
        ttl: Annotated[int | None, Field(description="Unload after this many idle seconds.", gt=0)] = None,
    ) -> ToolOutput:
        """Load a model into memory ahead of use (LM Studio's native API), optionally with a context length and
        an idle time-to-live. Other servers answer with an `unsupported` error."""

        message = LoadModel(model=model, context_length=context_length, ttl=ttl)
        return loaded_output(await frontend.ask(ctx, await registry(), message, model=model))

    @tools.tool(annotations=DESTRUCTIVE)
    async def unload_model(ctx: Ctx, model: Annotated[str, Field(description="Model id to unload.")]) -> ToolOutput:
        """Unload a model from memory (LM Studio's native API); requests in flight on it fail."""

        return unloaded_output(await frontend.ask(ctx, await registry(), UnloadModel(model=model), model=model))

    @tools.tool(annotations=READ_ONLY)
    async def bridge_status(ctx: Ctx) -> ToolOutput:
        """Per model: slots busy, queue depth, completed/failed, latency and first-token percentiles, retries,
        breakers; per server: reachability. Use it to see why calls wait or fail."""

        status = await frontend.ask(ctx, await registry(), GetStatus())
        return status_output(status, limit, tasks=task_count(), event_loop=sniffio.current_async_library())

    del health_check, list_models, get_current_model, chat_completion, text_completion, generate_embeddings
    del create_response, batch_chat, load_model, unload_model, bridge_status


def _register_child_tools(tools: ToolSet, frontend: Frontend) -> None:
    limit = frontend.limit

    @tools.tool(annotations=READ_ONLY)
    async def list_available_mcps(ctx: Ctx) -> ToolOutput:
        """The MCP servers configured for the bridge (Claude Code's mcpServers files): state, tools, errors."""

        children = await frontend.children()
        if children is None:
            return children_output(None, limit)
        reply: ChildServerList = await frontend.ask(ctx, children, ListChildServers())
        return children_output(reply, limit)

    del list_available_mcps


async def _run_parameters(
    ctx: Ctx,
    task: RunTaskText,
    model: RunModel = None,
    max_rounds: RunRounds = 20,
    max_tokens: RunTokens = "auto",
    time_budget: RunBudget = None,
    allow_tools: RunAllow = None,
    deny_tools: RunDeny = None,
    include_reasoning: RunReasoning = False,
    background: Background = False,
    images: Images = None,
) -> ToolOutput:
    """The parameters the three autonomous tools share: their schema, written once and never called."""
    raise NotImplementedError


MCPName = Annotated[str, Field(description="The child MCP server whose tools the model may use.")]
MCPNames = Annotated[list[str], Field(description="The child MCP servers to use.", min_length=1)]


def _register_autonomous_tools(tools: ToolSet, frontend: Frontend) -> None:
    async def start(
        ctx: Ctx,
        tool: str,
        servers: list[str],
        *,
        task: str,
        model: str | None,
        max_rounds: int,
        max_tokens: int | str,
        time_budget: float | None,
        allow_tools: list[str] | None,
        deny_tools: list[str] | None,
        include_reasoning: bool,
        background: bool,
        images: list[str] | None,
    ) -> ToolOutput:
        if isinstance(max_tokens, str) and max_tokens.strip().lower() != "auto":
            raise BadRequestError(f'max_tokens must be a number of tokens or "auto", got {max_tokens!r}')
        message = RunTask(
            task=task,
            servers=servers,
            model=none_if_blank(model),
            max_rounds=min(max_rounds, MAX_RUN_ROUNDS),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            time_budget=time_budget,
            allow=allow_tools or [],
            deny=deny_tools or [],
            include_reasoning=include_reasoning,
            images=await frontend.image_parts(images or []),
        )
        route = await frontend.planner_route()
        return await run_as_job(frontend, ctx, tool=tool, work=message, route=route, model=model, background=background)

    def declare(tool: str, doc: str, servers: tuple[str, Any] | None) -> None:
        """A tool with the shared parameters and, after ``ctx``, the one that names its servers (if any)."""
        insert = [parameter(*servers)] if servers is not None else []

        @tools.tool(annotations=AUTONOMOUS)
        @with_signature(_run_parameters, tool, doc, insert=insert)
        async def run_on_servers(ctx: Ctx, **arguments: Any) -> ToolOutput:
            named = arguments.pop(servers[0]) if servers is not None else []
            return await start(ctx, tool, [named] if isinstance(named, str) else list(named), **arguments)

    declare(
        "autonomous_with_mcp",
        """Hand a task to a local model that works through it with the tools of one child MCP server (see
        list_available_mcps). Returns the answer, why it stopped, and a trace of every tool call.""",
        ("mcp_name", MCPName),
    )
    declare(
        "autonomous_with_multiple_mcps",
        "Like autonomous_with_mcp with several child servers; the model sees their tools as server__tool.",
        ("mcp_names", MCPNames),
    )
    declare(
        "autonomous_discover_and_execute",
        "Like autonomous_with_mcp with every enabled child server (never the bridge itself).",
        None,
    )
