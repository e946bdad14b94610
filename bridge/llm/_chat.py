"""Assemble chat and text completions from stream chunks or whole bodies."""

from __future__ import annotations

import secrets
from typing import Any, Final

import anyio
import msgspec

from bridge.errors import BridgeError, LLMResponseError
from bridge.llm._errors import (
    CallContext,
    ServerError,
    error_in_200_body,
    error_in_stream,
    server_error_from_payload,
)
from bridge.llm._outcome import ChatOutcome, CompletionOutcome, StreamProgress, Usage
from bridge.llm._sse import SSEEvent
from bridge.llm._think import ThinkSplitter
from bridge.llm._toolcalls import ToolCallAccumulator
from bridge.llm._wire import ChatCompletion, ChatDelta, WireUsage

__all__ = [
    "ChatAccumulator",
    "CompletionAccumulator",
    "StreamAccumulator",
    "decode_error_event",
    "bad_shape",
    "decode_json_body",
    "usage_from_wire",
]

_chunk_decoder = msgspec.json.Decoder(ChatCompletion)

TEXT_EVERY: Final = 0.25
"""Seconds between two snapshots of the text so far in :class:`StreamProgress`."""


def usage_from_wire(usage: WireUsage | None) -> Usage | None:
    if usage is None:
        return None
    details = usage.completion_tokens_details or usage.output_tokens_details
    return Usage(
        prompt_tokens=usage.prompt_tokens if usage.prompt_tokens is not None else usage.input_tokens,
        completion_tokens=usage.completion_tokens if usage.completion_tokens is not None else usage.output_tokens,
        total_tokens=usage.total_tokens,
        reasoning_tokens=details.reasoning_tokens if details else None,
    )


def content_text(content: str | list[Any] | None) -> str:
    """Message content as text; content-part lists keep their text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = [part.get("text") for part in content if isinstance(part, dict)]
    return "".join(part for part in parts if isinstance(part, str))


def reasoning_text(delta: ChatDelta) -> str:
    if delta.reasoning_content:
        return delta.reasoning_content
    if isinstance(delta.reasoning, str):
        return delta.reasoning
    return ""


def decode_error_event(event: SSEEvent, ctx: CallContext, *, tokens: int) -> BridgeError:
    """The typed error for an ``event: error`` frame, whatever its data looks like."""
    try:
        payload = msgspec.json.decode(event.data)
    except msgspec.DecodeError:
        payload = None
    found = server_error_from_payload(payload) or ServerError(
        message=payload if isinstance(payload, str) and payload else event.data or "error event without details"
    )
    return error_in_stream(found, ctx, tokens=tokens)


def stream_error(chunk: ChatCompletion, ctx: CallContext, *, tokens: int) -> BridgeError | None:
    if chunk.error is None:
        return None
    found = server_error_from_payload({"error": chunk.error, "message": chunk.message})
    if found is None:
        return None
    return error_in_stream(found, ctx, tokens=tokens)


class StreamAccumulator:
    """What the stream engine drives: events in, progress out, an outcome at the end."""

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self.started = anyio.current_time()
        self.first_token_at: float | None = None
        self.deltas = 0
        """Output deltas seen: the token count when the server sends no usage."""
        self.done = False
        self.events = 0
        self.finish_reason: str | None = None
        self.model = ctx.model or ""
        self._text_at = -float("inf")
        self._text_seen = ""
        self.id = ""
        self.streamed = True

    def _delta(self) -> None:
        self.deltas += 1
        if self.first_token_at is None:
            self.first_token_at = anyio.current_time() - self.started

    def _generation(self, usage: Usage | None) -> dict[str, Any]:
        """What every outcome says of its generation: ``tokens`` is the server's count where it sent usage."""
        counted = usage.completion_tokens if usage is not None else None
        return {
            "usage": usage,
            "model": self.model,
            "id": self.id,
            "tokens": self.deltas if counted is None else counted,
            "time_to_first_token": self.first_token_at,
            "duration": anyio.current_time() - self.started,
            "streamed": self.streamed,
        }

    def feed(self, event: SSEEvent) -> bool:
        """Take one event; ``True`` if it carried generated output. Raises the server's typed error."""
        if event.event == "error":
            raise decode_error_event(event, self.ctx, tokens=self.deltas)
        if event.data.strip() == "[DONE]":
            self.done = True
            return False
        try:
            return self._feed_data(event.data)
        except msgspec.DecodeError:
            if len(event.lines) < 2:
                raise self._malformed(event.data) from None
        # Several JSON objects without the blank lines between them: take them one by one.
        fed = False
        for line in event.lines:
            if line.strip() == "[DONE]":
                self.done = True
                continue
            try:
                fed = self._feed_data(line) or fed
            except msgspec.DecodeError:
                raise self._malformed(line) from None
        return fed

    def _malformed(self, data: str) -> LLMResponseError:
        return LLMResponseError(
            f"{self.ctx.server} sent a stream chunk that is not valid JSON on {self.ctx.describe()}: {data[:200]!r}. "
            "The base URL may point at something that is not an OpenAI-compatible server.",
            details=self.ctx.details(status=200, in_stream=True, tokens=self.deltas),
        )

    def _feed_data(self, data: str) -> bool:
        chunk = _chunk_decoder.decode(data)
        self.events += 1
        failure = stream_error(chunk, self.ctx, tokens=self.deltas)
        if failure is not None:
            raise failure
        return self.take(chunk)

    def take(self, chunk: ChatCompletion) -> bool:
        """Apply one decoded chunk (or whole completion); ``True`` if it carried output."""
        raise NotImplementedError

    def take_whole(self, raw: bytes) -> None:
        """A non-streamed answer (asked for, or a server that ignored ``stream: true``)."""
        self.streamed = False
        payload = decode_json_body(raw, self.ctx)
        try:
            completion = msgspec.convert(payload, ChatCompletion)
        except msgspec.ValidationError as exc:
            raise bad_shape(self.ctx, exc) from None
        if not completion.choices:
            raise bad_shape(self.ctx, "no choices")
        self.take(completion)
        self.done = True

    def progress(self) -> StreamProgress:
        now = anyio.current_time()
        if now - self._text_at >= TEXT_EVERY:
            self._text_at = now
            self._text_seen = self.text_so_far()
        return StreamProgress(
            tokens=self.deltas,
            elapsed=now - self.started,
            time_to_first_token=self.first_token_at,
            model=self.model,
            text=self._text_seen,
        )

    def text_so_far(self) -> str:
        """The answer's text so far; joined at most every ``TEXT_EVERY`` s, so a long stream stays linear."""
        return ""

    def check_complete(self) -> None:
        """After the stream ends: fail unless it said how it finished.

        A stream with no finish reason was cut: silently by LM Studio on a context overflow
        (nothing at all), mid-way by a crash (no ``[DONE]``), or by llama-cpp-python, whose
        ``interrupt_requests`` ends a running stream with ``[DONE]`` and no finish reason when
        another request arrives. None of these is an answer.
        """
        if self.finish_reason is not None or not self.streamed:
            return
        if self.done and self.events > 0:
            raise LLMResponseError(
                f"{self.ctx.server} ended the stream for {self.ctx.describe()} after {self.deltas} tokens with "
                "[DONE] but no finish reason, so the generation was cut, not finished. llama-cpp-python does this "
                "when another request arrives (its interrupt_requests setting): start it with interrupt_requests "
                "off, or send it one request at a time. Retrying is safe",
                retryable=True,
                details=self.ctx.details(status=200, in_stream=True, tokens=self.deltas, reason="interrupted"),
            )
        if self.events == 0:
            raise LLMResponseError(
                f"{self.ctx.server} ended the stream for {self.ctx.describe()} without sending anything. "
                "LM Studio does this when the prompt exceeds the loaded context length (GGUF models); "
                "check the server's log, shorten the prompt, or load the model with a larger context.",
                details=self.ctx.details(status=200, in_stream=True, reason="empty_stream"),
            )
        raise LLMResponseError(
            f"{self.ctx.server} closed the stream for {self.ctx.describe()} after {self.deltas} tokens "
            "without finishing it. The server may have crashed or been restarted; check its log.",
            retryable=True,
            details=self.ctx.details(status=200, in_stream=True, tokens=self.deltas),
        )


class ChatAccumulator(StreamAccumulator):
    """Chat completion chunks (or one whole body) into a :class:`ChatOutcome`."""

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self._think = ThinkSplitter()
        self._reasoning: list[str] = []
        self._tools: ToolCallAccumulator | None = None
        self._usage: Usage | None = None
        self._stats: dict[str, Any] | None = None
        self._in_reasoning = False

    def _tool_calls(self) -> ToolCallAccumulator:
        if self._tools is None:
            self._tools = ToolCallAccumulator(self.id or secrets.token_hex(8))
        return self._tools

    def take(self, chunk: ChatCompletion) -> bool:
        self.id = self.id or chunk.id
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self._usage = usage_from_wire(chunk.usage)
        self._stats = chunk.stats or chunk.timings or self._stats
        produced = False
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # n > 1 is not something the bridge asks for
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
            delta = choice.delta or choice.message
            if delta is None:
                continue
            produced = self._take_delta(delta) or produced
        return produced

    def _take_delta(self, delta: ChatDelta) -> bool:
        produced = False
        if reasoning := reasoning_text(delta):
            self._reasoning.append(reasoning)
            self._in_reasoning = True
            self._delta()
            produced = True
        if content := content_text(delta.content):
            self._think.feed(content)
            self._in_reasoning = self._think.inside
            self._delta()
            produced = True
        if delta.tool_calls and self._tool_calls().feed(delta.tool_calls):
            self._in_reasoning = False
            if not produced:
                self._delta()
            produced = True
        return produced

    def progress(self) -> StreamProgress:
        return msgspec.structs.replace(
            super().progress(), reasoning=self._in_reasoning, tool_calls=len(self._tools or ())
        )

    def text_so_far(self) -> str:
        return self._think.content_so_far()

    def outcome(self) -> ChatOutcome:
        content, inline_reasoning = self._think.finish()
        reasoning = "".join(self._reasoning)
        if inline_reasoning:
            reasoning = f"{reasoning}\n{inline_reasoning}" if reasoning else inline_reasoning
        return ChatOutcome(
            content=content,
            reasoning=reasoning,
            tool_calls=self._tools.calls() if self._tools else [],
            finish_reason=self.finish_reason,
            server_stats=self._stats or None,
            **self._generation(self._usage),
        )


class CompletionAccumulator(StreamAccumulator):
    """Legacy text-completion chunks (or one whole body) into a :class:`CompletionOutcome`."""

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self._text: list[str] = []
        self._usage: Usage | None = None

    def take(self, chunk: ChatCompletion) -> bool:
        self.id = self.id or chunk.id
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self._usage = usage_from_wire(chunk.usage)
        produced = False
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
            if choice.text:
                self._text.append(choice.text)
                self._delta()
                produced = True
        return produced

    def text_so_far(self) -> str:
        return "".join(self._text)

    def outcome(self) -> CompletionOutcome:
        return CompletionOutcome(
            text="".join(self._text), finish_reason=self.finish_reason, **self._generation(self._usage)
        )


def decode_json_body(raw: bytes, ctx: CallContext) -> Any:
    """A 200 body as JSON, raising the server's error if it is an error body (LM Studio's unknown routes)."""
    try:
        payload = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise _not_json(ctx, raw) from None
    found = server_error_from_payload(payload)
    if found is not None and not (isinstance(payload, dict) and (payload.get("choices") or payload.get("data"))):
        raise error_in_200_body(found, ctx)
    return payload


def _not_json(ctx: CallContext, raw: bytes) -> LLMResponseError:
    sample = raw[:200].decode("utf-8", errors="replace")
    return LLMResponseError(
        f"{ctx.server} answered {ctx.describe()} with something that is not JSON: {sample!r}. "
        "The base URL probably points at something other than an OpenAI-compatible server.",
        details=ctx.details(status=200),
    )


def bad_shape(ctx: CallContext, problem: object) -> LLMResponseError:
    return LLMResponseError(
        f"{ctx.server} answered {ctx.describe()} with JSON of an unexpected shape ({problem}). "
        "The server may not be OpenAI-compatible, or the base URL points at the wrong service.",
        details=ctx.details(status=200),
    )
