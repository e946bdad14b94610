"""PlannerActor: autonomous runs in which a local model uses the tools of child MCP servers.

Each ``RunTask`` runs in its own task under its own cancel scope (the actor
runtime gives every request that), so runs are isolated: a run's trace holds only
its own calls and its own model. The planner owns no model or child state: it
asks the registry for chat completions and the child-server actor for tools and
tool calls, and keeps the conversation of each run in that run's task.
"""

from __future__ import annotations

import fnmatch
import logging
from typing import Any

import anyio
import msgspec

from bridge.errors import BadRequestError, BridgeError, ChildServerDownError, DeadlineExceededError
from bridge.llm import ChatMessage, FunctionCall, Tool, ToolCall
from bridge.messages import (
    WITHHELD_TOOLS_HOW,
    CallChildTool,
    Chat,
    ChatResult,
    ChildServersMessage,
    ChildToolResult,
    ListChildTools,
    PlannerMessage,
    Progress,
    RegistryMessage,
    ResolveModel,
    RunResult,
    RunSeries,
    RunTask,
    SeriesItem,
    SeriesResult,
    ToolCallRecord,
)
from bridge.planner import (
    LoopDetector,
    McpTool,
    ToolCatalog,
    build_catalog,
    cut_text,
    estimate_tokens,
    extract_tool_calls,
    parse_arguments,
    repeat_message,
    tool_result_budget,
    trim_messages,
    validate_arguments,
)
from bridge.runtime import Actor, ActorRef, RequestContext

__all__ = ["DEFAULT_SYSTEM_PROMPT", "PlannerActor"]

log = logging.getLogger("bridge.planner")

DEFAULT_SYSTEM_PROMPT = (
    "You are an autonomous assistant that completes the user's task by calling the tools you are given. "
    "Call a tool whenever it helps; you will see each result. When the task is done, reply with the final "
    "answer as plain text and call no more tools."
)
_DEFAULT_CONTEXT = 8192


class _Run:
    """The state of one run. Lives in the run's own task; never shared."""

    def __init__(self, task: RunTask, model: str, servers: list[str], withheld: list[str]) -> None:
        self.task = task
        self.model = model
        self.servers = servers
        self.withheld = withheld
        self.messages: list[dict[str, Any]] = []
        self.records: list[ToolCallRecord] = []
        self.rounds = 0
        self.answer = ""
        self.reasoning: list[str] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.tokens_estimated = False
        self.model_time = 0.0
        self.tool_time = 0.0
        self.started = anyio.current_time()
        self.deadline = float("inf")
        self.out_of_time = False

    def record(
        self,
        server: str,
        tool: str,
        arguments: Any,
        *,
        error: str | None = None,
        ok: bool | None = None,
        duration: float | None = None,
        size: int = 0,
    ) -> None:
        """Add one tool call of this round to the trace; ``ok`` defaults to "no error"."""
        self.records.append(
            ToolCallRecord(
                round=self.rounds,
                server=server,
                tool=tool,
                arguments=arguments,
                ok=error is None if ok is None else ok,
                duration_s=round(duration, 4) if duration is not None else 0.0,
                size=size,
                error=error,
            )
        )

    def result(self, stop_reason: str, error: BridgeError | None = None) -> RunResult:
        return RunResult(
            answer=self.answer,
            stop_reason=stop_reason,
            model=self.model,
            rounds=self.rounds,
            tool_calls=self.records,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            tokens_estimated=self.tokens_estimated,
            model_time_s=round(self.model_time, 4),
            tool_time_s=round(self.tool_time, 4),
            total_s=round(anyio.current_time() - self.started, 4),
            reasoning="\n".join(self.reasoning) if self.task.include_reasoning and self.reasoning else None,
            servers=self.servers,
            withheld_tools=self.withheld,
            error=error.to_info() if error is not None else None,
        )


class PlannerActor(Actor[PlannerMessage]):
    """Runs autonomous tasks; many at once, each in its own task.

    Args:
        registry: Where chat completions go.
        children: Where tool listings and tool calls go.
    """

    max_concurrent_requests = 256

    def __init__(self, registry: ActorRef[RegistryMessage], children: ActorRef[ChildServersMessage]) -> None:
        super().__init__()
        self.registry = registry
        self.children = children

    async def handle(self, message: PlannerMessage, ctx: RequestContext) -> object:
        match message:
            case RunTask():
                return await self._run(message, ctx)
            case RunSeries():
                return await self._series(message, ctx)

    async def _series(self, series: RunSeries, ctx: RequestContext) -> SeriesResult:
        started = anyio.current_time()
        items: list[SeriesItem] = []
        for task in series.tasks:
            try:
                items.append(SeriesItem(task=task.task, run=await self._run(task, ctx)))
            except BridgeError as error:
                items.append(SeriesItem(task=task.task, error=error.to_info()))
        return SeriesResult(items=items, elapsed_s=round(anyio.current_time() - started, 4))

    async def _run(self, task: RunTask, ctx: RequestContext) -> RunResult:
        if not task.task.strip():
            raise BadRequestError("the task is empty; say what the model should do")
        if task.max_rounds < 1:
            raise BadRequestError(f"max_rounds must be at least 1, got {task.max_rounds}")
        entry = await self.registry.ask(ResolveModel(model=task.model), timeout=max(0.1, ctx.remaining()))
        catalog, servers, withheld = await self._catalog(task, ctx)
        run = _Run(task, entry.id, servers, withheld)
        context = entry.context_length or _DEFAULT_CONTEXT
        result_budget = tool_result_budget(context)
        run.messages = [
            {"role": "system", "content": task.system_prompt or DEFAULT_SYSTEM_PROMPT},
            *task.examples,
            {
                "role": "user",
                "content": [{"type": "text", "text": task.task}, *task.images] if task.images else task.task,
            },
        ]
        tools = [msgspec.convert(t, Tool) for t in catalog.chat_tools()]
        # Stop a little before the caller's deadline, so the work so far can still be returned.
        budget = ctx.remaining() - 0.5
        if task.time_budget is not None:
            budget = min(budget, task.time_budget)
        loops = LoopDetector()
        stop = "max_rounds"
        run.deadline = anyio.current_time() + max(0.0, budget)
        with anyio.move_on_after(max(0.0, budget)) as scope:
            try:
                while run.rounds < task.max_rounds:
                    run.rounds += 1
                    reply = await self._ask_model(run, tools, context, ctx)
                    calls = self._calls_of(reply, catalog, run)
                    if not calls:
                        run.answer = reply.content.strip() or run.answer
                        stop = "final_answer"
                        break
                    looped = await self._run_calls(run, calls, catalog, loops, result_budget, ctx)
                    if run.out_of_time:
                        stop = "time_budget"
                        break
                    if looped:
                        stop = "loop"
                        break
            except BridgeError as error:
                log.info("run on %s stopped: %s", run.model, error)
                if not run.records:
                    raise  # nothing was done: the error is the call's result, with its code
                return run.result("error", error)
        if scope.cancelled_caught:
            stop = "time_budget"
        return run.result(stop)

    async def _catalog(self, task: RunTask, ctx: RequestContext) -> tuple[ToolCatalog, list[str], list[str]]:
        """The tools offered to the model, the servers, and the destructive tools withheld."""
        listing = await self.children.ask(ListChildTools(servers=task.servers), timeout=max(0.1, ctx.remaining()))
        by_server: dict[str, list[McpTool]] = {}
        withheld: list[str] = []
        for server in listing.servers:
            allowed: list[McpTool] = []
            for t in server.tools:
                if not _allowed(server.server, t.name, task.allow, task.deny):
                    continue
                if t.destructive and not server.allow_destructive and not _named(server.server, t.name, task.allow):
                    withheld.append(f"{server.server}__{t.name}")
                    continue
                allowed.append(McpTool(name=t.name, description=t.description, input_schema=t.input_schema))
            by_server[server.server] = allowed
        if withheld:
            log.info("run withholds destructive tools %s: %s", withheld, WITHHELD_TOOLS_HOW)
        if not any(by_server.values()):
            problems = "; ".join(f"{name}: {info.message}" for name, info in listing.errors.items())
            if withheld:
                problems = "; ".join(filter(None, [problems, f"withheld as destructive: {', '.join(withheld)}"]))
                problems += f" ({WITHHELD_TOOLS_HOW})"
            raise ChildServerDownError(
                "no tools are available for this run"
                + (f" ({problems})" if problems else " (the servers list none, or allow/deny filtered all)")
                + "; check list_available_mcps",
                retryable=bool(listing.errors),
                details={"servers": task.servers, "errors": list(listing.errors), "withheld_tools": withheld},
            )
        multi = len([s for s in by_server.values() if s]) > 1
        return build_catalog(by_server, namespace=multi), sorted(by_server), withheld

    async def _ask_model(self, run: _Run, tools: list[Tool], context: int, ctx: RequestContext) -> ChatResult:
        trimmed = trim_messages(run.messages, context, tools=[msgspec.to_builtins(t) for t in tools])
        run.messages = list(trimmed.messages)
        messages = [msgspec.convert(m, ChatMessage) for m in run.messages]
        started = anyio.current_time()
        try:
            reply = await self.registry.ask(
                Chat(
                    model=run.model,
                    messages=messages,
                    tools=tools,
                    max_tokens=run.task.max_tokens,
                    temperature=run.task.temperature,
                    include_reasoning=True,
                ),
                timeout=max(0.1, ctx.remaining()),
                caller=ctx.caller,  # a run's turns take the model's slots in its session's turn
            )
        finally:
            run.model_time += anyio.current_time() - started
        # Usage where the server sends it; else count (llama-cpp-python sends none in a stream).
        usage = reply.usage
        if usage is not None and usage.prompt_tokens:
            run.prompt_tokens += usage.prompt_tokens
        else:
            run.prompt_tokens += trimmed.tokens
            run.tokens_estimated = True
        if usage is not None and usage.completion_tokens is not None and (usage.completion_tokens or not reply.tokens):
            run.completion_tokens += usage.completion_tokens
        else:
            run.completion_tokens += reply.tokens or estimate_tokens(reply.content)
            run.tokens_estimated = True
        if reply.reasoning:
            run.reasoning.append(reply.reasoning)
        return reply

    def _calls_of(self, reply: ChatResult, catalog: ToolCatalog, run: _Run) -> list[tuple[str, str, Any]]:
        """(id, wire name, raw arguments) of the reply's tool calls: parsed by the server, or from the text."""
        calls: list[tuple[str, str, Any]] = []
        content = reply.content
        if reply.tool_calls:
            run.answer = content.strip() or run.answer  # words besides the calls, if any
            calls = [
                (c.id or f"call_{run.rounds}_{i}", c.function.name, c.function.arguments)
                for i, c in enumerate(reply.tool_calls)
            ]
        else:
            extraction = extract_tool_calls(content, catalog, id_prefix=f"r{run.rounds}")
            if extraction.calls:
                content = extraction.text
                run.answer = content.strip() or run.answer
                calls = [(c.id, c.name, c.arguments) for c in extraction.calls]
        if calls:
            run.messages.append(
                {
                    "role": "assistant",
                    "content": content or "",
                    "tool_calls": [
                        msgspec.to_builtins(
                            ToolCall(
                                id=call_id,
                                function=FunctionCall(
                                    name=name,
                                    arguments=arguments
                                    if isinstance(arguments, str)
                                    else msgspec.json.encode(arguments).decode(),
                                ),
                            )
                        )
                        for call_id, name, arguments in calls
                    ],
                }
            )
        return calls

    async def _run_calls(
        self,
        run: _Run,
        calls: list[tuple[str, str, Any]],
        catalog: ToolCatalog,
        loops: LoopDetector,
        result_budget: int,
        ctx: RequestContext,
    ) -> bool:
        """Run one round's calls concurrently (bounded); answer each in order. True if a loop was caught."""
        answers: dict[str, str] = {}
        looped = False
        limiter = anyio.CapacityLimiter(max(1, run.task.tool_concurrency))

        async def run_call(call_id: str, name: str, raw: Any) -> None:
            nonlocal looped
            tool = catalog.resolve(name)
            if tool is None:
                answers[call_id] = (
                    f"Error: there is no tool named `{name}`. Available tools: {', '.join(catalog.names)}."
                )
                run.record("", name, str(raw), error="unknown tool")
                return
            parsed = parse_arguments(raw)
            if not parsed.ok or not isinstance(parsed.value, dict):
                answers[call_id] = f"Error: {parsed.error or 'the arguments must be a JSON object'}"
                run.record(tool.server, tool.tool, str(raw), error=parsed.error or "invalid arguments")
                return
            checked = validate_arguments(parsed.value, tool.input_schema or {}, tool_name=tool.name)
            if not checked.ok:
                answers[call_id] = checked.message
                run.record(tool.server, tool.tool, parsed.value, error="arguments failed the tool's schema")
                return
            arguments = dict(checked.arguments)
            if loops.record(tool.name, arguments):
                looped = True
                answers[call_id] = repeat_message(tool.name, loops.count(tool.name, arguments))
                return
            if ctx.wants_progress:
                await ctx.report_progress(
                    Progress(
                        stage="round", progress=float(run.rounds), message=f"round {run.rounds}: calling {tool.name}"
                    )
                )
            started = anyio.current_time()
            async with limiter:
                try:
                    result = await self.children.ask(
                        CallChildTool(server=tool.server, tool=tool.tool, arguments=arguments),
                        timeout=max(0.1, ctx.remaining()),
                    )
                except BridgeError as error:
                    answers[call_id] = f"Error from tool `{tool.name}`: {error}"
                    duration = anyio.current_time() - started
                    run.record(tool.server, tool.tool, arguments, error=str(error), duration=duration)
                    if isinstance(error, DeadlineExceededError) and run.deadline - anyio.current_time() < 0.5:
                        run.out_of_time = True  # the tool ran into the run's own budget
                    return
            duration = anyio.current_time() - started
            text = _result_text(result)
            answers[call_id] = cut_text(text, result_budget)
            failure = text[:200] if result.is_error else None
            run.record(tool.server, tool.tool, arguments, error=failure, duration=duration, size=len(text))

        started = anyio.current_time()
        try:
            async with anyio.create_task_group() as tg:
                for call_id, name, raw in calls:
                    tg.start_soon(run_call, call_id, name, raw)
        finally:
            run.tool_time += anyio.current_time() - started
            for call_id, _, _ in calls:
                run.messages.append(
                    {"role": "tool", "tool_call_id": call_id, "content": answers.get(call_id, "Error: not run")}
                )
        return looped


def _result_text(result: ChildToolResult) -> str:
    text = result.text
    if not text and result.structured_content is not None:
        text = msgspec.json.encode(result.structured_content).decode()
    if result.is_error:
        return f"Error: {text or 'the tool reported an error without details'}"
    return text or "(the tool returned no content)"


def _allowed(server: str, tool: str, allow: list[str], deny: list[str]) -> bool:
    if _named(server, tool, deny):
        return False
    return not allow or _named(server, tool, allow)


def _named(server: str, tool: str, patterns: list[str]) -> bool:
    """Whether a pattern matches ``tool``, ``server__tool`` or ``server/tool``."""
    names = (tool, f"{server}__{tool}", f"{server}/{tool}")
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)
