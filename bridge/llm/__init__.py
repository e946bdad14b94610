"""The async client for OpenAI-compatible LLM servers (LM Studio, Ollama, llama.cpp, vLLM).

One :class:`LLMClient` per configured server. It speaks HTTP, parses streams,
enforces :class:`Budgets` and raises only :mod:`bridge.errors` classes; the
actors that use it own queueing, limits, circuit breaking and the retry loop
(:func:`call_with_retries` with :func:`is_retryable`).
"""

from __future__ import annotations

from bridge.llm._budgets import Budgets
from bridge.llm._client import LLMClient, ProgressCallback
from bridge.llm._outcome import (
    ChatOutcome,
    CompletionOutcome,
    DownloadStatus,
    EmbeddingsOutcome,
    Generation,
    LoadResult,
    ModelInfo,
    NativeModel,
    ResponsesOutcome,
    ServerProps,
    StreamProgress,
    Usage,
)
from bridge.llm._params import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    FunctionCall,
    FunctionSpec,
    JsonSchemaSpec,
    ResponseFormat,
    ResponsesRequest,
    StreamOptions,
    Tool,
    ToolCall,
)
from bridge.llm._retry import RetryNotice, call_with_retries, is_retryable

__all__ = [
    # the client
    "LLMClient",
    "Budgets",
    "ProgressCallback",
    # requests
    "ChatRequest",
    "ChatMessage",
    "Tool",
    "FunctionSpec",
    "ToolCall",
    "FunctionCall",
    "ResponseFormat",
    "JsonSchemaSpec",
    "StreamOptions",
    "CompletionRequest",
    "EmbeddingRequest",
    "ResponsesRequest",
    # results
    "ChatOutcome",
    "CompletionOutcome",
    "DownloadStatus",
    "EmbeddingsOutcome",
    "Generation",
    "ResponsesOutcome",
    "StreamProgress",
    "Usage",
    "ModelInfo",
    "NativeModel",
    "ServerProps",
    "LoadResult",
    # retries
    "is_retryable",
    "call_with_retries",
    "RetryNotice",
]
