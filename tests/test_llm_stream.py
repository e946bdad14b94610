"""Streamed and whole chat completions: content, reasoning, tool calls, usage and progress."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from bridge.errors import LLMResponseError
from bridge.llm import (
    ChatMessage,
    ChatOutcome,
    ChatRequest,
    CompletionRequest,
    FunctionCall,
    FunctionSpec,
    ResponseFormat,
    StreamOptions,
    StreamProgress,
    Tool,
    ToolCall,
)
from tests.test_llm_fakes import DONE, Body, Recorder, as_json, ask, chunk, client, event, sse, usage_chunk

STOP = chunk(finish_reason="stop", role=False)
"""The last chunk of a finished stream: every real server sends one (a stream without it was cut)."""


async def _stream(*parts: bytes | float, request: ChatRequest | None = None) -> ChatOutcome:
    body = Body(*parts)
    async with client(Recorder(lambda http_request: sse(body))) as llm:
        outcome = await llm.chat(request or ask())
    assert body.closed
    return outcome


def _call(index: int | None = None, **fields: Any) -> dict[str, Any]:
    call: dict[str, Any] = {} if index is None else {"index": index}
    function = {key: fields.pop(key) for key in ("name", "arguments") if key in fields}
    call.update(fields)
    if function:
        call["function"] = function
    return call


def _calls(outcome: ChatOutcome) -> list[tuple[str, str, str]]:
    """Each call as (id, name, arguments), the three things a stream must get right."""
    return [(call.id, call.name, call.arguments) for call in outcome.tool_calls]


async def test_plain_content_stream() -> None:
    """Content deltas are joined; finish reason, id and model come from the chunks."""
    outcome = await _stream(
        b": keep-alive comment\n\n",
        chunk(content="Hel"),
        chunk(content="lo"),
        chunk(finish_reason="stop", role=False),
        DONE,
    )
    assert outcome.content == "Hello"
    assert outcome.reasoning == ""
    assert outcome.tool_calls == []
    assert outcome.finish_reason == "stop"
    assert (outcome.id, outcome.model, outcome.tokens, outcome.streamed) == ("chatcmpl-abc", "qwen3-8b", 2, True)
    assert outcome.time_to_first_token is not None
    assert outcome.usage is None


async def test_usage_chunk_sets_usage_and_tokens() -> None:
    """The usage chunk (``choices: []`` before ``[DONE]``) fills usage and the token count."""
    outcome = await _stream(chunk(content="a"), chunk(finish_reason="stop"), usage_chunk(12, 34), DONE)
    assert outcome.usage is not None
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens, outcome.usage.total_tokens) == (12, 34, 46)
    assert outcome.tokens == 34


async def test_reasoning_content_field() -> None:
    """``reasoning_content`` deltas (LM Studio's separate-reasoning setting) become reasoning."""
    outcome = await _stream(
        chunk(reasoning_content="Let me "), chunk(reasoning_content="think."), chunk(content="42"), STOP, DONE
    )
    assert (outcome.reasoning, outcome.content) == ("Let me think.", "42")


async def test_reasoning_field_gpt_oss() -> None:
    """``reasoning`` deltas (gpt-oss on LM Studio) become reasoning too."""
    outcome = await _stream(chunk(reasoning="Hmm."), chunk(content="Yes"), STOP, DONE)
    assert (outcome.reasoning, outcome.content) == ("Hmm.", "Yes")


async def test_inline_think_split_across_chunks() -> None:
    """``<think>`` tags split over chunks are still taken out of the content."""
    outcome = await _stream(
        chunk(content="<th"),
        chunk(content="ink>step one, "),
        chunk(content="step two</thi"),
        chunk(content="nk>\n\nThe answer"),
        chunk(content=" is 4.", finish_reason="stop"),
        DONE,
    )
    assert outcome.reasoning == "step one, step two"
    assert outcome.content == "The answer is 4."


async def test_progress_reports_first_token_and_counts() -> None:
    """``on_progress`` sees every chunk that carried output, with a running count and reasoning flag."""
    seen: list[StreamProgress] = []

    async def on_progress(progress: StreamProgress) -> None:
        seen.append(progress)

    body = Body(chunk(), chunk(reasoning_content="r"), chunk(content="a"), chunk(content="b"), STOP, DONE)
    async with client(Recorder(lambda request: sse(body))) as llm:
        await llm.chat(ask(), on_progress=on_progress)
    assert [progress.tokens for progress in seen] == [1, 2, 3]
    assert [progress.reasoning for progress in seen] == [True, False, False]
    assert all(progress.time_to_first_token is not None for progress in seen)
    assert {progress.model for progress in seen} == {"qwen3-8b"}


async def test_a_callback_that_cancels_hears_no_more_of_the_same_chunk() -> None:
    """Regression (a flaky real-llama test under load): several events in one network chunk each reached the
    progress callback after it had cancelled the call, since nothing checkpointed between them."""
    seen: list[StreamProgress] = []
    body = Body(b"".join([chunk(content="a"), chunk(content="b"), chunk(content="c"), STOP, DONE]))
    async with client(Recorder(lambda request: sse(body))) as llm:
        with anyio.CancelScope() as scope:

            async def cancel(progress: StreamProgress) -> None:
                seen.append(progress)
                scope.cancel()

            await llm.chat(ask(), on_progress=cancel)
    assert scope.cancelled_caught
    assert [progress.tokens for progress in seen] == [1]
    assert body.closed


async def test_tool_call_standard_deltas() -> None:
    """id/name once, then argument fragments: the OpenAI way."""
    outcome = await _stream(
        chunk(tool_calls=[_call(0, id="365174485", type="function", name="get_weather", arguments="")]),
        chunk(tool_calls=[_call(0, arguments='{"city":')]),
        chunk(tool_calls=[_call(0, arguments=' "Paris"}')]),
        chunk(finish_reason="tool_calls"),
        DONE,
    )
    assert outcome.tool_calls == [
        ToolCall(id="365174485", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
    ]
    assert outcome.finish_reason == "tool_calls"


async def test_tool_call_repeated_id_and_name() -> None:
    """Servers that repeat id, name and type in every chunk get one call, not several."""
    outcome = await _stream(
        chunk(tool_calls=[_call(0, id="7", type="function", name="f", arguments='{"a"')]),
        chunk(tool_calls=[_call(0, id="7", type="function", name="f", arguments=":1")]),
        chunk(tool_calls=[_call(0, id="7", type="function", name="f", arguments="}")]),
        STOP,
        DONE,
    )
    assert outcome.tool_calls == [ToolCall(id="7", function=FunctionCall(name="f", arguments='{"a":1}'))]


async def test_tool_call_omitted_index() -> None:
    """Without ``index`` fragments continue the last call, and a new id starts a new one."""
    outcome = await _stream(
        chunk(tool_calls=[_call(id="a", name="f", arguments='{"x":')]),
        chunk(tool_calls=[_call(arguments="1}")]),
        chunk(tool_calls=[_call(id="b", name="g", arguments="{}")]),
        STOP,
        DONE,
    )
    assert _calls(outcome) == [("a", "f", '{"x":1}'), ("b", "g", "{}")]


async def test_tool_call_whole_in_one_chunk_with_object_arguments() -> None:
    """A complete call in one chunk works, even with arguments sent as an object."""
    outcome = await _stream(
        chunk(tool_calls=[_call(0, id="1", type="function", name="f", arguments={"q": "x"})]), STOP, DONE
    )
    assert outcome.tool_calls == [ToolCall(id="1", function=FunctionCall(name="f", arguments='{"q":"x"}'))]


async def test_tool_call_whole_call_resent() -> None:
    """A server that resends the complete call does not get its arguments doubled."""
    whole = _call(0, id="1", type="function", name="f", arguments='{"q":"x"}')
    outcome = await _stream(chunk(tool_calls=[whole]), chunk(tool_calls=[whole]), STOP, DONE)
    assert outcome.tool_calls == [ToolCall(id="1", function=FunctionCall(name="f", arguments='{"q":"x"}'))]


async def test_two_parallel_tool_calls_interleaved() -> None:
    """Parallel calls keep their own arguments, ordered by index."""
    outcome = await _stream(
        chunk(tool_calls=[_call(0, id="1", name="f", arguments=""), _call(1, id="2", name="g", arguments="")]),
        chunk(tool_calls=[_call(1, arguments='{"b":2}')]),
        chunk(tool_calls=[_call(0, arguments='{"a":1}')]),
        STOP,
        DONE,
    )
    assert _calls(outcome) == [("1", "f", '{"a":1}'), ("2", "g", '{"b":2}')]


async def test_tool_call_index_gap_and_reused_index() -> None:
    """Index gaps are closed up, and index 0 reused with a new id is a second call."""
    outcome = await _stream(
        chunk(tool_calls=[_call(2, id="x", name="f", arguments="{}")]),
        chunk(tool_calls=[_call(5, id="y", name="g", arguments="{}")]),
        chunk(tool_calls=[_call(5, id="z", name="h", arguments="{}")]),
        STOP,
        DONE,
    )
    assert _calls(outcome) == [("x", "f", "{}"), ("y", "g", "{}"), ("z", "h", "{}")]


async def test_tool_call_empty_id_gets_stable_id() -> None:
    """An empty id (LM Studio BT#830) is replaced by one derived from the response id, the same every time."""
    parts = (
        chunk(tool_calls=[_call(0, id="", name="f", arguments="")]),
        chunk(tool_calls=[_call(0, arguments="{}")]),
        chunk(tool_calls=[_call(1, name="g")]),
        STOP,
        DONE,
    )
    first = await _stream(*parts)
    second = await _stream(*parts)
    ids = [call.id for call in first.tool_calls]
    assert ids == [call.id for call in second.tool_calls]
    assert len(set(ids)) == 2
    assert all(call_id.startswith("call_") for call_id in ids)
    assert [call.arguments for call in first.tool_calls] == ["{}", "{}"]


async def test_multiple_json_lines_without_blank_lines() -> None:
    """Chunks sent as consecutive ``data:`` lines without blank separators are still all read."""
    frames = chunk(content="a").rstrip(b"\n") + b"\n" + chunk(content="b").rstrip(b"\n") + b"\n\n"
    outcome = await _stream(frames, STOP, DONE)
    assert outcome.content == "ab"


async def test_event_lines_and_missing_done() -> None:
    """Named events are fine, and a stream ending after finish_reason without ``[DONE]`` is complete."""
    outcome = await _stream(b"event: message\n" + chunk(content="ok"), chunk(finish_reason="stop"))
    assert (outcome.content, outcome.finish_reason) == ("ok", "stop")


async def test_silent_empty_stream_is_an_error() -> None:
    """A 200 stream with nothing in it (LM Studio's silent GGUF overflow) raises with advice."""
    body = Body()
    async with client(Recorder(lambda request: sse(body))) as llm:
        with pytest.raises(LLMResponseError) as caught:
            await llm.chat(ask())
    assert "without sending anything" in caught.value.message
    assert not caught.value.retryable


async def test_truncated_stream_is_retryable_error() -> None:
    """A stream that stops mid-generation without finishing is a retryable response error."""
    body = Body(chunk(content="a"), chunk(content="b"))
    async with client(Recorder(lambda request: sse(body))) as llm:
        with pytest.raises(LLMResponseError) as caught:
            await llm.chat(ask())
    assert "after 2 tokens without finishing" in caught.value.message
    assert caught.value.retryable


async def test_malformed_chunk() -> None:
    """A ``data:`` line that is not JSON raises instead of being skipped silently."""
    body = Body(b"data: {not json\n\n")
    async with client(Recorder(lambda request: sse(body))) as llm:
        with pytest.raises(LLMResponseError, match="not valid JSON"):
            await llm.chat(ask())


LMS_WHOLE = {
    "id": "chatcmpl-xyz",
    "object": "chat.completion",
    "model": "qwen3-8b",
    "choices": [
        {
            "index": 0,
            "logprobs": None,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "<think>hmm</think>Hi!", "tool_calls": []},
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    "stats": {},
    "system_fingerprint": "qwen3-8b",
}


async def test_non_streamed_chat_lm_studio_shape() -> None:
    """A whole LM Studio answer (no ``created``, empty ``tool_calls`` and ``stats``) is parsed."""
    recorder = Recorder(lambda request: as_json(LMS_WHOLE))
    async with client(recorder) as llm:
        outcome = await llm.chat(ask(), stream=False)
    assert (outcome.content, outcome.reasoning, outcome.tool_calls) == ("Hi!", "hmm", [])
    assert (outcome.tokens, outcome.streamed, outcome.server_stats) == (3, False, None)
    assert recorder.bodies()[0]["stream"] is False
    assert "stream_options" not in recorder.bodies()[0]


async def test_non_streamed_null_content_with_tool_calls() -> None:
    """``content: null`` with tool calls, and llama.cpp's ``timings``, are fine."""
    whole = {
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "content": None,
                    "reasoning_content": "use the tool",
                    "tool_calls": [{"id": "", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
            }
        ],
        "timings": {"predicted_n": 9},
    }
    async with client(Recorder(lambda request: as_json(whole))) as llm:
        outcome = await llm.chat(ask(), stream=False)
    assert outcome.content == ""
    assert outcome.reasoning == "use the tool"
    assert [call.name for call in outcome.tool_calls] == ["f"]
    assert outcome.tool_calls[0].id.startswith("call_")
    assert outcome.server_stats == {"predicted_n": 9}


async def test_server_ignoring_stream_flag() -> None:
    """A server that answers a streamed request with one JSON body still gives an outcome."""
    async with client(Recorder(lambda request: as_json(LMS_WHOLE))) as llm:
        outcome = await llm.chat(ask())
    assert (outcome.content, outcome.streamed) == ("Hi!", False)


async def test_request_body_omits_unset_fields_and_merges_extra() -> None:
    """Only set parameters are sent; ``extra`` is merged on top; nested types keep their tags."""
    body = Body(chunk(content="x"), STOP, DONE)
    recorder = Recorder(lambda request: sse(body))
    request = ChatRequest(
        model="qwen3-8b",
        messages=[
            ChatMessage(role="system", content="be brief"),
            ChatMessage(
                role="assistant", tool_calls=[ToolCall(id="1", function=FunctionCall(name="f", arguments="{}"))]
            ),
            ChatMessage(role="tool", content="sunny", tool_call_id="1"),
        ],
        temperature=0.2,
        max_tokens=-1,
        tools=[Tool(function=FunctionSpec(name="f", parameters={"type": "object", "properties": {}}))],
        tool_choice="auto",
        response_format=ResponseFormat.from_schema({"type": "object"}, name="answer"),
        reasoning_effort="low",
        ttl=300,
        seed=7,
        extra={"top_k": 40, "stream": False},
    )
    async with client(recorder) as llm:
        await llm.chat(request)
    assert recorder.bodies()[0] == {
        "model": "qwen3-8b",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{}"},
                                                  "type": "function"}]},
            {"role": "tool", "content": "sunny", "tool_call_id": "1"},
        ],
        "temperature": 0.2,
        "max_tokens": -1,
        "tools": [{"function": {"name": "f", "parameters": {"type": "object", "properties": {}}}, "type": "function"}],
        "tool_choice": "auto",
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"},
                                                                   "strict": True}},
        "reasoning_effort": "low",
        "ttl": 300,
        "seed": 7,
        "top_k": 40,
        "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    assert recorder.requests[0].url == "http://lms.test:1234/v1/chat/completions"
    assert recorder.requests[0].headers["content-type"] == "application/json"


async def test_explicit_stream_options_are_kept() -> None:
    """A caller's own ``stream_options`` wins over the default."""
    body = Body(chunk(content="x"), STOP, DONE)
    recorder = Recorder(lambda request: sse(body))
    async with client(recorder) as llm:
        await llm.chat(ask(stream_options=StreamOptions(include_usage=False)))
    assert recorder.bodies()[0]["stream_options"] == {"include_usage": False}


async def test_api_key_header() -> None:
    """The API key is sent as a bearer token."""
    recorder = Recorder(lambda request: as_json(LMS_WHOLE))
    async with client(recorder) as plain:
        await plain.chat(ask(), stream=False)
    from bridge.llm import LLMClient

    async with LLMClient("http://lms.test:1234", api_key="sk-lm-abc", transport=httpx.MockTransport(recorder)) as llm:
        await llm.chat(ask(), stream=False)
    assert "authorization" not in recorder.requests[0].headers
    assert recorder.requests[1].headers["authorization"] == "Bearer sk-lm-abc"


async def test_default_headers_and_credentials_in_the_base_url() -> None:
    """Every request says who sends it and asks for no compression; ``user:pass@`` in the URL is Basic auth."""
    from bridge.llm import LLMClient

    recorder = Recorder(lambda request: as_json(LMS_WHOLE))
    async with LLMClient("http://me:s3cret@lms.test:1234/v1", transport=httpx.MockTransport(recorder)) as llm:
        await llm.chat(ask(), stream=False)
    headers = recorder.requests[0].headers
    assert headers["authorization"] == "Basic bWU6czNjcmV0"
    assert headers["accept-encoding"] == "identity"
    assert headers["user-agent"].startswith("lmstudio-bridge/")
    assert headers["host"] == "lms.test:1234"
    assert str(recorder.requests[0].url) == "http://lms.test:1234/v1/chat/completions"  # no secret in reports


async def test_stream_compressed_although_not_asked() -> None:
    """A server (or proxy) that gzips the event stream anyway is decoded, not misread."""
    import gzip

    raw = chunk(content="Hel") + chunk(content="lo", finish_reason="stop") + DONE

    def gzipped(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
        return httpx.Response(200, headers=headers, content=gzip.compress(raw))

    async with client(Recorder(gzipped)) as llm:
        outcome = await llm.chat(ask())
    assert outcome.content == "Hello"
    assert outcome.finish_reason == "stop"


async def test_streamed_text_completion() -> None:
    """Legacy completions stream ``choices[].text``."""
    body = Body(
        event({"id": "cmpl-1", "model": "m", "choices": [{"index": 0, "text": "Once"}]}),
        event({"choices": [{"index": 0, "text": " upon", "finish_reason": "length"}]}),
        DONE,
    )
    recorder = Recorder(lambda request: sse(body))
    async with client(recorder) as llm:
        outcome = await llm.complete(CompletionRequest(model="m", prompt="Tell", max_tokens=2), stream=True)
    assert (outcome.text, outcome.finish_reason, outcome.tokens, outcome.id) == ("Once upon", "length", 2, "cmpl-1")
    assert json.loads(recorder.requests[0].content)["prompt"] == "Tell"
    assert recorder.requests[0].url.path == "/v1/completions"


async def test_whole_text_completion() -> None:
    """A non-streamed legacy completion is parsed from ``choices[0].text``."""
    whole = {"id": "cmpl-2", "object": "text_completion", "model": "m",
             "choices": [{"index": 0, "text": "done", "logprobs": None, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}  # fmt: skip
    async with client(Recorder(lambda request: as_json(whole))) as llm:
        outcome = await llm.complete(CompletionRequest(model="m", prompt="x"))
    assert (outcome.text, outcome.finish_reason, outcome.streamed) == ("done", "stop", False)
