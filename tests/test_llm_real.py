"""The client against a real OpenAI-compatible server: llama.cpp serving SmolLM2-135M.

Mechanics only (the model is tiny): wire shapes, streaming, usage, tool-call
plumbing, error translation and cancellation as a real server produces them.
"""

from __future__ import annotations

import anyio
import msgspec
import pytest

from bridge.errors import ContextOverflowError, UnsupportedEndpointError
from bridge.llm import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    LLMClient,
    ResponsesRequest,
    StreamProgress,
    Tool,
)
from tests.peers import GET_CURRENT_TIME_TOOL, LlamaServer, tool_use_few_shot


def _hello(server: LlamaServer, max_tokens: int = 8) -> ChatRequest:
    # Greedy and asking for a long answer: a sampled "Say hi" sometimes ends before max_tokens.
    return ChatRequest(
        model=server.model,
        messages=[ChatMessage(role="user", content="Tell me a long story about a dragon.")],
        max_tokens=max_tokens,
        temperature=0,
        seed=1,
    )


async def test_real_list_models_and_no_native_api(llama_server: LlamaServer) -> None:
    """llama.cpp lists its model with the per-slot context, and has no LM Studio native API."""
    async with LLMClient(llama_server.openai_base_url) as llm:
        models = await llm.list_models()
        assert await llm.native_models() is None
        with pytest.raises(UnsupportedEndpointError):
            await llm.load_model(llama_server.model)
    assert [model.id for model in models] == [llama_server.model]
    assert models[0].context_length == llama_server.n_ctx_per_slot


@pytest.mark.parametrize("stream", [True, False])
async def test_real_chat(llama_server: LlamaServer, stream: bool) -> None:
    """A chat completion, streamed or whole, stops at max_tokens and reports usage."""
    async with LLMClient(llama_server.base_url) as llm:
        outcome = await llm.chat(_hello(llama_server), stream=stream)
    assert outcome.content
    assert outcome.finish_reason == "length"
    assert outcome.usage is not None
    assert outcome.usage.completion_tokens == 8
    assert outcome.tokens == 8
    assert outcome.streamed is stream
    assert outcome.time_to_first_token is not None


async def test_real_streamed_tool_call(llama_server: LlamaServer) -> None:
    """A streamed tool call from a real server is rebuilt whole, with valid JSON arguments."""
    request = ChatRequest(
        model=llama_server.model,
        messages=[msgspec.convert(message, ChatMessage) for message in tool_use_few_shot("London")],
        tools=[msgspec.convert(GET_CURRENT_TIME_TOOL, Tool)],
        temperature=0,
        max_tokens=64,
    )
    async with LLMClient(llama_server.base_url) as llm:
        outcome = await llm.chat(request)
    assert outcome.finish_reason == "tool_calls"
    assert [call.name for call in outcome.tool_calls] == ["get_current_time"]
    assert "timezone" in msgspec.json.decode(outcome.tool_calls[0].arguments)
    assert outcome.tool_calls[0].id


@pytest.mark.parametrize("stream", [True, False])
async def test_real_context_overflow(llama_server: LlamaServer, stream: bool) -> None:
    """llama.cpp's ``exceed_context_size_error`` is a ContextOverflowError with both numbers."""
    request = ChatRequest(
        model=llama_server.model,
        messages=[ChatMessage(role="user", content="word " * llama_server.n_ctx_per_slot)],
        max_tokens=4,
    )
    async with LLMClient(llama_server.base_url) as llm:
        with pytest.raises(ContextOverflowError) as caught:
            await llm.chat(request, stream=stream)
    assert caught.value.details["n_ctx"] == llama_server.n_ctx_per_slot
    assert caught.value.details["n_prompt_tokens"] > llama_server.n_ctx_per_slot


async def test_real_completion_embeddings_and_responses(llama_server: LlamaServer) -> None:
    """Legacy completions, embeddings and /v1/responses all parse from the real server."""
    async with LLMClient(llama_server.base_url) as llm:
        completion = await llm.complete(
            CompletionRequest(model=llama_server.model, prompt="Once upon", max_tokens=4), stream=True
        )
        vectors = await llm.embed(EmbeddingRequest(model=llama_server.model, input=["a", "b"]))
        streamed = await llm.respond(ResponsesRequest(model=llama_server.model, input="Say hi", max_output_tokens=8))
        whole = await llm.respond(
            ResponsesRequest(model=llama_server.model, input="Say hi", max_output_tokens=8), stream=False
        )
    assert completion.text
    assert completion.tokens == 4
    assert len(vectors.vectors) == 2
    assert len(vectors.vectors[0]) == len(vectors.vectors[1]) > 0
    assert streamed.content
    assert streamed.streamed
    assert streamed.status == "completed"
    assert whole.content
    assert not whole.streamed


async def test_real_cancellation_mid_stream(llama_server: LlamaServer) -> None:
    """Cancelling after the first token ends the call at once; the server then serves the next request."""
    seen: list[StreamProgress] = []
    async with LLMClient(llama_server.base_url) as llm:
        with anyio.CancelScope() as scope:

            async def cancel(progress: StreamProgress) -> None:
                seen.append(progress)
                scope.cancel()

            await llm.chat(_hello(llama_server, max_tokens=200), on_progress=cancel)
        after = await llm.chat(_hello(llama_server))
    assert scope.cancelled_caught
    assert [progress.tokens for progress in seen] == [1]
    assert after.tokens == 8
