"""``/v1/chat/completions`` and ``/v1/completions`` (and their ``/api/v0`` twins), streamed or not.

Streams follow LM Studio's framing (lmstudio-api.md §1): every delta carries
``role: "assistant"``; a tool call's first delta has ``index``, a numeric-string
``id``, ``type`` and ``name`` with ``arguments: ""``, later deltas only argument
fragments; the last chunk is ``delta: {}`` with the finish reason; an optional
usage chunk with ``choices: []``; then ``data: [DONE]``. An in-band failure is
an ``event: error`` frame and the stream ends without ``[DONE]``.
"""

from __future__ import annotations

import contextlib
import time
from functools import partial
from typing import Any

import anyio
import msgspec

from bridge.sim._config import FaultKind, SimModel
from bridge.sim._engine import GenerationFailed, Job, run_generation, tokens_per_second
from bridge.sim._faults import CHAT_FAULTS, TEXT_FAULTS, early_reply
from bridge.sim._generate import PlannedCall, ToolDef, estimate_prompt_tokens, plan_reply
from bridge.sim._http import HttpRequest, Response, StreamingResponse, StreamWriter, json_response
from bridge.sim._params import (
    Invalid,
    chat_messages,
    chat_tools,
    json_object,
    max_tokens,
    opt_bool,
    opt_number,
    response_schema,
)
from bridge.sim._script import CallTools, Fault, Turn
from bridge.sim._state import ServerState, Tracker
from bridge.sim._wire import (
    error_frame,
    invalid_request,
    model_unloaded,
    no_models_loaded,
    openai_overflow_response,
    overflow_response,
    server_error,
)

__all__ = ["chat_completions", "completions", "failure_response", "prelude"]

_encode = msgspec.json.encode
_NULL_TAIL = b',"logprobs":null,"finish_reason":null}]}\n\n'
_SAMPLING = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repeat_penalty",
    "seed",
)
_STOP_REASONS = {"stop": "eosFound", "length": "maxPredictedTokensReached", "tool_calls": "toolCalls"}


async def prelude(
    state: ServerState, model: str, allowed: frozenset[FaultKind]
) -> tuple[Turn | None, Fault | None, Response | None]:
    """Take the request's scripted turn and fault; answer at once if the fault comes before any work."""
    turn, fault = state.take_turn(model, allowed)
    if fault is not None:
        early = early_reply(fault)
        if early is not None:
            return turn, fault, early
        if fault.kind is FaultKind.NO_ANSWER:
            await anyio.sleep_forever()  # until the client leaves (the server cancels us)
    return turn, fault, None


def planned_job(
    state: ServerState,
    spec: SimModel,
    instance_id: str | None,
    turn: Turn | None,
    fault: Fault | None,
    body: dict[str, Any],
    messages: list[dict[str, Any]],
    tools: list[ToolDef],
    schema: dict[str, Any] | None,
    limit: int | None,
    ttl: float | None,
    reasoning_on: bool,
    plan_spec: SimModel | None = None,
) -> Job:
    """Plan the reply to a chat or a response request and wrap it as the job that generates it."""
    plan = plan_reply(turn, plan_spec or spec, messages, tools, reasoning_on, schema, state.ids, fault)
    prompt_tokens = estimate_prompt_tokens(messages, body.get("tools") or ())
    return Job(spec, instance_id, plan, prompt_tokens, limit, fault, ttl=ttl)


def failure_response(exc: GenerationFailed, state: ServerState) -> Response:
    """A non-streamed reply for an in-band failure, in LM Studio's (string-bodied) 400 forms."""
    if exc.kind == "context_overflow":
        if state.config.overflow_style == "llama-cpp-python":
            return openai_overflow_response(exc.prompt_tokens, exc.context_length)
        return overflow_response(exc.prompt_tokens, exc.context_length)
    if exc.kind == "not_loaded":
        return no_models_loaded()
    return model_unloaded(exc.message)


def end_failed_stream(state: ServerState, exc: GenerationFailed, writer: StreamWriter) -> None:
    """End a stream whose generation failed in-band: an ``event: error`` frame, or nothing at all for a
    prompt over the context on llama-cpp-python (``overflow_style``)."""
    if exc.kind == "context_overflow" and state.config.overflow_style == "llama-cpp-python":
        end_empty(state, writer)
    else:
        writer.write(error_frame(exc.message))


def end_whole(state: ServerState, writer: StreamWriter) -> None:
    """A stream that ended whole; with ``close_kept_alive_every`` its connection may serve no more."""
    every = state.config.close_kept_alive_every
    if every and writer.number % every == 0:
        writer.close_after()


def end_empty(state: ServerState, writer: StreamWriter) -> None:
    """A stream that ends without a byte; with ``close_after_empty_stream`` its connection serves no more."""
    if state.config.close_after_empty_stream:
        writer.close_after()


def _usage(job: Job) -> dict[str, int]:
    return {
        "prompt_tokens": job.prompt_tokens,
        "completion_tokens": job.tokens_sent,
        "total_tokens": job.prompt_tokens + job.tokens_sent,
    }


def _v0_extras(job: Job, finish: str | None) -> dict[str, Any]:
    spec = job.spec
    ttft = (job.first_token_at or 0.0) - (job.slot_at or 0.0)
    generation = (job.finished_at or 0.0) - (job.first_token_at or 0.0)
    return {
        "stats": {
            "tokens_per_second": tokens_per_second(job),
            "time_to_first_token": max(ttft, 0.0),
            "generation_time": max(generation, 0.0),
            "stop_reason": _STOP_REASONS.get(finish, finish) if finish is not None else None,
        },
        "model_info": {
            "arch": spec.arch,
            "quant": spec.quantization,
            "format": "gguf",
            "context_length": job.instance.context_length if job.instance else spec.context_length,
        },
        "runtime": {"name": "llama.cpp-sim", "version": "1.0.0", "supported_formats": ["gguf"]},
    }


class Collected:
    """A non-streamed reply being collected (a :class:`~bridge.sim._engine.Sink`)."""

    __slots__ = ("calls", "content_parts", "reasoning_parts")

    def __init__(self) -> None:
        self.reasoning_parts: list[str] = []
        self.content_parts: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}

    def reasoning(self, text: str) -> None:
        self.reasoning_parts.append(text)

    def content(self, text: str) -> None:
        self.content_parts.append(text)

    def call_start(self, index: int, call: PlannedCall) -> None:
        self.calls[index] = {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}

    def call_arguments(self, index: int, fragment: str) -> None:
        self.calls[index]["function"]["arguments"] += fragment

    async def pause(self, seconds: float) -> None:
        if seconds > 0:
            await anyio.sleep(seconds)


class _ChatFrames:
    """Chat chunks straight to the stream; the constant part of every chunk is encoded once."""

    __slots__ = ("_head", "_reasoning_key", "_writer")

    def __init__(self, writer: StreamWriter, envelope: dict[str, Any], reasoning_field: str | None) -> None:
        self._writer = writer
        self._head = b"data: " + _encode(envelope)[:-1] + b',"choices":[{"index":0,"delta":'
        self._reasoning_key = b'{"role":"assistant","' + (reasoning_field or "reasoning_content").encode() + b'":'

    def reasoning(self, text: str) -> None:
        self._writer.write(self._head + self._reasoning_key + _encode(text) + b"}" + _NULL_TAIL)

    def content(self, text: str) -> None:
        self._writer.write(self._head + b'{"role":"assistant","content":' + _encode(text) + b"}" + _NULL_TAIL)

    def role(self) -> None:
        self._writer.write(self._head + b'{"role":"assistant"}' + _NULL_TAIL)

    def call_start(self, index: int, call: PlannedCall) -> None:
        delta = {
            "role": "assistant",
            "tool_calls": [
                {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            ],
        }
        self._writer.write(self._head + _encode(delta) + _NULL_TAIL)

    def call_arguments(self, index: int, fragment: str) -> None:
        delta = {"role": "assistant", "tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
        self._writer.write(self._head + _encode(delta) + _NULL_TAIL)

    async def pause(self, seconds: float) -> None:
        await self._writer.pause(seconds)

    def finish(self, reason: str) -> None:
        self._writer.write(self._head + b'{},"logprobs":null,"finish_reason":' + _encode(reason) + b"}]}\n\n")


class _TextFrames:
    """Legacy completion chunks (``text`` instead of ``delta``)."""

    __slots__ = ("_head", "_writer")

    def __init__(self, writer: StreamWriter, envelope: dict[str, Any]) -> None:
        self._writer = writer
        self._head = b"data: " + _encode(envelope)[:-1] + b',"choices":[{"index":0,"text":'

    def reasoning(self, text: str) -> None:
        self.content(text)

    def content(self, text: str) -> None:
        self._writer.write(self._head + _encode(text) + _NULL_TAIL)

    def call_start(self, index: int, call: PlannedCall) -> None:
        pass  # a completion has no tool calls; plans for it never carry any

    def call_arguments(self, index: int, fragment: str) -> None:
        pass

    async def pause(self, seconds: float) -> None:
        await self._writer.pause(seconds)

    def finish(self, reason: str) -> None:
        self._writer.write(self._head + b'"","logprobs":null,"finish_reason":' + _encode(reason) + b"}]}\n\n")


def _sampling(body: dict[str, Any]) -> None:
    for name in _SAMPLING:
        opt_number(body, name)


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _reasoning_on(body: dict[str, Any]) -> bool:
    return body.get("reasoning_effort") != "none"


async def chat_completions(state: ServerState, request: HttpRequest) -> Response | StreamingResponse:
    """``POST /v1/chat/completions`` (and ``/api/v0/chat/completions``, which adds ``stats``)."""
    try:
        body = json_object(request)
        messages = chat_messages(body)
        tools = chat_tools(body)
        stream = opt_bool(body, "stream")
        limit = max_tokens(body, "max_tokens", "max_completion_tokens")
        schema = response_schema(body)
        ttl = opt_number(body, "ttl")
        _sampling(body)
        spec, instance_id, requested = state.resolve(body, "llm")
    except Invalid as exc:
        return exc.response
    state.record(request, spec, requested, body, messages)
    images = count_images(messages)
    if images and not spec.vision:
        state.stats.model(spec.id).errors += 1
        state.stats.total.errors += 1
        # LM Studio's answer on its REST endpoint (lmstudio-bug-tracker#908).
        return json_response(400, {"error": "Model does not support images. Please use a model that does."})
    if images:
        state.stats.model(spec.id).images += images
        state.stats.total.images += images
    refuse_calls = False  # llama-cpp-python 0.3.36: a streamed tool choice ends empty once the model picks a tool
    if spec.function_calling_format and tools:
        if body.get("tool_choice") is None:
            tools = []  # llama-cpp-python puts the tools in the prompt only for a given tool_choice
        elif stream and state.config.streamed_tool_choice == "http_500":
            return server_error("Automatic streaming tool choice is not supported")
        else:
            refuse_calls = stream and body.get("tool_choice") == "auto"
    tracker = Tracker(state.stats, spec.id, request)
    handed_off = False
    try:
        allowed = CHAT_FAULTS if tools else CHAT_FAULTS - {FaultKind.MALFORMED_TOOL_CALL}
        turn, fault, early = await prelude(state, spec.id, allowed)
        if early is not None:
            return early
        job = planned_job(
            state, spec, instance_id, turn, fault, body, messages, tools, schema, limit, ttl, _reasoning_on(body)
        )
        plan = job.plan
        tracker.job = job
        if stream and refuse_calls and plan.calls:
            handed_off = True
            return StreamingResponse(partial(_stream_refused, state, job, tracker))
        if stream:
            handed_off = True
            usage = _include_usage(body) and state.config.stream_usage
            return StreamingResponse(partial(_stream_chat, state, job, tracker, usage))
        generated = await _generate(state, job)
        if isinstance(generated, Response):
            return generated
        sink, finish = generated
        reply = _chat_reply(state, job, sink, finish)
        return _answered(request, tracker, job, finish, reply)
    finally:
        if not handed_off:
            tracker.close()


def _answered(request: HttpRequest, tracker: Tracker, job: Job, finish: str | None, reply: dict[str, Any]) -> Response:
    """The 200 of a whole reply; LM Studio's ``/api/v0/`` endpoints add their stats."""
    if request.path.startswith("/api/v0/"):
        reply.update(_v0_extras(job, finish))
    tracker.ok = True
    return json_response(200, reply)


async def _generate(state: ServerState, job: Job) -> tuple[Collected, str | None] | Response:
    """The whole reply; an interrupted one is cut short (no finish reason), any other failure is its response."""
    sink = Collected()
    try:
        return sink, await run_generation(job, sink, state.registry, state.stats)
    except GenerationFailed as exc:
        if exc.kind != "interrupted":
            return failure_response(exc, state)
        return sink, None


def count_images(messages: list[dict[str, Any]]) -> int:
    """Image parts in the messages (OpenAI's ``{"type": "image_url", "image_url": {"url": ...}}``)."""
    return sum(
        1
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") == "image_url"
    )


def _reasoning_field(spec: SimModel) -> str | None:
    return spec.reasoning if spec.reasoning in ("reasoning_content", "reasoning") else None


def _envelope(state: ServerState, job: Job, kind: str, id_: str) -> dict[str, Any]:
    model = job.instance.id if job.instance else job.spec.id
    return {"id": id_, "object": kind, "created": int(time.time()), "model": model, "system_fingerprint": model}


def _chat_reply(state: ServerState, job: Job, sink: Collected, finish: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    content = "".join(sink.content_parts)
    if content or not sink.calls:
        message["content"] = content
    field = _reasoning_field(job.spec)
    if field is not None and sink.reasoning_parts:
        message[field] = "".join(sink.reasoning_parts)
    if sink.calls:
        message["tool_calls"] = [sink.calls[i] for i in sorted(sink.calls)]
    elif job.plan.empty_tool_calls or state.config.empty_tool_calls:
        message["tool_calls"] = []
    reply = _envelope(state, job, "chat.completion", state.ids.chat())
    reply["choices"] = [{"index": 0, "logprobs": None, "finish_reason": finish, "message": message}]
    reply["usage"] = _usage(job)
    reply["stats"] = {}
    return reply


async def _stream_chat(
    state: ServerState, job: Job, tracker: Tracker, include_usage: bool, writer: StreamWriter
) -> None:
    try:
        await writer.flush()  # the headers go out before any queueing or loading
        envelope = {
            "id": state.ids.chat(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": job.instance_id or job.spec.id,
            "system_fingerprint": job.instance_id or job.spec.id,
        }
        frames = _ChatFrames(writer, envelope, _reasoning_field(job.spec))
        try:
            finish = await run_generation(job, frames, state.registry, state.stats)
        except GenerationFailed as exc:
            if exc.kind == "interrupted":
                frames.role()
                writer.write(b"data: [DONE]\n\n")  # no finish reason: how llama-cpp-python ends a cut stream
                tracker.ok = True
                return
            end_failed_stream(state, exc, writer)
            return
        frames.finish(finish)
        if include_usage:
            writer.write(b"data: " + _encode({**envelope, "choices": [], "usage": _usage(job)}) + b"\n\n")
        writer.write(b"data: [DONE]\n\n")
        end_whole(state, writer)
        tracker.ok = True
    finally:
        tracker.close()


async def _stream_refused(state: ServerState, job: Job, tracker: Tracker, writer: StreamWriter) -> None:
    """A streamed ``tool_choice: "auto"`` whose model picks a tool, on llama-cpp-python 0.3.36: the model decides
    first (a whole generation, under the server's lock), then the server raises "Automatic streaming tool choice
    is not supported" after the 200 headers, so the stream ends without a byte."""
    try:
        await writer.flush()
        with contextlib.suppress(GenerationFailed):  # whatever stopped the decision, the stream says nothing
            await run_generation(job, Collected(), state.registry, state.stats)
        end_empty(state, writer)
    finally:
        tracker.close()


async def completions(state: ServerState, request: HttpRequest) -> Response | StreamingResponse:
    """``POST /v1/completions``: no chat template, so no reasoning and no tool calls."""
    try:
        body = json_object(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            prompt = "".join(prompt)
        if prompt is None:
            return invalid_request("Required", param="prompt", code="missing_required_parameter")
        if not isinstance(prompt, str):
            return invalid_request("Expected string, received " + type(prompt).__name__, param="prompt")
        stream = opt_bool(body, "stream")
        limit = max_tokens(body, "max_tokens")
        ttl = opt_number(body, "ttl")
        _sampling(body)
        spec, instance_id, requested = state.resolve(body, "llm")
    except Invalid as exc:
        return exc.response
    messages = [{"role": "user", "content": prompt}]
    state.record(request, spec, requested, body, messages)
    tracker = Tracker(state.stats, spec.id, request)
    handed_off = False
    try:
        turn, fault, early = await prelude(state, spec.id, TEXT_FAULTS)
        if early is not None:
            return early
        if isinstance(turn, CallTools):
            turn = msgspec.structs.replace(turn, style="text")
        text_fault = fault if fault is not None and fault.kind in TEXT_FAULTS else None
        plan = plan_reply(
            turn, spec=spec, messages=messages, tools=(), reasoning_on=False, json_schema=None, ids=state.ids
        )
        job = Job(spec, instance_id, plan, estimate_prompt_tokens(messages), limit, text_fault, ttl=ttl)
        tracker.job = job
        if stream:
            handed_off = True
            return StreamingResponse(partial(_stream_text, state, job, tracker))
        generated = await _generate(state, job)
        if isinstance(generated, Response):
            return generated
        sink, finish = generated
        reply = _envelope(state, job, "text_completion", state.ids.completion())
        del reply["system_fingerprint"]
        text = "".join(sink.content_parts)
        reply["choices"] = [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]
        reply["usage"] = _usage(job)
        return _answered(request, tracker, job, finish, reply)
    finally:
        if not handed_off:
            tracker.close()


async def _stream_text(state: ServerState, job: Job, tracker: Tracker, writer: StreamWriter) -> None:
    try:
        await writer.flush()
        envelope = {"id": state.ids.completion(), "object": "text_completion", "created": int(time.time())}
        envelope["model"] = job.spec.id
        frames = _TextFrames(writer, envelope)
        try:
            finish = await run_generation(job, frames, state.registry, state.stats)
        except GenerationFailed as exc:
            if exc.kind == "interrupted":
                writer.write(b"data: [DONE]\n\n")
                tracker.ok = True
                return
            end_failed_stream(state, exc, writer)
            return
        frames.finish(finish)
        writer.write(b"data: [DONE]\n\n")
        end_whole(state, writer)
        tracker.ok = True
    finally:
        tracker.close()
