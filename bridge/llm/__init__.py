"""The async client for OpenAI-compatible LLM servers (LM Studio, Ollama, llama.cpp, vLLM).

One :class:`LLMClient` per configured server. It speaks HTTP, parses streams,
enforces :class:`Budgets` and raises only :mod:`bridge.errors` classes; the
actors that use it own queueing, limits, circuit breaking and the retry loop
(:func:`call_with_retries` with :func:`is_retryable`).
"""

from __future__ import annotations

from bridge.llm._budgets import Budgets as Budgets
from bridge.llm._client import LLMClient as LLMClient
from bridge.llm._client import ProgressCallback as ProgressCallback
from bridge.llm._outcome import ChatOutcome as ChatOutcome
from bridge.llm._outcome import CompletionOutcome as CompletionOutcome
from bridge.llm._outcome import DownloadStatus as DownloadStatus
from bridge.llm._outcome import EmbeddingsOutcome as EmbeddingsOutcome
from bridge.llm._outcome import Generation as Generation
from bridge.llm._outcome import LoadResult as LoadResult
from bridge.llm._outcome import ModelInfo as ModelInfo
from bridge.llm._outcome import NativeModel as NativeModel
from bridge.llm._outcome import ResponsesOutcome as ResponsesOutcome
from bridge.llm._outcome import ServerProps as ServerProps
from bridge.llm._outcome import StreamProgress as StreamProgress
from bridge.llm._outcome import Usage as Usage
from bridge.llm._params import ChatMessage as ChatMessage
from bridge.llm._params import ChatRequest as ChatRequest
from bridge.llm._params import CompletionRequest as CompletionRequest
from bridge.llm._params import EmbeddingRequest as EmbeddingRequest
from bridge.llm._params import FunctionCall as FunctionCall
from bridge.llm._params import FunctionSpec as FunctionSpec
from bridge.llm._params import JsonSchemaSpec as JsonSchemaSpec
from bridge.llm._params import ResponseFormat as ResponseFormat
from bridge.llm._params import ResponsesRequest as ResponsesRequest
from bridge.llm._params import StreamOptions as StreamOptions
from bridge.llm._params import Tool as Tool
from bridge.llm._params import ToolCall as ToolCall
from bridge.llm._retry import RetryNotice as RetryNotice
from bridge.llm._retry import call_with_retries as call_with_retries
from bridge.llm._retry import is_retryable as is_retryable

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
