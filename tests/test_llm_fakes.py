"""Fake LLM-server plumbing shared by the ``test_llm_*`` modules (plus tests of the fakes themselves).

Everything goes through ``httpx.MockTransport``: handlers build responses
whose bodies are :class:`Body` streams, which can pause between parts and
record whether the client closed them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx

from bridge.llm import Budgets, ChatMessage, ChatRequest, LLMClient

SERVER = "http://lms.test:1234"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class Body(httpx.AsyncByteStream):
    """A response body: ``bytes`` parts are sent, ``float`` parts are pauses (seconds), exceptions are raised.

    ``forever`` repeats the last bytes part after each pause, for streams that never end.
    """

    def __init__(self, *parts: bytes | float | Exception, forever: bool = False) -> None:
        self.parts = parts
        self.forever = forever
        self.closed = False
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        last = b""
        for part in self.parts:
            if isinstance(part, float):
                await anyio.sleep(part)
            elif isinstance(part, Exception):
                raise part
            else:
                last = part
                self.sent += 1
                yield part
        while self.forever:
            await anyio.sleep(0.001)
            self.sent += 1
            yield last

    async def aclose(self) -> None:
        self.closed = True


def event(data: Any, *, name: str | None = None) -> bytes:
    """One SSE frame; ``data`` is JSON-encoded unless it is already a string."""
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {text}\n\n".encode()


DONE = b"data: [DONE]\n\n"


def chunk(
    *,
    content: str | None = None,
    reasoning_content: str | None = None,
    reasoning: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str | None = None,
    role: bool = True,
    chat_id: str = "chatcmpl-abc",
    model: str = "qwen3-8b",
) -> bytes:
    """One chat completion chunk as LM Studio sends it (``role`` in every delta)."""
    fields = {"content": content, "reasoning_content": reasoning_content, "reasoning": reasoning,
              "tool_calls": tool_calls}  # fmt: skip
    delta: dict[str, Any] = {"role": "assistant"} if role else {}
    delta.update({key: value for key, value in fields.items() if value is not None})
    return event(
        {
            "id": chat_id,
            "object": "chat.completion.chunk",
            "created": 1730000000,
            "model": model,
            "system_fingerprint": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
    )


def usage_chunk(prompt: int, completion: int) -> bytes:
    return event(
        {
            "id": "chatcmpl-abc",
            "model": "qwen3-8b",
            "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }
    )


def sse(body: Body, status: int = 200) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "text/event-stream"}, stream=body)


def as_json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=payload, headers=headers)


class Recorder:
    """A MockTransport handler answering from a fixed response factory and keeping the requests."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response] | Handler) -> None:
        self.respond = respond
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.respond(request)
        if isinstance(answer, httpx.Response):
            return answer
        return await answer

    def bodies(self) -> list[Any]:
        return [json.loads(request.content) if request.content else None for request in self.requests]


def client(handler: Recorder | Handler, *, budgets: Budgets | None = None, base_url: str = SERVER) -> LLMClient:
    return LLMClient(base_url, transport=httpx.MockTransport(handler), budgets=budgets)


def ask(text: str = "Hi", model: str = "qwen3-8b", **params: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=[ChatMessage(role="user", content=text)], **params)


async def test_body_sends_parts_and_records_close() -> None:
    """The fake body yields its byte parts in order and notes that the client closed it."""
    body = Body(b"a", 0.0, b"b")
    recorder = Recorder(lambda request: httpx.Response(200, stream=body))
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        answer = await http.get(f"{SERVER}/x")
    assert answer.content == b"ab"
    assert body.closed
    assert [request.url.path for request in recorder.requests] == ["/x"]


def test_chunk_builds_lm_studio_frames() -> None:
    """A chunk is one ``data:`` frame with the delta fields that were given."""
    frame = chunk(content="Hi", finish_reason="stop")
    assert frame.startswith(b"data: {")
    assert frame.endswith(b"\n\n")
    payload = json.loads(frame[len(b"data: ") :])
    assert payload["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"}
    assert payload["choices"][0]["finish_reason"] == "stop"
