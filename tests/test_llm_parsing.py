"""The parsers on their own: think-tag splitting, SSE decoding, tool-call accumulation, body encoding."""

from __future__ import annotations

import json

import pytest

from bridge.llm import ChatMessage, ChatRequest, CompletionRequest, ResponsesRequest
from bridge.llm._params import encode_body
from bridge.llm._sse import SSEDecoder, SSEEvent, SSELineSplitter
from bridge.llm._think import ThinkSplitter
from bridge.llm._toolcalls import ToolCallAccumulator
from bridge.llm._wire import WireFunction, WireToolCall


def _split(*pieces: str) -> tuple[str, str]:
    splitter = ThinkSplitter()
    for piece in pieces:
        splitter.feed(piece)
    return splitter.finish()


TEXT = "<think>plan A</think>\n\nAnswer: <b>42</b>"


@pytest.mark.parametrize("cut", range(1, len(TEXT)))
def test_think_split_at_every_position(cut: int) -> None:
    """Wherever the stream splits the text, the tags are found and the rest is kept."""
    assert _split(TEXT[:cut], TEXT[cut:]) == ("Answer: <b>42</b>", "plan A")


def test_think_one_character_at_a_time() -> None:
    """Even one character per chunk works."""
    assert _split(*TEXT) == ("Answer: <b>42</b>", "plan A")


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (("no tags at all <",), ("no tags at all <", "")),
        (("a < b and <thin", "ker>"), ("a < b and <thinker>", "")),
        (("prompt opened it, ", "still thinking</think>Done"), ("Done", "prompt opened it, still thinking")),
        (("<think>cut off by max_tok",), ("", "cut off by max_tok")),
        (("<think>a</think>b</think>c",), ("bc", "a")),
        (("<think></think>Hi",), ("Hi", "")),
        (("<think>one</think>x<think>two</think>y",), ("xy", "onetwo")),
    ],
    ids=["plain", "lookalike", "orphan-close", "unclosed", "stray-close", "empty-block", "two-blocks"],
)
def test_think_edge_cases(pieces: tuple[str, ...], expected: tuple[str, str]) -> None:
    """Lookalike tags stay content; an orphan close makes what came before reasoning."""
    assert _split(*pieces) == expected


def test_sse_decoder_follows_the_spec() -> None:
    """Comments, event names, multi-line data, field without space, and flush at end of stream."""
    decoder = SSEDecoder()
    lines = [": comment", "event: error", 'data: {"a":', "data:1}", "id: 7", "retry: 10", "", "data: tail"]
    events = [found for line in lines if (found := decoder.feed(line)) is not None]
    assert events == [SSEEvent(event="error", data='{"a":\n1}', lines=('{"a":', "1}"))]
    assert decoder.flush() == SSEEvent(event="message", data="tail", lines=("tail",))
    assert decoder.flush() is None


def test_sse_decoder_bare_json_lines() -> None:
    """A bare JSON line (NDJSON-style server) is an event of its own."""
    decoder = SSEDecoder()
    assert decoder.feed('{"x": 1}') == SSEEvent(event="message", data='{"x": 1}', lines=('{"x": 1}',))
    assert decoder.feed("") is None


SSE_BODY = "data: a\r\n\r\ndata: é\n\ndata: b\r\rdata: c\n: note\r\ndata: tail"
SSE_LINES = ["data: a", "", "data: é", "", "data: b", "", "data: c", ": note", "data: tail"]


@pytest.mark.parametrize("cut", range(1, len(SSE_BODY.encode())))
def test_sse_lines_split_at_every_position(cut: int) -> None:
    """CRLF, LF and lone CR endings, and a UTF-8 character, survive any chunk boundary."""
    raw = SSE_BODY.encode()
    splitter = SSELineSplitter()
    lines = splitter.feed(raw[:cut]) + splitter.feed(raw[cut:]) + splitter.flush()
    assert lines == SSE_LINES
    assert splitter.flush() == []


def test_sse_lines_one_byte_at_a_time_and_bad_utf8() -> None:
    """Byte-sized chunks give the same lines; invalid UTF-8 is replaced, not fatal."""
    splitter = SSELineSplitter()
    lines = [line for byte in SSE_BODY.encode() for line in splitter.feed(bytes([byte]))] + splitter.flush()
    assert lines == SSE_LINES
    assert SSELineSplitter().feed(b"data: \xff\n") == ["data: \ufffd"]


def _delta(
    index: int | None = None, call_id: str | None = None, name: str | None = None, arguments: str | None = None
) -> WireToolCall:
    return WireToolCall(index=index, id=call_id, function=WireFunction(name=name, arguments=arguments))


def test_tool_call_name_fragments_are_joined() -> None:
    """A name streamed in pieces before any arguments is joined."""
    calls = ToolCallAccumulator("seed")
    calls.feed([_delta(0, "1", "get_")])
    calls.feed([_delta(0, None, "weather", '{"c":1}')])
    assert [(call.name, call.arguments) for call in calls.calls()] == [("get_weather", '{"c":1}')]


def test_tool_call_nameless_fragments_are_dropped() -> None:
    """Arguments with no function name to call are not a tool call."""
    calls = ToolCallAccumulator("seed")
    assert calls.feed([_delta(0, "1", None, "{}")])
    assert calls.calls() == []


def test_tool_call_duplicate_ids_are_made_unique() -> None:
    """Two calls the server gave the same id (Gemma duplicates) get distinct ids."""
    calls = ToolCallAccumulator("seed")
    calls.feed([_delta(0, "dup", "f", "{}")])
    calls.feed([_delta(1, None, "f", "{}")])
    calls.feed([WireToolCall(index=1, id="dup")])
    ids = [call.id for call in calls.calls()]
    assert ids[0] == "dup"
    assert len(set(ids)) == 2


def test_tool_call_ids_depend_on_seed() -> None:
    """Synthesized ids are stable per response id and differ between responses."""

    def ids(seed: str) -> list[str]:
        calls = ToolCallAccumulator(seed)
        calls.feed([_delta(0, "", "f", "{}")])
        return [call.id for call in calls.calls()]

    assert ids("chatcmpl-1") == ids("chatcmpl-1")
    assert ids("chatcmpl-1") != ids("chatcmpl-2")


def test_encode_completion_and_responses_bodies() -> None:
    """Unset fields are omitted for every request kind, and responses get no stream_options."""
    completion = json.loads(encode_body(CompletionRequest(model="m", prompt="p", stop=["\n"]), stream=True))
    assert completion == {"model": "m", "prompt": "p", "stop": ["\n"], "stream": True,
                          "stream_options": {"include_usage": True}}  # fmt: skip
    responses = json.loads(encode_body(ResponsesRequest(model="m", input="hi", store=False), stream=True))
    assert responses == {"model": "m", "input": "hi", "store": False, "stream": True}
    chat = json.loads(encode_body(ChatRequest(model="m", messages=[ChatMessage(role="user", content="")])))
    assert chat == {"model": "m", "messages": [{"role": "user", "content": ""}]}
