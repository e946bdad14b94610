"""What a simulated LM Studio serves: models, server switches and fault rates.

Config objects are frozen msgspec structs, so the same classes load a JSON
config file (``--config FILE``) and are checked on construction. Runtime state
(loaded instances, queues) lives elsewhere; a config never changes while a
server runs.
"""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Literal

import msgspec

__all__ = [
    "FaultKind",
    "ReasoningMode",
    "SimConfig",
    "SimModel",
    "ToolStyle",
    "default_config",
    "load_config",
]

ReasoningMode = Literal["reasoning_content", "reasoning", "think"]
"""Where reasoning goes: ``delta.reasoning_content`` (LM Studio's "separate reasoning" setting), ``delta.reasoning``
(gpt-oss since 0.3.23), or inline ``<think>…</think>`` in ``content`` (the setting off)."""

ToolStyle = Literal["native", "text"]
"""``native``: OpenAI ``tool_calls``; ``text``: ``[TOOL_REQUEST]{…}[END_TOOL_REQUEST]`` left in ``content``."""


class FaultKind(enum.StrEnum):
    """The failures the simulator can inject, scripted (``Fault(kind)``) or at random (``SimConfig.fault_rates``)."""

    HTTP_500 = "http_500"
    """HTTP 500 with an OpenAI-style error object, before any work."""
    RATE_LIMIT = "rate_limit"
    """HTTP 429 with a ``Retry-After`` header, before any work."""
    ERROR_BODY = "error_body"
    """HTTP 200 whose JSON body is ``{"error": "…"}`` (how LM Studio answers bad routes), even for streams."""
    NO_ANSWER = "no_answer"
    """The request is read and never answered; the connection stays open until the client leaves."""
    DROP = "drop"
    """The connection is closed after ``after_tokens`` tokens (stream: no terminating chunk; non-stream: no reply)."""
    STALL = "stall"
    """Output stops for ``seconds`` (``None``: until the client leaves) after ``after_tokens`` tokens."""
    MODEL_UNLOADED = "model_unloaded"
    """"Model unloaded." after ``after_tokens`` tokens, as an eviction would (stream: error frame; non-stream: 400)."""
    CONTEXT_OVERFLOW = "context_overflow"
    """The context-overflow error, as if the prompt did not fit (stream: ``event: error`` in a 200 stream)."""
    MALFORMED_TOOL_CALL = "malformed_tool_call"
    """A native tool call whose ``arguments`` is not valid JSON (only on requests that carry ``tools``)."""
    INTERRUPT = "interrupt"
    """The stream is cut after ``after_tokens`` tokens: a role-only chunk, then ``[DONE]`` with no finish reason
    (llama-cpp-python's server with ``interrupt_requests`` on, when another request arrives). Not streamed: the
    text so far with ``finish_reason: null``."""
    EMPTY_TOOL_CALLS = "empty_tool_calls"
    """A plain reply carrying ``tool_calls: []`` (LM Studio 0.3.35's quirk, BT#1318)."""


class SimModel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One downloaded model of the simulated LM Studio.

    Timing: a request that got a slot waits ``ttft`` seconds, then emits one
    token (≈ one word) every ``1 / tokens_per_s`` seconds. For "exactly L seconds
    per request" set ``latency=L``: the whole reply then comes at once, L
    seconds after the request got its slot (queueing comes on top). Pair it with
    a small ``reply_tokens`` to keep the reply cheap.

    Args:
        id: The model key clients send as ``model`` (e.g. ``qwen/qwen3-coder-30b``).
        type: ``llm`` or ``embeddings``.
        parallel: Requests generated at once per loaded instance; more wait in a FIFO queue.
        ttft: Seconds from getting a slot to the first token (prompt processing).
        tokens_per_s: Output speed; ``0`` or ``inf`` emits all tokens at once after ``ttft``.
        latency: If set, overrides ``ttft`` and ``tokens_per_s``: the reply ends exactly this long after the slot.
        reply_tokens: Length of the default reply, in tokens.
        reasoning_tokens: Length of the default reasoning, for reasoning models.
        context_length: Context length an instance is loaded with (the overflow limit).
        max_context_length: Largest context length a load may ask for.
        loaded: Loaded at server start (a manual load: never auto-evicted).
        jit_load_delay: Seconds a load takes (JIT or ``/api/v1/models/load``).
        tool_use: Advertised as trained for tool use (``capabilities``).
        auto_tool_calls: Unscripted, with ``tools`` in the request, call the first tool (then answer after
            a ``tool`` message).
        tool_style: How unscripted tool calls are emitted.
        function_calling_format: llama-cpp-python's ``chat_format: "chatml-function-calling"``: the tools reach
            the prompt only when the request gives ``tool_choice`` (without it the model never calls one), and
            a streamed request with ``tool_choice`` is refused ("Automatic streaming tool choice is not
            supported": HTTP 500, or an empty stream, see ``SimConfig.streamed_tool_choice``); only a
            non-streamed request can call tools.
        reasoning: Reasoning mode, or ``None`` for a model that does not reason.
        vision: Takes image parts (LM Studio lists it as ``type: "vlm"`` in ``/api/v0/models`` and
            ``capabilities.vision`` in ``/api/v1/models``); a model without it refuses them as LM Studio does.
        embedding_dim: Vector size for embedding models.
        arch: Architecture name shown by the native API.
        quantization: Quantization name shown by the native API.
    """

    id: str
    type: Literal["llm", "embeddings"] = "llm"
    parallel: int = 4
    ttft: float = 0.0
    tokens_per_s: float = 0.0
    latency: float | None = None
    reply_tokens: int = 24
    reasoning_tokens: int = 8
    context_length: int = 4096
    max_context_length: int = 131072
    loaded: bool = False
    jit_load_delay: float = 0.0
    tool_use: bool = True
    vision: bool = False
    auto_tool_calls: bool = False
    tool_style: ToolStyle = "native"
    function_calling_format: bool = False
    reasoning: ReasoningMode | None = None
    embedding_dim: int = 768
    arch: str = "llama"
    quantization: str = "Q4_K_M"

    def __post_init__(self) -> None:
        if not self.id or any(c.isspace() for c in self.id):
            raise ValueError(f"SimModel.id must be a non-empty string without spaces, got {self.id!r}")
        if self.parallel < 1:
            raise ValueError(f"SimModel {self.id!r}: parallel must be >= 1, got {self.parallel}")
        for name in ("ttft", "tokens_per_s", "jit_load_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"SimModel {self.id!r}: {name} must be >= 0")
        if self.latency is not None and not (self.latency >= 0 and math.isfinite(self.latency)):
            raise ValueError(f"SimModel {self.id!r}: latency must be a finite number of seconds >= 0")
        if self.reply_tokens < 1 or self.reasoning_tokens < 0 or self.embedding_dim < 1:
            raise ValueError(f"SimModel {self.id!r}: reply_tokens and embedding_dim must be >= 1")
        if not 1 <= self.context_length <= self.max_context_length:
            raise ValueError(f"SimModel {self.id!r}: need 1 <= context_length <= max_context_length")

    @property
    def first_token_delay(self) -> float:
        """Seconds from slot to first token."""
        return self.latency if self.latency is not None else self.ttft

    @property
    def token_interval(self) -> float:
        """Seconds between tokens (0 when the reply comes at once)."""
        if self.latency is not None or self.tokens_per_s <= 0 or math.isinf(self.tokens_per_s):
            return 0.0
        return 1.0 / self.tokens_per_s


class SimConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole simulated server.

    Args:
        models: The downloaded models.
        host: Interface to listen on (loopback unless you mean otherwise).
        port: TCP port; ``0`` picks a free one (read it from ``SimServer.port``).
        jit: Load an unloaded model on its first request (LM Studio's default).
        auto_evict: A JIT load unloads every other JIT-loaded model, even mid-generation.
            Manually loaded models are never evicted.
        duplicate_jit_loads: Concurrent first requests each load their own instance (``key``, ``key:2`` …),
            as LM Studio's race does, instead of all waiting for one load.
        api_token: If set, requests need ``Authorization: Bearer <token>`` (else 401).
        basic_auth: ``"user:password"``: requests need ``Authorization: Basic …`` of it (else 401), as a reverse
            proxy in front of LM Studio asks. With ``api_token`` too, either header is accepted.
        empty_tool_calls: Every non-streamed plain reply carries ``tool_calls: []`` (BT#1318).
        fault_rates: Probability per request of each fault kind, drawn from a RNG seeded with ``seed``.
        fault_seconds: How long a random ``stall`` lasts (``None``: until the client leaves).
        fault_after_tokens: After how many tokens a random mid-stream fault fires.
        retry_after: Seconds sent in ``Retry-After`` by a random ``rate_limit``.
        seed: Seeds the fault RNG and the ids, so runs repeat.
        unresponsive: Accept connections but never read or answer them.
        request_log_size: Requests kept per model for ``SimServer.requests``.
        server_parallel: Requests generated at once by the whole server, all models together (``None``: only
            each model's ``parallel``). llama-cpp-python's server runs 1: one lock around every generation.
        interrupt_requests: With ``server_parallel``, a request that has to wait for the server cuts the oldest
            running generation (its stream ends with no finish reason), as llama-cpp-python does by default.
        listing_takes_turn: With ``server_parallel``, ``GET /v1/models`` takes one of the server's turns while it
            answers, as a generation does: it waits for a free turn and, with ``interrupt_requests``, cuts the
            oldest running stream. llama-cpp-python's listing takes the same lock as its generations.
        stream_usage: Honour ``stream_options.include_usage`` with a last usage chunk. ``False``: never send
            usage in a stream, as llama-cpp-python's server does.
        overflow_style: How a prompt over the context is refused. ``"lmstudio"``: ``event: error`` in a 200
            stream, a 400 string body unstreamed. ``"llama-cpp-python"``: an empty 200 stream (not a byte after
            the headers), and unstreamed a 400 with ``code: "context_length_exceeded"``.
        streamed_tool_choice: How a model with ``function_calling_format`` answers a streamed request with
            ``tool_choice``. ``"http_500"``: HTTP 500 "Automatic streaming tool choice is not supported", before
            any work. ``"empty_stream"``: as llama-cpp-python 0.3.36 does, the model decides first (a whole
            generation); when it calls a tool the stream ends empty (the same error, raised after the 200
            headers), when it answers in words (``tool_choice: "auto"``) the answer streams.
        close_after_empty_stream: After a stream that ended empty (``overflow_style="llama-cpp-python"``,
            ``streamed_tool_choice="empty_stream"``), close the connection instead of serving another request on
            it. llama-cpp-python's uvicorn closes it a moment after such a stream; the simulator does the worst
            case of that every time: the client's next request on the connection is read and never answered
            (the client sees the server disconnect without a response).
        close_kept_alive_every: Every Nth whole streamed chat or completion on one connection, close that
            connection once the client sends more, with the reply still saying ``Connection: keep-alive``; 0:
            never. llama.cpp's server (xllamacpp 0.2) does this: sent one after another on one connection, the
            3rd, 6th and 10th of 12 streamed requests got no answer at all (``3`` is close to what it does).
        api: ``"lmstudio"`` (LM Studio's routes, native API included); ``"openai"``: only the OpenAI routes under
            ``/v1`` and a plain ``/v1/models`` with no load state, anything else 404, as vLLM, llama-cpp-python
            and llama.cpp's server with one model answer; ``"llama.cpp"``: those and llama.cpp server's ``GET /props``
            (``total_slots`` = the first model's ``parallel``, as ``-np`` sets it), ``meta.n_ctx`` in ``/v1/models``,
            ``POST /apply-template`` (ChatML) and ``POST /tokenize`` (one token per 4 characters, the template's
            markers included); or ``"llama.cpp-router"``:
            llama.cpp's ``llama-server`` started without a model. That one has no LM Studio native API (404), lists each
            model's ``status`` (``{"value": "loaded" | "loading" | "unloaded"}``) in ``/v1/models`` and
            ``/models``, loads with ``POST /models/load {"model": id}`` (answered at once, then ``loading``),
            unloads with ``POST /models/unload``, and loads a model on its first request.
    """

    models: tuple[SimModel, ...] = ()
    host: str = "127.0.0.1"
    port: int = 0
    jit: bool = True
    auto_evict: bool = True
    duplicate_jit_loads: bool = False
    api_token: str | None = None
    basic_auth: str | None = None
    empty_tool_calls: bool = False
    fault_rates: dict[FaultKind, float] = msgspec.field(default_factory=dict)
    fault_seconds: float | None = 1.0
    fault_after_tokens: int = 2
    retry_after: float = 1.0
    seed: int = 0
    unresponsive: bool = False
    request_log_size: int = 1000
    server_parallel: int | None = None
    interrupt_requests: bool = False
    listing_takes_turn: bool = False
    stream_usage: bool = True
    overflow_style: Literal["lmstudio", "llama-cpp-python"] = "lmstudio"
    streamed_tool_choice: Literal["http_500", "empty_stream"] = "http_500"
    close_after_empty_stream: bool = False
    close_kept_alive_every: int = 0
    api: Literal["lmstudio", "openai", "llama.cpp", "llama.cpp-router"] = "lmstudio"

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for model in self.models:
            if model.id in seen:
                raise ValueError(f"SimConfig: model id {model.id!r} is listed twice")
            seen.add(model.id)
        for kind, rate in self.fault_rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"SimConfig: fault rate for {kind} must be within [0, 1], got {rate}")
        if sum(self.fault_rates.values()) > 1.0 + 1e-9:
            raise ValueError("SimConfig: fault rates add up to more than 1; at most one fault fires per request")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"SimConfig: port must be within 0..65535, got {self.port}")
        if self.server_parallel is not None and self.server_parallel < 1:
            raise ValueError(f"SimConfig: server_parallel must be >= 1 or None, got {self.server_parallel}")
        if min(self.fault_after_tokens, self.retry_after, self.request_log_size, self.close_kept_alive_every) < 0:
            raise ValueError(
                "SimConfig: fault_after_tokens, retry_after, request_log_size and close_kept_alive_every must be >= 0"
            )

    def model(self, model_id: str) -> SimModel:
        """The model with this id (``KeyError`` if none)."""
        for model in self.models:
            if model.id == model_id:
                return model
        raise KeyError(model_id)


def default_config(**overrides: object) -> SimConfig:
    """A small LM Studio: a coder model and an embedding model loaded at start, two more loaded just in time.

    ``qwen/qwen3-coder-30b`` (native tool calls) and ``text-embedding-nomic-embed-text-v1.5`` are loaded
    manually at start, so they are never evicted; ``google/gemma-3-12b`` (thinks inline in ``<think>``, calls
    tools as ``[TOOL_REQUEST]`` text) and ``openai/gpt-oss-20b`` (``reasoning`` field) JIT-load on first use and
    evict each other; ``qwen/qwen2.5-vl-7b`` takes images (a vision model) and JIT-loads too. All answer at
    once (no ttft, instant tokens). Keyword arguments override :class:`SimConfig` fields.
    """
    models = (
        SimModel(id="qwen/qwen3-coder-30b", loaded=True, arch="qwen3moe", context_length=8192),
        SimModel(id="google/gemma-3-12b", arch="gemma3", reasoning="think", tool_use=False, tool_style="text"),
        SimModel(id="openai/gpt-oss-20b", arch="gpt-oss", reasoning="reasoning", quantization="MXFP4"),
        SimModel(id="qwen/qwen2.5-vl-7b", arch="qwen2vl", vision=True, tool_use=False),
        SimModel(
            id="text-embedding-nomic-embed-text-v1.5",
            type="embeddings",
            loaded=True,
            arch="nomic-bert",
            tool_use=False,
            context_length=2048,
            max_context_length=2048,
        ),
    )
    base = SimConfig(models=models)
    return msgspec.structs.replace(base, **overrides) if overrides else base


def load_config(path: str | Path) -> SimConfig:
    """Read a :class:`SimConfig` from a JSON file (same field names; ``models`` is a list of objects)."""
    data = Path(path).read_bytes()
    try:
        return msgspec.json.decode(data, type=SimConfig)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{path}: invalid simulator config: {exc}") from exc
