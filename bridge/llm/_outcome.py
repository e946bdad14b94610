"""What a call returns: normalized results, the same whatever server answered."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from bridge.llm._params import ToolCall

__all__ = [
    "ChatOutcome",
    "CompletionOutcome",
    "EmbeddingsOutcome",
    "Generation",
    "LoadResult",
    "ModelInfo",
    "NativeModel",
    "ResponsesOutcome",
    "StreamProgress",
    "Usage",
]


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Token counts as the server reported them (``None`` when it did not)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    reasoning_tokens: int | None = None


class StreamProgress(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot handed to ``on_progress`` while a stream runs.

    Times are seconds since the request started. ``tokens`` counts the deltas
    that carried text or tool-call arguments (about one token each).
    """

    tokens: int
    elapsed: float
    time_to_first_token: float | None
    reasoning: bool = False
    tool_calls: int = 0
    model: str = ""
    text: str = ""
    """The answer's text so far (no reasoning), refreshed at most every ``TEXT_EVERY`` seconds: always a
    prefix of the final text, so a job can show it and a continuation can start from it."""


class Generation(msgspec.Struct, frozen=True, kw_only=True):
    """What every finished generation says of itself.

    ``tokens`` is ``usage.completion_tokens`` when the server sent usage, else the delta count. Times are
    seconds; ``time_to_first_token`` is ``None`` when nothing was generated.
    """

    usage: Usage | None = None
    model: str = ""
    id: str = ""
    tokens: int = 0
    time_to_first_token: float | None = None
    duration: float = 0.0
    streamed: bool = False


class ChatOutcome(Generation, frozen=True, kw_only=True):
    """A finished chat completion, streamed or not.

    ``reasoning`` gathers ``reasoning_content``, ``reasoning`` and inline
    ``<think>…</think>``; ``content`` never contains think tags.
    """

    content: str
    reasoning: str = ""
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)
    finish_reason: str | None = None
    server_stats: dict[str, Any] | None = None


class CompletionOutcome(Generation, frozen=True, kw_only=True):
    """A finished legacy text completion."""

    text: str
    finish_reason: str | None = None


class EmbeddingsOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """Vectors in input order."""

    vectors: list[list[float]]
    model: str = ""
    usage: Usage | None = None
    duration: float = 0.0


class ResponsesOutcome(Generation, frozen=True, kw_only=True):
    """A finished ``/v1/responses`` call; ``output`` keeps the raw items for anything not normalized."""

    content: str
    reasoning: str = ""
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)
    status: str | None = None
    output: list[dict[str, Any]] = msgspec.field(default_factory=list)


class ModelInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A model from ``/v1/models`` (any OpenAI-compatible server).

    ``context_length`` is known only where the server says (llama.cpp's
    ``meta.n_ctx``); ``max_context_length`` is the trained length when given.
    ``load_state`` is the server's own word where it reports one (llama.cpp's
    router: ``loaded``, ``loading``, ``unloaded``, ``sleeping`` …), else ``None``.
    """

    id: str
    owned_by: str | None = None
    context_length: int | None = None
    max_context_length: int | None = None
    capabilities: tuple[str, ...] = ()
    load_state: str | None = None

    @property
    def loaded(self) -> bool | None:
        """Whether the server says the model is loaded; ``None`` when it does not say."""
        return None if self.load_state is None else self.load_state == "loaded"


class DownloadStatus(msgspec.Struct, frozen=True, kw_only=True):
    """An LM Studio model download: ``status`` is downloading, paused, completed, failed or already_downloaded."""

    job_id: str | None = None
    status: str = "downloading"
    total_size_bytes: int | None = None
    downloaded_bytes: int | None = None

    @property
    def over(self) -> bool:
        return self.status in ("completed", "failed", "already_downloaded")


class ServerProps(msgspec.Struct, frozen=True, kw_only=True):
    """What llama.cpp's server says of itself (``GET /props``); ``None`` where it does not say."""

    total_slots: int | None = None
    """Requests it runs at once (its ``-np``)."""
    vision: bool | None = None
    """Its model takes images (``modalities.vision``: a projector is loaded)."""


class NativeModel(msgspec.Struct, frozen=True, kw_only=True):
    """A model from LM Studio's native API (``/api/v0/models`` or ``/api/v1/models``).

    ``context_length`` is the loaded context when the model is loaded (the real
    limit for prompts), else ``max_context_length``. ``instance_ids`` are what
    :meth:`LLMClient.unload_model` takes.
    """

    id: str
    type: Literal["llm", "embedding"]
    loaded: bool
    context_length: int | None = None
    max_context_length: int | None = None
    tool_use: bool = False
    vision: bool = False
    publisher: str | None = None
    quantization: str | None = None
    architecture: str | None = None
    format: str | None = None
    display_name: str | None = None
    instance_ids: tuple[str, ...] = ()
    api: Literal["v0", "v1"] = "v0"
    parallel: int | None = None
    """Requests the loaded instances run at once, together (v1 only: ``config.parallel``)."""


class LoadResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``POST /api/v1/models/load`` reported."""

    instance_id: str
    type: str | None = None
    status: str | None = None
    load_time_seconds: float | None = None
    load_config: dict[str, Any] | None = None
