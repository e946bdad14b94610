"""Every message the actors exchange.

Messages are frozen msgspec structs in tagged unions, one union per kind of
mailbox, so a ``match`` over a mailbox is exhaustive and every message can be
encoded for logs or tests. Live objects (reply slots, progress sinks, cancel
scopes) travel beside a message in its envelope, never inside it.

A :class:`Request` names its reply type (``Request[ChatResult]``), so
``ActorRef.ask`` is typed end to end. The bases come from the runtime.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from bridge.errors import ErrorInfo
from bridge.llm import ChatMessage, ResponseFormat, Tool, ToolCall, Usage
from bridge.runtime import Message, Reply, Request

__all__ = [
    "Message",
    "Request",
    "Reply",
    "Progress",
    "ModelEntry",
    "ModelServersChanged",
    "ServerSlots",
    "ServerState",
    "ModelList",
    "ChatResult",
    "CompletionResult",
    "EmbeddingResult",
    "ResponseResult",
    "LoadedModel",
    "UnloadedModel",
    "WorkerStats",
    "BridgeStatus",
    "ListModels",
    "ResolveModel",
    "Chat",
    "Complete",
    "Embed",
    "Respond",
    "LoadModel",
    "UnloadModel",
    "GetStatus",
    "CheckHealth",
    "GetWorkerStats",
    "HoldServerTurn",
    "GetGateStats",
    "GateStats",
    "ServerGateMessage",
    "ChildToolInfo",
    "ChildToolList",
    "ChildToolResult",
    "ChildServerInfo",
    "ChildServerList",
    "ChildToolCatalog",
    "ListTools",
    "CallTool",
    "DescribeSession",
    "ListChildServers",
    "ListChildTools",
    "CallChildTool",
    "ToolCallRecord",
    "RunResult",
    "RunTask",
    "RegistryMessage",
    "WorkerMessage",
    "SessionMessage",
    "ChildServersMessage",
    "PlannerMessage",
    "RunBatch",
    "BatchItemResult",
    "BatchResult",
    "JobWork",
    "JobState",
    "JobView",
    "JobList",
    "SubmitJob",
    "GetJob",
    "AwaitJob",
    "CancelJob",
    "ListJobs",
    "AwaitSessionJobs",
    "JobsMessage",
]


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """A progress report from a handler to whoever asked.

    ``stage`` is one of ``queued`` (``position`` set), ``started`` (a slot is taken),
    ``loading``, ``first_token``, ``generating`` (``tokens`` and ``text`` set), ``round``
    (planner), or ``tool``. ``text`` is the answer so far, for jobs; clients are sent counts.
    """

    stage: str
    message: str = ""
    progress: float = 0.0
    total: float | None = None
    position: int | None = None
    tokens: int | None = None
    text: str | None = None
    model: str | None = None


# ---------------------------------------------------------------------------
# The LLM path: ModelRegistryActor's mailbox (it routes the inference messages
# on to the LLMWorkerActor of the resolved model, whose mailbox is WorkerMessage).
# ---------------------------------------------------------------------------


class ServerSlots(Reply, frozen=True, kw_only=True):
    """How many requests a model runs at once on one server, and where that number came from.

    ``source``: ``servers.slots`` or ``models.slots`` (configuration, which wins), ``server``
    (the server said: LM Studio's ``parallel``, llama.cpp's ``total_slots``), ``default``
    (``default_limits.slots``: the server does not say).
    """

    server: str
    slots: int
    source: Literal["servers.slots", "models.slots", "server", "default"]


class ModelEntry(Reply, frozen=True, kw_only=True):
    """One model as the registry knows it. ``None`` means the server did not say."""

    id: str
    type: str = "llm"
    loaded: bool | None = None
    load_state: str | None = None
    """The server's own word where it has one besides loaded / not (llama.cpp's router: ``loading``, ``sleeping``)."""
    context_length: int | None = None
    max_context_length: int | None = None
    tool_use: bool | None = None
    vision: bool | None = None
    """Takes images, where the server says (LM Studio's native API, llama.cpp's /props); ``None``: it does not say."""
    server: str = ""
    servers: list[str] = msgspec.field(default_factory=list)
    publisher: str | None = None
    quantization: str | None = None
    reported_slots: dict[str, int] = msgspec.field(default_factory=dict)
    """What each server said it runs at once (by server name), where it says."""
    capacity: list[ServerSlots] = msgspec.field(default_factory=list)
    """The slots the bridge uses on each server, with their source (filled in by the registry)."""
    sources: dict[str, str] = msgspec.field(default_factory=dict)
    """Where ``context_length``, ``tool_use`` and ``vision`` came from, for those that are known."""


class ServerState(Reply, frozen=True, kw_only=True):
    """What the bridge knows of one configured LLM server."""

    name: str
    url: str
    reachable: bool | None = None
    lmstudio_native_api: bool | None = None
    models: int = 0
    loaded: list[str] | None = msgspec.field(default_factory=list)
    """The loaded models; ``None`` when the server does not report load state (plain OpenAI-style servers)."""
    breaker: str = "closed"
    listing_age_s: float | None = None
    last_error: ErrorInfo | None = None
    max_concurrent: int | None = None
    """The server-wide limit (``servers[].max_concurrent``), ``None`` when only per-model slots apply."""
    in_flight: int | None = None
    queued: int | None = None


class ModelList(Reply, frozen=True, kw_only=True):
    models: list[ModelEntry]
    servers: list[ServerState]


class ChatResult(Reply, frozen=True, kw_only=True):
    model: str
    content: str
    reasoning: str | None = None
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    server: str = ""
    time_to_first_token_s: float | None = None
    duration_s: float = 0.0
    queued_s: float = 0.0
    tokens: int = 0
    tokens_per_second: float | None = None
    retries: int = 0


class CompletionResult(Reply, frozen=True, kw_only=True):
    model: str
    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    server: str = ""
    time_to_first_token_s: float | None = None
    duration_s: float = 0.0
    queued_s: float = 0.0
    tokens: int = 0
    tokens_per_second: float | None = None
    retries: int = 0


class EmbeddingResult(Reply, frozen=True, kw_only=True):
    model: str
    vectors: list[list[float]]
    dimensions: int
    usage: Usage | None = None
    server: str = ""
    duration_s: float = 0.0


class ResponseResult(Reply, frozen=True, kw_only=True):
    id: str
    model: str
    content: str
    reasoning: str | None = None
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)
    status: str | None = None
    usage: Usage | None = None
    server: str = ""
    time_to_first_token_s: float | None = None
    duration_s: float = 0.0
    retries: int = 0


class LoadedModel(Reply, frozen=True, kw_only=True):
    model: str
    server: str
    instance_id: str
    load_time_s: float | None = None


class UnloadedModel(Reply, frozen=True, kw_only=True):
    model: str
    server: str
    instance_ids: list[str]


class DownloadedModel(Reply, frozen=True, kw_only=True):
    """A model download on an LM Studio server: ``status`` downloading, paused, completed, failed or
    already_downloaded."""

    model: str
    server: str
    status: str
    job_id: str | None = None
    total_size_bytes: int | None = None
    downloaded_bytes: int | None = None


class CallerLoad(msgspec.Struct, frozen=True, kw_only=True):
    """One caller's (a shared bridge's session's) requests at one model: holding a slot, and waiting."""

    in_flight: int = 0
    queued: int = 0


class WorkerStats(Reply, frozen=True, kw_only=True):
    """Per-model figures kept by that model's LLMWorkerActor; ``callers``: those with requests there now."""

    model: str
    servers: list[str]
    slots: int
    queue_limit: int
    queued: int
    in_flight: int
    completed: int
    failed: int
    busy_rejections: int
    retries: int
    latency_p50_s: float | None = None
    latency_p90_s: float | None = None
    latency_p99_s: float | None = None
    ttft_p50_s: float | None = None
    tokens_per_second_p50: float | None = None
    breakers: dict[str, str] = msgspec.field(default_factory=dict)
    restarts: int = 0
    callers: dict[str, CallerLoad] = msgspec.field(default_factory=dict)
    capacity: list[ServerSlots] = msgspec.field(default_factory=list)


class BridgeStatus(Reply, frozen=True, kw_only=True):
    models: list[WorkerStats]
    servers: list[ServerState]


class ListModels(Request[ModelList], frozen=True, kw_only=True):
    """List models; ``refresh`` forces a new listing instead of the cache."""

    refresh: bool = False
    model_type: str | None = None
    loaded_only: bool = False


class ResolveModel(Request[ModelEntry], frozen=True, kw_only=True):
    """Validate a model id (``None``/``"default"``: the default model) without running an inference."""

    model: str | None = None


class Chat(Request[ChatResult], frozen=True, kw_only=True):
    """A chat completion. ``model`` None or "default" means the default model."""

    model: str | None = None
    messages: list[ChatMessage]
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: str | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    ttl: int | None = None
    seed: int | None = None
    include_reasoning: bool = False
    wait_for_slot: bool = False
    """Queue past the model's queue bound instead of being refused as ``busy`` (batch items)."""


class Complete(Request[CompletionResult], frozen=True, kw_only=True):
    """A raw text completion (no chat template)."""

    model: str | None = None
    prompt: str
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    ttl: int | None = None
    seed: int | None = None


class Embed(Request[EmbeddingResult], frozen=True, kw_only=True):
    model: str | None = None
    input: list[str]


class Respond(Request[ResponseResult], frozen=True, kw_only=True):
    """A stateful ``/v1/responses`` call (LM Studio); ``previous_response_id`` continues a conversation."""

    model: str | None = None
    input: str
    previous_response_id: str | None = None
    instructions: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    reasoning_effort: str | None = None
    include_reasoning: bool = False


class LoadModel(Request[LoadedModel], frozen=True, kw_only=True):
    model: str
    context_length: int | None = None
    ttl: int | None = None


class UnloadModel(Request[UnloadedModel], frozen=True, kw_only=True):
    model: str


class DownloadModel(Request[DownloadedModel], frozen=True, kw_only=True):
    """Download ``model`` (a catalog id or a Hugging Face URL) on the first LM Studio server; with ``wait``,
    reply once it is over or the asker's time is nearly up, whichever is first."""

    model: str
    quantization: str | None = None
    wait: bool = False


class GetStatus(Request[BridgeStatus], frozen=True, kw_only=True):
    """Per-model queue/latency figures and per-server reachability."""


class CheckHealth(Request[ModelList], frozen=True, kw_only=True):
    """Probe every server now (with a short budget) and report; never waits long on a dead one."""


class GetWorkerStats(Request[WorkerStats], frozen=True, kw_only=True):
    pass


class ModelServersChanged(Request[None], frozen=True, kw_only=True):
    """The registry's newer word on a model's servers and their slots: the worker follows it."""

    model: ModelEntry


RegistryMessage = (
    ListModels
    | ResolveModel
    | Chat
    | Complete
    | Embed
    | Respond
    | LoadModel
    | UnloadModel
    | DownloadModel
    | GetStatus
    | CheckHealth
)
WorkerMessage = Chat | Complete | Embed | Respond | GetWorkerStats | ModelServersChanged


# ---------------------------------------------------------------------------
# A server-wide limit: ServerGateActor's mailbox, one per server with ``max_concurrent``.
# ---------------------------------------------------------------------------


class GateStats(Reply, frozen=True, kw_only=True):
    server: str
    max_concurrent: int
    in_flight: int
    queued: int
    granted: int


class HoldServerTurn(Request[None], frozen=True, kw_only=True):
    """Wait for one of the server's turns and hold it for as long as this ask stays open.

    The grant is a ``Progress(stage="server_turn")`` report; the ask never returns a value.
    The asker ends its turn by leaving the ask (its scope ends or is cancelled), so a turn
    cannot outlive its holder, whatever happens to it (OTP's monitor, in structured form).
    """

    model: str


class GetGateStats(Request[GateStats], frozen=True, kw_only=True):
    pass


ServerGateMessage = HoldServerTurn | GetGateStats


# ---------------------------------------------------------------------------
# Child MCP servers: MCPSessionActor's mailbox (SessionMessage) and the
# ChildServersActor that owns the configuration and routes to sessions.
# ---------------------------------------------------------------------------


class ChildToolInfo(Reply, frozen=True, kw_only=True):
    """One tool of a child. ``destructive``: the child marks it ``destructiveHint: true`` (and not read-only)."""

    server: str
    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    destructive: bool = False


class ChildToolList(Reply, frozen=True, kw_only=True):
    """A child's tools; ``allow_destructive``: its definition lets runs use the destructive ones."""

    server: str
    tools: list[ChildToolInfo]
    allow_destructive: bool = False


class ChildToolResult(Reply, frozen=True, kw_only=True):
    """A tool's answer. ``is_error`` results are answers too (the tool said no), not exceptions."""

    server: str
    tool: str
    is_error: bool
    text: str
    content: list[dict[str, Any]] = msgspec.field(default_factory=list)
    structured_content: dict[str, Any] | None = None
    duration_s: float = 0.0


class ChildServerInfo(Reply, frozen=True, kw_only=True):
    """One row of ``list_available_mcps``.

    ``state``: not_started, starting, ready, restarting, failed, disabled, skipped or
    needs_approval (a project server the user has not approved; ``note`` says how).
    """

    name: str
    transport: str
    source: str
    state: str
    tool_count: int | None = None
    last_error: str | None = None
    restarts: int = 0
    pid: int | None = None
    note: str | None = None


class ChildServerList(Reply, frozen=True, kw_only=True):
    servers: list[ChildServerInfo]
    errors: list[str] = msgspec.field(default_factory=list)


class ChildToolCatalog(Reply, frozen=True, kw_only=True):
    servers: list[ChildToolList]
    errors: dict[str, ErrorInfo] = msgspec.field(default_factory=dict)


class ListTools(Request[ChildToolList], frozen=True, kw_only=True):
    refresh: bool = False


class CallTool(Request[ChildToolResult], frozen=True, kw_only=True):
    tool: str
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)
    timeout: float | None = None


class DescribeSession(Request[ChildServerInfo], frozen=True, kw_only=True):
    pass


class GetSessionConfig(Request[Any], frozen=True, kw_only=True):
    """The session's :class:`~bridge.children.ServerConfig` (internal: never shown, it holds ``env``)."""


SessionMessage = ListTools | CallTool | DescribeSession | GetSessionConfig


class ListChildServers(Request[ChildServerList], frozen=True, kw_only=True):
    pass


class ListChildTools(Request[ChildToolCatalog], frozen=True, kw_only=True):
    """Tools of the named servers (all enabled ones when empty); starts sessions lazily."""

    servers: list[str] = msgspec.field(default_factory=list)


class CallChildTool(Request[ChildToolResult], frozen=True, kw_only=True):
    server: str
    tool: str
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)
    timeout: float | None = None


class StartChildServer(Request[str], frozen=True, kw_only=True):
    """A standard child server for this session (the compat tools' filesystem, memory, fetch, github): the
    name of a configured one that runs ``package`` (and, for a filesystem server, lists every one of ``roots``),
    else of one started now from ``command`` and ``args``, under the same supervision and trust rules as any
    child; it runs until the session ends. ``env`` and ``env_passthrough``: the few variables it needs (a token)."""

    name: str
    package: str
    command: str
    args: list[str]
    roots: list[str] = msgspec.field(default_factory=list)
    env: dict[str, str] = msgspec.field(default_factory=dict)
    env_passthrough: list[str] = msgspec.field(default_factory=list)


ChildServersMessage = ListChildServers | ListChildTools | CallChildTool | StartChildServer


# ---------------------------------------------------------------------------
# Autonomous runs: the PlannerActor's mailbox.
# ---------------------------------------------------------------------------


class ToolCallRecord(Reply, frozen=True, kw_only=True):
    """One tool call of a run, as it happened."""

    round: int
    server: str
    tool: str
    arguments: dict[str, Any] | str
    ok: bool
    duration_s: float = 0.0
    size: int = 0
    error: str | None = None


WITHHELD_TOOLS_HOW: Final = (
    'to offer them, name them in allow_tools, or set "allow_destructive": true on the server in its mcpServers file'
)
"""How to let a run use the destructive tools it withheld: said in the trace and in errors."""


class RunResult(Reply, frozen=True, kw_only=True):
    """The outcome of an autonomous run; every stop returns the work so far.

    ``stop_reason``: final_answer, max_rounds, time_budget, loop, or error.
    """

    answer: str
    stop_reason: str
    model: str
    rounds: int
    tool_calls: list[ToolCallRecord] = msgspec.field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_estimated: bool = False
    """Some of the token counts are the bridge's estimate: the server did not report usage."""
    model_time_s: float = 0.0
    tool_time_s: float = 0.0
    total_s: float = 0.0
    reasoning: str | None = None
    servers: list[str] = msgspec.field(default_factory=list)
    withheld_tools: list[str] = msgspec.field(default_factory=list)
    """``server__tool`` of the destructive tools not offered to the model (see ``RunTask``)."""
    error: ErrorInfo | None = None


class RunTask(Request[RunResult], frozen=True, kw_only=True):
    """Work through ``task`` with the tools of ``servers`` (all enabled child servers when empty).

    ``allow``/``deny`` are shell-style patterns matched against ``tool`` and ``server__tool``.
    Tools a child marks destructive are withheld unless ``allow`` names them or the server's
    definition has ``allow_destructive``. ``examples`` are OpenAI-format messages placed between
    the system prompt and the task: a few worked tool calls make small local models far more
    reliable at calling tools. ``images`` are ``image_url`` parts (loaded and checked by the front
    end) that go with the task, for a vision model.
    """

    task: str
    images: list[dict[str, Any]] = msgspec.field(default_factory=list)
    servers: list[str] = msgspec.field(default_factory=list)
    model: str | None = None
    max_rounds: int = 20
    max_tokens: int | None = None
    time_budget: float | None = None
    allow: list[str] = msgspec.field(default_factory=list)
    deny: list[str] = msgspec.field(default_factory=list)
    include_reasoning: bool = False
    temperature: float | None = None
    system_prompt: str | None = None
    examples: list[dict[str, Any]] = msgspec.field(default_factory=list)
    tool_concurrency: int = 4


class SeriesItem(Reply, frozen=True, kw_only=True):
    """One task of a series: its run, or the error that kept it from running."""

    task: str
    run: RunResult | None = None
    error: ErrorInfo | None = None


class SeriesResult(Reply, frozen=True, kw_only=True):
    items: list[SeriesItem]
    elapsed_s: float = 0.0


class RunSeries(Request[SeriesResult], frozen=True, kw_only=True):
    """Several autonomous tasks one after another, in one job: each sees what the ones before it left
    (files, a memory graph). A task that fails is reported in its place and the next one runs."""

    tasks: list[RunTask]


PlannerMessage = RunTask | RunSeries


# ---------------------------------------------------------------------------
# Jobs: JobsActor's mailbox. A job is one of the long requests above, run by the
# JobsActor on behalf of a call that may end before it does.
# ---------------------------------------------------------------------------


class RunBatch(Request["BatchResult"], frozen=True, kw_only=True):
    """Many chats at once, each waiting its model's turn; one answer or typed error per item.

    Not a mailbox message: the work of a ``batch_chat`` job, which the JobsActor runs itself.
    """

    items: list[Chat]


class BatchItemResult(Reply, frozen=True, kw_only=True):
    index: int
    model: str | None = None
    result: ChatResult | None = None
    error: ErrorInfo | None = None


class BatchResult(Reply, frozen=True, kw_only=True):
    items: list[BatchItemResult]
    elapsed_s: float = 0.0


JobWork = Chat | Complete | RunTask | RunSeries | RunBatch
JobState = Literal["queued", "running", "done", "failed", "cancelled"]


class JobView(Reply, frozen=True, kw_only=True):
    """A job as a caller sees it: its state, progress so far, and once finished its outcome.

    Exactly one of ``chat``, ``completion``, ``run``, ``series``, ``batch`` or ``error`` is set once it
    finished (``error`` also for a cancelled one). ``raw``: the chat asked for structured output.
    """

    job_id: str
    tool: str
    state: JobState
    model: str | None = None
    position: int | None = None
    elapsed_s: float = 0.0
    tokens: int = 0
    rounds: int = 0
    items_done: int = 0
    items_total: int = 0
    partial_text: str = ""
    trace: list[str] = msgspec.field(default_factory=list)
    expires_in_s: float | None = None
    raw: bool = False
    chat: ChatResult | None = None
    completion: CompletionResult | None = None
    run: RunResult | None = None
    series: SeriesResult | None = None
    batch: BatchResult | None = None
    error: ErrorInfo | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")


class JobList(Reply, frozen=True, kw_only=True):
    jobs: list[JobView]
    active: int = 0
    kept: int = 0
    kept_bytes: int = 0


class SubmitJob(Request[JobView], frozen=True, kw_only=True):
    """Run ``work`` as a job; reply once it finished or ``wait`` seconds passed, whichever is first.

    ``route``: the path of the actor that serves ``work`` under the root supervisor (``registry``,
    ``planner``, ``<session>/planner``). ``wait`` ``None``: background, reply at once. ``detach``:
    when the wait ends first, the job keeps running (``on_budget = "job"``); otherwise it is
    cancelled. A job whose caller waited for it to finish is not kept.
    """

    tool: str
    work: JobWork
    route: str = "registry"
    model: str | None = None
    wait: float | None = None
    detach: bool = True
    time_budget: float | None = None
    raw: bool = False


class GetJob(Request[JobView], frozen=True, kw_only=True):
    job_id: str


class AwaitJob(Request[JobView], frozen=True, kw_only=True):
    """The job once it finished, or as it is after ``wait`` seconds."""

    job_id: str
    wait: float = 0.0


class CancelJob(Request[JobView], frozen=True, kw_only=True):
    job_id: str


class ListJobs(Request[JobList], frozen=True, kw_only=True):
    pass


class AwaitSessionJobs(Request[int], frozen=True, kw_only=True):
    """Reply once no job uses the actors of ``session`` (its planner): when the session may stop them;
    ``None``: once every job running now has ended (when an idle shared bridge may exit).

    The reply is how many jobs were waited for.
    """

    session: str | None = None


JobsMessage = SubmitJob | GetJob | AwaitJob | CancelJob | ListJobs | AwaitSessionJobs
