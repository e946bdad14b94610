"""Assemble ``/v1/responses`` results from named stream events or a whole body.

Deltas drive progress (first token, token count); the ``response.completed``
event carries the whole response, which is preferred for the outcome when it
arrives because it is what the server stored.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bridge.errors import BridgeError
from bridge.llm._chat import StreamAccumulator, bad_shape, decode_json_body, usage_from_wire
from bridge.llm._errors import CallContext, ServerError, error_in_stream, server_error_from_payload
from bridge.llm._outcome import ResponsesOutcome, Usage
from bridge.llm._params import ToolCall
from bridge.llm._toolcalls import finish_tool_calls
from bridge.llm._wire import ResponseObject, ResponsesEvent

__all__ = ["ResponsesAccumulator"]

_event_decoder = msgspec.json.Decoder(ResponsesEvent)

_CONTENT_DELTAS = frozenset({"response.output_text.delta"})
_REASONING_DELTAS = frozenset({"response.reasoning_text.delta", "response.reasoning_summary_text.delta"})
_FINAL = frozenset({"response.completed", "response.incomplete"})


def _texts(parts: Any, kinds: frozenset[str]) -> str:
    if not isinstance(parts, list):
        return ""
    found = [part.get("text") for part in parts if isinstance(part, dict) and part.get("type") in kinds]
    return "".join(text for text in found if isinstance(text, str))


class _Parsed:
    __slots__ = ("content", "reasoning", "tool_calls")

    def __init__(self, response: ResponseObject) -> None:
        content: list[str] = []
        reasoning: list[str] = []
        raw_calls: list[tuple[str, str, str]] = []
        for item in response.output:
            kind = item.get("type")
            if kind == "message":
                content.append(_texts(item.get("content"), frozenset({"output_text", "text"})))
            elif kind == "reasoning":
                text = _texts(item.get("content"), frozenset({"reasoning_text", "text"}))
                reasoning.append(text or _texts(item.get("summary"), frozenset({"summary_text"})))
            elif kind == "function_call":
                arguments = item.get("arguments")
                if not isinstance(arguments, str):
                    arguments = msgspec.json.encode(arguments).decode() if arguments is not None else ""
                call_id = item.get("call_id") or item.get("id") or ""
                raw_calls.append((str(call_id), str(item.get("name") or ""), arguments))
        self.content = "".join(content)
        self.reasoning = "".join(reasoning)
        self.tool_calls: list[ToolCall] = finish_tool_calls(raw_calls, response.id)


class ResponsesAccumulator(StreamAccumulator):
    """Responses stream events (or one whole body) into a :class:`ResponsesOutcome`."""

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._final: ResponseObject | None = None

    def _failure(self, event: ResponsesEvent) -> BridgeError:
        payload: Any = {"error": event.error, "message": event.message}
        if event.response is not None and event.response.error is not None:
            payload = {"error": event.response.error}
        found = server_error_from_payload(payload)
        if found is None:
            found = ServerError(message=str(event.message or event.code or "the response failed"))
        return error_in_stream(found, self.ctx, tokens=self.deltas)

    def _feed_data(self, data: str) -> bool:
        event = _event_decoder.decode(data)
        self.events += 1
        kind = event.type
        if kind in ("error", "response.failed"):
            raise self._failure(event)
        if event.response is not None:
            self.id = event.response.id or self.id
            self.model = event.response.model or self.model
        if kind in _FINAL and event.response is not None:
            self._final = event.response
            self.finish_reason = event.response.status or "completed"
            self.done = True
            return False
        if not isinstance(event.delta, str) or not event.delta:
            return False
        if kind in _CONTENT_DELTAS:
            self._content.append(event.delta)
        elif kind in _REASONING_DELTAS:
            self._reasoning.append(event.delta)
        elif kind != "response.function_call_arguments.delta":
            return False
        self._delta()
        return True

    def take_whole(self, raw: bytes) -> None:
        self.streamed = False
        payload = decode_json_body(raw, self.ctx)
        try:
            response = msgspec.convert(payload, ResponseObject)
        except msgspec.ValidationError as exc:
            raise bad_shape(self.ctx, exc) from None
        if response.status == "failed":
            found = server_error_from_payload({"error": response.error}) or ServerError(message="the response failed")
            raise error_in_stream(found, self.ctx, tokens=0)
        self._final = response
        self.id, self.model = response.id, response.model or self.model
        self.finish_reason = response.status
        self.done = True
        if response.output:
            self._delta()

    def outcome(self) -> ResponsesOutcome:
        final = self._final
        usage: Usage | None = None
        if final is not None:
            parsed = _Parsed(final)
            content, reasoning, tool_calls = parsed.content, parsed.reasoning, parsed.tool_calls
            usage = usage_from_wire(final.usage)
            content = content or "".join(self._content)
            reasoning = reasoning or "".join(self._reasoning)
        else:
            content, reasoning, tool_calls = "".join(self._content), "".join(self._reasoning), []
        return ResponsesOutcome(
            content=content,
            reasoning=reasoning,
            tool_calls=tool_calls,
            status=final.status if final is not None else self.finish_reason,
            output=final.output if final is not None else [],
            **self._generation(usage),
        )
