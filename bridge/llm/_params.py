"""Typed request parameters, encoded without the fields you did not set.

Servers choke on explicit nulls (LM Studio's validators reject them, llama.cpp
treats some as values), so every optional field defaults to ``None`` and
``omit_defaults`` leaves it out of the body. Structs whose fields must always
be sent (the ``type`` discriminators) do not omit defaults.

``extra`` is merged last into the top-level body, for server-specific knobs
(``top_k``, ``repeat_penalty``, ``draft_model``, ...) the structs do not name.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "FunctionCall",
    "FunctionSpec",
    "JsonSchemaSpec",
    "ResponseFormat",
    "ResponsesRequest",
    "StreamOptions",
    "Tool",
    "ToolCall",
    "encode_body",
]


class FunctionCall(msgspec.Struct, frozen=True, kw_only=True):
    """A function the model called; ``arguments`` is a JSON object as a string."""

    name: str
    arguments: str = "{}"


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """One tool call in OpenAI's shape, so it can be sent back in an assistant message as is."""

    id: str
    function: FunctionCall
    type: str = "function"

    @property
    def name(self) -> str:
        return self.function.name

    @property
    def arguments(self) -> str:
        return self.function.arguments


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One chat turn. ``content`` may be a list of parts (``{"type": "text", ...}``, images)."""

    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct, frozen=True, kw_only=True):
    """A tool in the chat-completions (nested) format."""

    function: FunctionSpec
    type: str = "function"


class JsonSchemaSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    schema: dict[str, Any]
    strict: bool | None = None


class ResponseFormat(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``json_schema`` or ``text``; LM Studio rejects ``json_object`` with a 400."""

    type: Literal["json_schema", "text", "json_object"]
    json_schema: JsonSchemaSpec | None = None

    @classmethod
    def from_schema(cls, schema: dict[str, Any], *, name: str = "response", strict: bool = True) -> ResponseFormat:
        return cls(type="json_schema", json_schema=JsonSchemaSpec(name=name, schema=schema, strict=strict))


class StreamOptions(msgspec.Struct, frozen=True, kw_only=True):
    include_usage: bool = True


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Parameters of ``POST /v1/chat/completions``; ``stream`` is set by the client.

    ``ttl`` (seconds) is LM Studio's idle time-to-live for a model this request
    loads just in time. ``stream_options`` defaults to ``include_usage`` when
    streaming.
    """

    model: str
    messages: list[ChatMessage]
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    ttl: int | None = None
    stream_options: StreamOptions | None = None
    seed: int | None = None
    extra: dict[str, Any] | None = None


class CompletionRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Parameters of ``POST /v1/completions`` (raw prompt, no chat template)."""

    model: str
    prompt: str | list[str]
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    ttl: int | None = None
    stream_options: StreamOptions | None = None
    seed: int | None = None
    extra: dict[str, Any] | None = None


class EmbeddingRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Parameters of ``POST /v1/embeddings``."""

    model: str
    input: str | list[str]
    dimensions: int | None = None
    ttl: int | None = None
    extra: dict[str, Any] | None = None


class ResponsesRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Parameters of ``POST /v1/responses``.

    ``tools`` use the flat Responses format (``{"type": "function", "name", ...}``);
    LM Studio rejects the nested chat format here. ``reasoning_effort`` is sent
    as ``reasoning: {effort}``.
    """

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    previous_response_id: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    reasoning_effort: str | None = None
    store: bool | None = None
    ttl: int | None = None
    extra: dict[str, Any] | None = None


_AnyRequest = ChatRequest | CompletionRequest | EmbeddingRequest | ResponsesRequest
_encoder = msgspec.json.Encoder()


def encode_body(request: _AnyRequest, *, stream: bool | None = None) -> bytes:
    """The JSON body: set fields only, ``extra`` merged on top, ``stream`` forced when given."""
    body: dict[str, Any] = msgspec.to_builtins(request)
    extra = body.pop("extra", None) or {}
    if isinstance(request, ResponsesRequest) and "reasoning_effort" in body:
        body["reasoning"] = {"effort": body.pop("reasoning_effort")}
    body.update(extra)
    if stream is not None:
        # The client reads the answer one way or the other: ``extra`` cannot override this.
        body["stream"] = stream
        if not stream:
            body.pop("stream_options", None)
        elif isinstance(request, ChatRequest | CompletionRequest):
            body.setdefault("stream_options", {"include_usage": True})
    return _encoder.encode(body)
