"""``POST /v1/responses``: the stateful OpenAI Responses API as LM Studio serves it (0.3.29+).

A stored response keeps its whole conversation, so a request with
``previous_response_id`` continues it (the recorded request's ``messages``
show the history). Function tools must use the flat Responses format
``{type:"function", name, parameters}``; the nested chat format is a 400 on
``tools.0.name``, as in LM Studio. Streams are named SSE events
(``response.created`` … ``response.output_text.delta`` … ``response.completed``)
with no ``[DONE]``.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import msgspec

from bridge.sim._chat import Collected, failure_response, planned_job, prelude
from bridge.sim._config import FaultKind
from bridge.sim._engine import GenerationFailed, Job, run_generation
from bridge.sim._faults import CHAT_FAULTS
from bridge.sim._generate import Ids, PlannedCall, ToolDef, message_text
from bridge.sim._http import HttpRequest, Response, StreamingResponse, StreamWriter, json_response
from bridge.sim._params import Invalid, json_object, max_tokens, opt_array, opt_bool, opt_number, required, wrong_type
from bridge.sim._state import ServerState, Tracker
from bridge.sim._wire import error_frame, invalid_request

__all__ = ["responses"]

_encode = msgspec.json.encode


def _input_messages(value: object) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise wrong_type("input", "string or array", value)
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise wrong_type(f"input.{i}", "object", item)
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"role": item.get("role", "user"), "content": message_text(item.get("content"))})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else message_text(output)
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        elif kind == "function_call":
            call = {"name": item.get("name"), "arguments": item.get("arguments", "{}")}
            messages.append(
                {"role": "assistant", "tool_calls": [{"id": item.get("call_id"), "type": "function", "function": call}]}
            )
        elif kind != "reasoning":
            raise Invalid(invalid_request("Invalid", param=f"input.{i}.type", code="invalid_string"))
    return messages


def _tools(body: dict[str, Any]) -> list[ToolDef]:
    tools = opt_array(body, "tools")
    found: list[ToolDef] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise wrong_type(f"tools.{i}", "object", tool)
        kind = tool.get("type")
        if kind == "function":
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                raise required(f"tools.{i}.name")
            parameters = tool.get("parameters")
            found.append(ToolDef(name, parameters if isinstance(parameters, dict) else {}))
        elif kind != "mcp":
            raise Invalid(invalid_request("Invalid", param=f"tools.{i}.type", code="invalid_string"))
    return found


def _schema(body: dict[str, Any]) -> dict[str, Any] | None:
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise required("text.format.schema")
        return schema
    return None


def _reasoning_on(body: dict[str, Any]) -> bool:
    reasoning = body.get("reasoning")
    return not (isinstance(reasoning, dict) and reasoning.get("effort") == "none")


def _history(state: ServerState, previous: object) -> list[dict[str, Any]]:
    """The conversation a ``previous_response_id`` continues (none without one)."""
    if previous is None:
        return []
    if not isinstance(previous, str) or previous not in state.responses:
        message = f"Previous response with id '{previous}' not found."
        raise Invalid(invalid_request(message, param="previous_response_id", code="previous_response_not_found"))
    return state.responses[previous]


async def responses(state: ServerState, request: HttpRequest) -> Response | StreamingResponse:
    """``POST /v1/responses``."""
    try:
        body = json_object(request)
        if "input" not in body:
            raise required("input")
        new_messages = _input_messages(body["input"])
        tools = _tools(body)
        stream = opt_bool(body, "stream")
        store = opt_bool(body, "store", default=True)
        limit = max_tokens(body, "max_output_tokens")
        schema = _schema(body)
        ttl = opt_number(body, "ttl")
        opt_number(body, "temperature")
        opt_number(body, "top_p")
        previous = body.get("previous_response_id")
        history = _history(state, previous)
        spec, instance_id, requested = state.resolve(body, "llm")
    except Invalid as exc:
        return exc.response
    conversation = [*history, *new_messages]
    instructions = body.get("instructions")
    prompt = conversation
    if isinstance(instructions, str) and instructions:
        prompt = [{"role": "system", "content": instructions}, *conversation]
    state.record(request, spec, requested, body, prompt)
    tracker = Tracker(state.stats, spec.id, request)
    handed_off = False
    try:
        # llama-cpp-python, whose interrupts INTERRUPT imitates, has no /v1/responses.
        unused = {FaultKind.EMPTY_TOOL_CALLS, FaultKind.INTERRUPT}
        allowed = CHAT_FAULTS - unused - (set() if tools else {FaultKind.MALFORMED_TOOL_CALL})
        turn, fault, early = await prelude(state, spec.id, allowed)
        if early is not None:
            return early
        # Responses always separate reasoning into its own output item.
        plan_spec = msgspec.structs.replace(spec, reasoning="reasoning") if spec.reasoning else spec
        reasoning_on = _reasoning_on(body)
        job = planned_job(
            state, spec, instance_id, turn, fault, body, prompt, tools, schema, limit, ttl, reasoning_on, plan_spec
        )
        tracker.job = job
        turn_state = _Turn(state, job, conversation, previous if isinstance(previous, str) else None, store)
        if stream:
            handed_off = True
            return StreamingResponse(partial(_stream, state, job, tracker, turn_state))
        sink = Collected()
        try:
            finish = await run_generation(job, sink, state.registry, state.stats)
        except GenerationFailed as exc:
            return failure_response(exc, state)
        reply = turn_state.complete(sink, finish)
        tracker.ok = True
        return json_response(200, reply)
    finally:
        if not handed_off:
            tracker.close()


class _Turn:
    """Builds the response object and stores the conversation for ``previous_response_id``."""

    __slots__ = ("conversation", "id", "ids", "job", "previous", "state", "store")

    def __init__(
        self, state: ServerState, job: Job, conversation: list[dict[str, Any]], previous: str | None, store: bool
    ) -> None:
        self.state = state
        self.job = job
        self.conversation = conversation
        self.previous = previous
        self.store = store
        self.id = state.ids.response()
        self.ids = state.ids

    def envelope(self, status: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "model": self.job.spec.id,
            "previous_response_id": self.previous,
            "output": [],
        }

    def complete(self, sink: Collected, finish: str, item_ids: list[str] | None = None) -> dict[str, Any]:
        """The final response object (and the stored conversation)."""
        ids = iter(item_ids or [])
        output: list[dict[str, Any]] = []
        reasoning = "".join(sink.reasoning_parts)
        content = "".join(sink.content_parts)
        if reasoning:
            output.append(_reasoning_item(next(ids, None) or self.ids.item("rs"), reasoning, "completed"))
        if content or not sink.calls:
            output.append(_message_item(next(ids, None) or self.ids.item("msg"), content, "completed"))
        calls = [sink.calls[i] for i in sorted(sink.calls)]
        for call in calls:
            fn = call["function"]
            item_id = next(ids, None) or self.ids.item("fc")
            output.append(_call_item(item_id, call["id"], fn["name"], fn["arguments"], "completed"))
        reply = self.envelope("incomplete" if finish == "length" else "completed")
        reply["output"] = output
        reply["incomplete_details"] = {"reason": "max_output_tokens"} if finish == "length" else None
        reply["usage"] = {
            "input_tokens": self.job.prompt_tokens,
            "output_tokens": self.job.tokens_sent,
            "total_tokens": self.job.prompt_tokens + self.job.tokens_sent,
        }
        if self.store:
            assistant: dict[str, Any] = {"role": "assistant", "content": content}
            if calls:
                assistant["tool_calls"] = calls
            self.state.responses[self.id] = [*self.conversation, assistant]
        return reply


def _reasoning_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "reasoning_text", "text": text}] if text else []
    return {"id": item_id, "type": "reasoning", "summary": [], "content": content, "status": status}


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


class _Events(Collected):
    """Collects the reply and streams it as Responses events, one output item at a time."""

    __slots__ = ("_ids", "_open", "_seq", "_writer", "item_ids")

    def __init__(self, writer: StreamWriter, ids: Ids) -> None:
        super().__init__()
        self._writer = writer
        self._ids = ids
        self._seq = 0
        self._open: tuple[str, str, int] | None = None  # (kind, item id, output index)
        self.item_ids: list[str] = []

    def event(self, kind: str, **fields: Any) -> None:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        self._writer.write(b"event: " + kind.encode() + b"\ndata: " + _encode(payload) + b"\n\n")

    def _switch(self, kind: str, item_id: str, item: dict[str, Any]) -> int:
        self.close_item()
        index = len(self.item_ids)
        self.item_ids.append(item_id)
        self._open = (kind, item_id, index)
        self.event("response.output_item.added", output_index=index, item=item)
        return index

    def close_item(self) -> None:
        if self._open is None:
            return
        kind, item_id, index = self._open
        self._open = None
        if kind == "reasoning":
            text = "".join(self.reasoning_parts)
            self.event("response.reasoning_text.done", item_id=item_id, output_index=index, content_index=0, text=text)
            item = _reasoning_item(item_id, text, "completed")
        elif kind == "message":
            text = "".join(self.content_parts)
            part = {"type": "output_text", "text": text, "annotations": []}
            self.event("response.output_text.done", item_id=item_id, output_index=index, content_index=0, text=text)
            self.event("response.content_part.done", item_id=item_id, output_index=index, content_index=0, part=part)
            item = _message_item(item_id, text, "completed")
        else:
            call = self.calls[int(kind.split(":")[1])]
            fn = call["function"]
            args = fn["arguments"]
            self.event("response.function_call_arguments.done", item_id=item_id, output_index=index, arguments=args)
            item = _call_item(item_id, call["id"], fn["name"], args, "completed")
        self.event("response.output_item.done", output_index=index, item=item)

    def reasoning(self, text: str) -> None:
        if self._open is None or self._open[0] != "reasoning":
            item_id = self._ids.item("rs")
            self._switch("reasoning", item_id, _reasoning_item(item_id, "", "in_progress"))
        super().reasoning(text)
        assert self._open is not None
        _, item_id, index = self._open
        self.event("response.reasoning_text.delta", item_id=item_id, output_index=index, content_index=0, delta=text)

    def content(self, text: str) -> None:
        if self._open is None or self._open[0] != "message":
            item_id = self._ids.item("msg")
            index = self._switch("message", item_id, _message_item(item_id, "", "in_progress"))
            part = {"type": "output_text", "text": "", "annotations": []}
            self.event("response.content_part.added", item_id=item_id, output_index=index, content_index=0, part=part)
        super().content(text)
        assert self._open is not None
        _, item_id, index = self._open
        self.event("response.output_text.delta", item_id=item_id, output_index=index, content_index=0, delta=text)

    def call_start(self, index: int, call: PlannedCall) -> None:
        super().call_start(index, call)
        item_id = self._ids.item("fc")
        self._switch(f"call:{index}", item_id, _call_item(item_id, call.id, call.name, "", "in_progress"))

    def call_arguments(self, index: int, fragment: str) -> None:
        super().call_arguments(index, fragment)
        assert self._open is not None
        _, item_id, output_index = self._open
        self.event("response.function_call_arguments.delta", item_id=item_id, output_index=output_index, delta=fragment)

    async def pause(self, seconds: float) -> None:
        await self._writer.pause(seconds)


async def _stream(state: ServerState, job: Job, tracker: Tracker, turn: _Turn, writer: StreamWriter) -> None:
    try:
        events = _Events(writer, state.ids)
        events.event("response.created", response=turn.envelope("in_progress"))
        events.event("response.in_progress", response=turn.envelope("in_progress"))
        await writer.flush()
        try:
            finish = await run_generation(job, events, state.registry, state.stats)
        except GenerationFailed as exc:
            writer.write(error_frame(exc.message, event_type="error"))
            return
        if not events.content_parts and not events.calls:
            events.content("")  # an empty reply still has its message item
        events.close_item()
        events.event("response.completed", response=turn.complete(events, finish, events.item_ids))
        tracker.ok = True
    finally:
        tracker.close()
