"""What OpenAI-compatible servers send back, as tolerant msgspec structs.

Every field has a default and unknown fields are ignored, because the servers
we talk to disagree: LM Studio sends ``tool_calls: []`` and ``stats: {}`` and
omits ``created``, llama.cpp adds ``timings`` and ``meta``, gpt-oss on LM Studio
says ``reasoning`` where others say ``reasoning_content``. Fields whose shape
varies between servers are typed ``Any`` and read by the parsers.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ChatChoice",
    "ChatCompletion",
    "ChatDelta",
    "EmbeddingItem",
    "EmbeddingList",
    "LoadResponse",
    "ModelEntry",
    "ModelList",
    "NativeV0Entry",
    "NativeV0List",
    "NativeV1Entry",
    "NativeV1Instance",
    "NativeV1List",
    "OllamaEntry",
    "ResponseObject",
    "ResponsesEvent",
    "WireFunction",
    "WireToolCall",
    "WireUsage",
]


class _Wire(msgspec.Struct, kw_only=True):
    """Base: decoding only, never sent."""


class WireFunction(_Wire):
    name: str | None = None
    # Some servers send the arguments as an object instead of a JSON string.
    arguments: str | dict[str, Any] | None = None


class WireToolCall(_Wire):
    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: WireFunction | None = None


class ChatDelta(_Wire):
    """A streamed ``delta`` or a whole ``message``: the same fields, all optional."""

    role: str | None = None
    content: str | list[Any] | None = None
    reasoning_content: str | None = None
    # gpt-oss on LM Studio; some proxies send an object here, which we ignore.
    reasoning: str | dict[str, Any] | None = None
    tool_calls: list[WireToolCall] | None = None


class _TokenDetails(_Wire):
    reasoning_tokens: int | None = None


class WireUsage(_Wire):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    completion_tokens_details: _TokenDetails | None = None
    # /v1/responses names them differently.
    input_tokens: int | None = None
    output_tokens: int | None = None
    output_tokens_details: _TokenDetails | None = None


class ChatChoice(_Wire):
    index: int = 0
    message: ChatDelta | None = None
    delta: ChatDelta | None = None
    text: str | None = None
    finish_reason: str | None = None


class ChatCompletion(_Wire):
    """A chat or text completion, whole or as one stream chunk.

    ``error`` and ``message`` are set when a server reports a failure in a
    body or chunk that otherwise looks like success (LM Studio does both).
    """

    id: str = ""
    model: str = ""
    choices: list[ChatChoice] = msgspec.field(default_factory=list)
    usage: WireUsage | None = None
    stats: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    error: Any = None
    message: Any = None


class EmbeddingItem(_Wire):
    index: int = 0
    # A base64 string when encoding_format="base64".
    embedding: list[float] | str = msgspec.field(default_factory=list)


class EmbeddingList(_Wire):
    data: list[EmbeddingItem] = msgspec.field(default_factory=list)
    model: str = ""
    usage: WireUsage | None = None


class ResponseObject(_Wire):
    """A ``/v1/responses`` response; ``output`` items vary by type and are read by hand."""

    id: str = ""
    model: str = ""
    status: str | None = None
    output: list[dict[str, Any]] = msgspec.field(default_factory=list)
    usage: WireUsage | None = None
    error: Any = None
    incomplete_details: Any = None


class ResponsesEvent(_Wire):
    """One ``/v1/responses`` stream event; ``type`` says which fields matter."""

    type: str = ""
    delta: Any = None
    response: ResponseObject | None = None
    error: Any = None
    message: Any = None
    code: Any = None


class ModelEntry(_Wire):
    id: str = ""
    owned_by: str | None = None
    created: int | float | None = None
    # llama.cpp: n_ctx (the loaded context, in some builds), n_ctx_train, n_params, size.
    meta: dict[str, Any] | None = None
    # llama.cpp's router: {"value": "loaded" | "loading" | "unloaded" | "sleeping" | ..., "args": [...]};
    # some builds send the bare string.
    status: dict[str, Any] | str | None = None


class OllamaEntry(_Wire):
    name: str = ""
    model: str = ""
    capabilities: list[str] | None = None
    details: dict[str, Any] | None = None


class ModelList(_Wire):
    data: list[ModelEntry] | None = None
    models: list[OllamaEntry] | None = None


class NativeV0Entry(_Wire):
    id: str = ""
    type: str = "llm"
    publisher: str | None = None
    arch: str | None = None
    compatibility_type: str | None = None
    quantization: str | None = None
    state: str | None = None
    max_context_length: int | None = None
    loaded_context_length: int | None = None
    capabilities: list[str] | None = None


class NativeV0List(_Wire):
    data: list[NativeV0Entry]


class _V1Quantization(_Wire):
    name: str | None = None
    bits_per_weight: float | None = None


class _V1InstanceConfig(_Wire):
    context_length: int | None = None
    parallel: int | None = None


class NativeV1Instance(_Wire):
    id: str = ""
    config: _V1InstanceConfig | None = None


class _V1Capabilities(_Wire):
    vision: bool = False
    trained_for_tool_use: bool = False
    reasoning: dict[str, Any] | None = None


class NativeV1Entry(_Wire):
    key: str = ""
    type: str = "llm"
    publisher: str | None = None
    display_name: str | None = None
    architecture: str | None = None
    quantization: _V1Quantization | None = None
    loaded_instances: list[NativeV1Instance] = msgspec.field(default_factory=list)
    max_context_length: int | None = None
    format: str | None = None
    capabilities: _V1Capabilities | None = None


class NativeV1List(_Wire):
    models: list[NativeV1Entry]


class LlamaProps(_Wire):
    """llama.cpp server's ``GET /props``: what it runs at once (``-np``) and its context."""

    total_slots: int | None = None
    default_generation_settings: dict[str, Any] | None = None
    modalities: dict[str, Any] | None = None


class LoadResponse(_Wire):
    type: str | None = None
    instance_id: str = ""
    load_time_seconds: float | None = None
    status: str | None = None
    load_config: dict[str, Any] | None = None
