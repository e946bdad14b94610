"""Turning actor replies and errors into MCP tool results, within the client's size limits.

A result has two forms: ``text`` (for hosts that read ``content``) and
``structured`` (machine-readable; Claude Code passes *only* this one to the
model when it is present). So both carry everything the caller needs — the
answer, the model, the error code and what to do — and each is kept under
the output limit on its own. Long answers are cut with a visible marker that
says how much was cut (:func:`cut_text`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from bridge.errors import BridgeError, error_fields, error_from_info, error_text
from bridge.messages import (
    WITHHELD_TOOLS_HOW,
    BridgeStatus,
    ChatResult,
    ChildServerList,
    CompletionResult,
    DownloadedModel,
    EmbeddingResult,
    LoadedModel,
    ModelEntry,
    ModelList,
    ResponseResult,
    RunResult,
    SeriesResult,
    ServerState,
    UnloadedModel,
)

__all__ = [
    "DEFAULT_OUTPUT_LIMIT",
    "BatchOutcome",
    "ToolOutput",
    "batch_fits",
    "batch_output",
    "batch_rows",
    "chat_output",
    "children_output",
    "completion_output",
    "cut_text",
    "current_model_output",
    "embeddings_output",
    "error_output",
    "fit",
    "health_output",
    "loaded_output",
    "models_output",
    "run_output",
    "response_output",
    "status_output",
    "unloaded_output",
]

DEFAULT_OUTPUT_LIMIT: Final = 48_000
"""Characters allowed in each form of a result: under Claude Code's 25,000-token limit even for dense text
(about 2 characters a token), and under the ~50,000 characters past which it writes results to a file."""

_MIN_BODY: Final = 200
"""Characters of text a result cut to the bone still shows."""


@dataclass(slots=True)
class ToolOutput:
    """One tool result before it becomes a ``CallToolResult``."""

    text: str
    structured: dict[str, Any]
    is_error: bool = False

    def size(self) -> int:
        """Characters of the larger form (the structured form as the JSON the host sees)."""
        return max(len(self.text), len(_dumps(self.structured)))


def cut_text(text: str, max_chars: int, *, tail_share: float = 0.2) -> str:
    """``text`` in at most ``max_chars`` characters: its start, a marker saying how much was cut, and its end.

    The marker (``…[cut 12,345 of 20,000 characters]``) counts in ``max_chars``; the end keeps
    ``tail_share`` of the room, as answers and outputs often end with their conclusion.
    """
    total = len(text)
    if total <= max_chars:
        return text
    kept = max(0, max_chars - len(_marker(total, total)))
    tail = int(kept * tail_share)
    head = kept - tail
    return text[:head] + _marker(total - kept, total) + (text[total - tail :] if tail else "")


def _marker(cut: int, total: int) -> str:
    return f"\n…[cut {cut:,} of {total:,} characters]\n"


def _dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    """Drop unset fields (None, empty lists and maps) so the model reads less."""
    return {k: v for k, v in data.items() if v is not None and v != [] and v != {}}


def _builtins(reply: msgspec.Struct) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(reply)
    return data


# --------------------------------------------------------------------------- fitting


def fit(build: Callable[[Sequence[str]], ToolOutput], bodies: Sequence[str], limit: int) -> ToolOutput:
    """Build the output, cutting the long ``bodies`` until both forms fit ``limit`` characters.

    ``build`` makes the output from the (possibly cut) bodies. Room is shared fairly: short bodies keep
    everything, the long ones split what is left. Each cut body carries the marker of :func:`cut_text`.
    """
    output = build(bodies)
    if output.size() <= limit:
        return output
    if not bodies:
        return _last_resort(output, limit)
    room = limit - build(["" for _ in bodies]).size()
    for _ in range(12):
        if room <= 0:
            break
        output = build(_share(bodies, room))
        excess = output.size() - limit
        if excess <= 0:
            return output
        room -= excess + 16  # JSON escapes make bodies longer than counted: take it back and try again
    return _last_resort(output, limit)  # even empty bodies do not fit: the frame itself is too big


def _share(bodies: Sequence[str], room: int) -> list[str]:
    """Water-filling: each body gets an equal share of ``room``; what a short one leaves goes to the others."""
    order = sorted(range(len(bodies)), key=lambda i: len(bodies[i]))
    caps = [0] * len(bodies)
    left, remaining = room, len(bodies)
    for i in order:
        share = left // remaining
        caps[i] = min(len(bodies[i]), share)
        left -= caps[i]
        remaining -= 1
    return [cut_text(body, cap) if len(body) > cap else body for body, cap in zip(bodies, caps, strict=True)]


def _last_resort(output: ToolOutput, limit: int) -> ToolOutput:
    text = cut_text(output.text, limit)
    summary = {k: v for k, v in output.structured.items() if not isinstance(v, list | dict)}
    structured = {**summary, "cut": True, "text": cut_text(output.text, max(_MIN_BODY, limit // 2))}
    while len(_dumps(structured)) > limit and len(structured["text"]) > _MIN_BODY:
        structured["text"] = cut_text(output.text, len(structured["text"]) // 2)
    return ToolOutput(text=text, structured=structured, is_error=output.is_error)


# --------------------------------------------------------------------------- errors


def error_output(error: BridgeError, limit: int = DEFAULT_OUTPUT_LIMIT) -> ToolOutput:
    """An ``isError`` result: text starting with the code, structured content with code/retryable/retry_after.

    A timeout whose details carry ``partial_content`` shows what was generated before the budget ran out.
    """
    partial = error.details.get("partial_content")
    head = error_text(error)
    base = error_fields(error)
    if isinstance(partial, str) and partial:

        def build(bodies: Sequence[str]) -> ToolOutput:
            text = f"{head}\n\nPartial output before the budget ran out:\n{bodies[0]}"
            return ToolOutput(text=text, structured={**base, "partial_content": bodies[0]}, is_error=True)

        return fit(build, [partial], limit)
    return fit(lambda _: ToolOutput(text=head, structured=base, is_error=True), [], limit)


# --------------------------------------------------------------------------- models and servers


def _count(n: int, noun: str) -> str:
    """``1 model``, ``2 models``: counts read as a person would write them."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _sourced(m: ModelEntry, field: str, shown: str) -> str:
    source = m.sources.get(field)
    return f"{shown} ({source})" if source else shown


def _entry_line(m: ModelEntry) -> str:
    parts = [m.id, m.type]
    if m.load_state is not None and m.load_state not in ("loaded", "unloaded"):
        parts.append(m.load_state)  # llama.cpp's router: loading, sleeping ...
    elif m.loaded is not None:
        parts.append("loaded" if m.loaded else "not loaded")
    if m.context_length:
        parts.append(_sourced(m, "context_length", f"context {m.context_length}"))
    if m.tool_use:
        parts.append(_sourced(m, "tool_use", "tool use"))
    if m.vision:
        parts.append(_sourced(m, "vision", "vision"))
    if m.capacity:
        parts.append("on " + ", ".join(f"{c.server} ({c.slots} slots, {_SLOT_SOURCES[c.source]})" for c in m.capacity))
    elif servers := m.servers or ([m.server] if m.server else []):
        parts.append("on " + ", ".join(servers))
    return "- " + " · ".join(parts)


_SLOT_SOURCES = {
    "servers.slots": "servers.slots",
    "models.slots": "models.slots",
    "server": "said by the server",
    "default": "default_limits",
}


def _server_line(s: ServerState) -> str:
    if s.reachable is None:
        state = "not contacted yet"
    elif s.reachable:
        state = "reachable"
    else:
        state = "UNREACHABLE"
    parts = [f"{s.name} ({s.url}): {state}"]
    if s.reachable:
        loaded = "load state unknown (the server does not report it)" if s.loaded is None else f"{len(s.loaded)} loaded"
        parts.append(f"{_count(s.models, 'model')}, {loaded}")
        if s.lmstudio_native_api is not None:
            parts.append("LM Studio native API" if s.lmstudio_native_api else "OpenAI-compatible API only")
    if s.breaker != "closed":
        parts.append(f"breaker {s.breaker}")
    if s.max_concurrent is not None:
        load = f"{s.in_flight} running, {s.queued} waiting, " if s.in_flight is not None else ""
        parts.append(f"{load}max_concurrent {s.max_concurrent}")
    line = "- " + ", ".join(parts)
    if s.last_error is not None and not s.reachable:
        line += f"\n  {s.last_error.code}: {s.last_error.message}"
    return line


def _server_fields(s: ServerState) -> dict[str, Any]:
    data = _compact(_builtins(s))
    if s.last_error is not None:
        data["last_error"] = _compact(
            {"code": str(s.last_error.code), "message": s.last_error.message, "retryable": s.last_error.retryable}
        )
    return data


def _entry_fields(m: ModelEntry) -> dict[str, Any]:
    data = _compact(_builtins(m))
    data.pop("reported_slots", None)  # in ``capacity``, with where each number came from
    if data.get("servers") == [m.server]:
        data.pop("servers")
    return data


def models_output(reply: ModelList, limit: int = DEFAULT_OUTPUT_LIMIT) -> ToolOutput:
    reachable = sum(1 for s in reply.servers if s.reachable)
    header = f"{_count(len(reply.models), 'model')} on {_count(len(reply.servers), 'server')} ({reachable} reachable)"
    if not reply.models:
        header += ". No model matches; drop the filters, or load/download a model in LM Studio"
    lines = [_entry_line(m) for m in reply.models]
    servers = [_server_line(s) for s in reply.servers]
    text = "\n".join([header + ":", *lines, "Servers:", *servers])
    structured = {
        "models": [_entry_fields(m) for m in reply.models],
        "servers": [_server_fields(s) for s in reply.servers],
    }
    return _fit_listing(text, structured, limit)


def health_output(reply: ModelList, limit: int = DEFAULT_OUTPUT_LIMIT) -> ToolOutput:
    reachable = [s for s in reply.servers if s.reachable]
    if reachable:
        servers, models = _count(len(reply.servers), "LLM server"), _count(len(reply.models), "model")
        head = f"ok: {len(reachable)} of {servers} reachable, {models}"
    else:
        head = (
            f"no LLM server reachable ({len(reply.servers)} configured). Start LM Studio's server "
            "(`lms server start`, or the Developer tab) or fix the server URL in the bridge's settings"
        )
    text = "\n".join([head, *(_server_line(s) for s in reply.servers)])
    structured = {
        "healthy": bool(reachable),
        "reachable": len(reachable),
        "models": len(reply.models),
        "servers": [_server_fields(s) for s in reply.servers],
    }
    return _fit_listing(text, structured, limit)


def _fit_listing(text: str, structured: dict[str, Any], limit: int) -> ToolOutput:
    output = ToolOutput(text=text, structured=structured)
    if output.size() <= limit:
        return output
    return _last_resort(output, limit)


def current_model_output(entry: ModelEntry, limit: int = DEFAULT_OUTPUT_LIMIT) -> ToolOutput:
    text = "Default model: " + _entry_line(entry)[2:]
    return fit(lambda _: ToolOutput(text=text, structured={"model": entry.id, **_entry_fields(entry)}), [], limit)


# --------------------------------------------------------------------------- inference


def _footer(
    model: str, tokens: int, duration: float, rate: float | None, finish: str | None, ttft: float | None
) -> str:
    parts = [model]
    if tokens:
        parts.append(f"{tokens} tokens in {duration:.2f} s")
    if rate:
        parts.append(f"{rate:.0f} tokens/s")
    if ttft is not None:
        parts.append(f"first token {ttft:.2f} s")
    if finish:
        parts.append(f"finish {finish}")
    return "[" + " · ".join(parts) + "]"


def _finish_note(finish: str | None) -> str:
    if finish == "length":
        return "\n(The answer stopped at max_tokens; raise max_tokens for a complete answer.)"
    return ""


def _generation_footer(result: ChatResult | CompletionResult) -> str:
    return _footer(
        result.model,
        result.tokens,
        result.duration_s,
        result.tokens_per_second,
        result.finish_reason,
        result.time_to_first_token_s,
    )


def _served(result: ChatResult | CompletionResult | ResponseResult) -> dict[str, Any]:
    """How a call was served, in the fields every generation's result has."""
    return {
        "usage": _compact(_builtins(result.usage)) if result.usage else None,
        "server": result.server or None,
        "time_to_first_token_s": _round(result.time_to_first_token_s),
        "duration_s": _round(result.duration_s),
        "retries": result.retries or None,
    }


def _generation_meta(result: ChatResult | CompletionResult, **extra: Any) -> dict[str, Any]:
    """The structured fields a chat and a completion share, then ``extra`` (empty ones left out)."""
    return _compact(
        {
            "model": result.model,
            "finish_reason": result.finish_reason,
            **_served(result),
            "queued_s": _round(extra.pop("queued_s", None)),
            "tokens": result.tokens,
            "tokens_per_second": _round(result.tokens_per_second, 1),
            **extra,
        }
    )


def chat_output(result: ChatResult, *, raw: bool = False, limit: int = DEFAULT_OUTPUT_LIMIT) -> ToolOutput:
    """The answer first; reasoning (when asked for) and tool calls after; a one-line footer unless ``raw``."""
    footer = _generation_footer(result)
    meta = _generation_meta(result, queued_s=result.queued_s, tool_calls=[_builtins(c) for c in result.tool_calls])
    bodies = [result.content] + ([result.reasoning] if result.reasoning else [])

    def build(cut: Sequence[str]) -> ToolOutput:
        content = cut[0]
        reasoning = cut[1] if len(cut) > 1 else None
        pieces = []
        if reasoning:
            pieces.append(f"<reasoning>\n{reasoning}\n</reasoning>\n")
        pieces.append(content)
        if result.tool_calls:
            calls = "\n".join(f"- {c.function.name}({c.function.arguments})" for c in result.tool_calls)
            pieces.append(f"\nTool calls:\n{calls}")
        if not raw:
            pieces.append(_finish_note(result.finish_reason) + "\n\n" + footer)
        structured = {"content": content}
        if reasoning is not None:
            structured["reasoning"] = reasoning
        return ToolOutput(text="".join(pieces), structured=structured | meta)

    return fit(build, bodies, limit)


def completion_output(result: CompletionResult, limit: int = DEFAULT_OUTPUT_LIMIT) -> ToolOutput:
    footer = _generation_footer(result)
    meta = _generation_meta(result)

    def build(cut: Sequence[str]) -> ToolOutput:
        text = cut[0] + _finish_note(result.finish_reason) + "\n\n" + footer
        return ToolOutput(text=text, structured={"text": cut[0]} | meta)

    return fit(build, [result.text], limit)


def response_output(result: ResponseResult, limit: int = DEFAULT_OUTPUT_LIMIT) -> ToolOutput:
    meta = _compact(
        {
            "response_id": result.id,
            "model": result.model,
            "status": result.status,
            **_served(result),
            "tool_calls": [_builtins(c) for c in result.tool_calls],
        }
    )
    bodies = [result.content] + ([result.reasoning] if result.reasoning else [])

    def build(cut: Sequence[str]) -> ToolOutput:
        reasoning = cut[1] if len(cut) > 1 else None
        text = (f"<reasoning>\n{reasoning}\n</reasoning>\n" if reasoning else "") + cut[0]
        text += f"\n\n[{result.model} · response id {result.id} — pass it as previous_response_id to continue]"
        structured: dict[str, Any] = {"content": cut[0]}
        if reasoning is not None:
            structured["reasoning"] = reasoning
        return ToolOutput(text=text, structured=structured | meta)

    return fit(build, bodies, limit)


def embeddings_output(result: EmbeddingResult, limit: int = DEFAULT_OUTPUT_LIMIT) -> ToolOutput:
    """Vectors rounded to 6 decimals; whole vectors are left out (and said so) when they do not fit."""
    vectors = [[round(x, 6) for x in v] for v in result.vectors]
    meta = _compact(
        {
            "model": result.model,
            "dimensions": result.dimensions,
            "count": len(vectors),
            "usage": _compact(_builtins(result.usage)) if result.usage else None,
            "server": result.server or None,
            "duration_s": _round(result.duration_s),
        }
    )

    def build(kept: int) -> ToolOutput:
        shown = vectors[:kept]
        head = f"{len(vectors)} embeddings of {result.dimensions} dimensions from {result.model}"
        structured: dict[str, Any] = meta | {"vectors": shown}
        if kept < len(vectors):
            note = (
                f"…[cut {len(vectors) - kept} of {len(vectors)} vectors to stay under the output limit; "
                "embed fewer texts per call]"
            )
            head += f"\n{note}"
            structured["cut"] = note
        return ToolOutput(text=head + "\n" + _dumps(shown), structured=structured)

    kept = len(vectors)
    output = build(kept)
    while output.size() > limit and kept > 0:
        kept = max(0, min(kept - 1, int(kept * limit / output.size())))
        output = build(kept)
    return output


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------- batch


@dataclass(slots=True)
class BatchOutcome:
    """One item of a batch: its model and either a result or an error."""

    index: int
    model: str | None
    result: ChatResult | None = None
    error: BridgeError | None = None


def batch_rows(items: Sequence[BatchOutcome], bodies: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One structured row per item, in order: the answer (``bodies`` replaces the answers, in order) or the error."""
    answers = iter(bodies if bodies is not None else [i.result.content for i in items if i.result is not None])
    rows: list[dict[str, Any]] = []
    for item in items:
        if item.result is not None:
            r = item.result
            rows.append(
                _compact(
                    {
                        "index": item.index,
                        "ok": True,
                        "model": r.model,
                        "content": next(answers),
                        "finish_reason": r.finish_reason,
                        "tokens": r.tokens,
                        "duration_s": _round(r.duration_s),
                        "queued_s": _round(r.queued_s),
                    }
                )
            )
        elif item.error is not None:
            rows.append({"index": item.index, "ok": False, "model": item.model} | error_fields(item.error))
    return rows


def batch_output(
    items: Sequence[BatchOutcome],
    elapsed: float,
    limit: int = DEFAULT_OUTPUT_LIMIT,
    *,
    results_file: str | None = None,
) -> ToolOutput:
    """Every item's answer or typed error; ``isError`` only when every item failed.

    A batch too big for one result (see :func:`batch_fits`) is cut to fit; ``results_file`` then names
    the file that holds every item in full, so nothing the models wrote is lost.
    """
    ok = [i for i in items if i.result is not None]
    failed = [i for i in items if i.error is not None]
    bodies = [i.result.content for i in items if i.result is not None]

    def build(cut: Sequence[str]) -> ToolOutput:
        answers = iter(cut)
        sections: list[str] = []
        for item in items:
            if item.result is not None:
                r = item.result
                head = f"## [{item.index}] {r.model}: ok ({r.tokens} tokens, {r.duration_s:.2f} s)"
                sections.append(f"{head}\n{next(answers)}")
            elif item.error is not None:
                sections.append(f"## [{item.index}] {item.model or 'default model'}: {error_text(item.error)}")
        summary = f"batch: {len(ok)} of {len(items)} succeeded, {len(failed)} failed, in {elapsed:.2f} s"
        if failed and not ok:
            summary = f"{failed[0].error.code if failed[0].error else 'internal'}: all {len(items)} items failed"
        structured: dict[str, Any] = {
            "succeeded": len(ok),
            "failed": len(failed),
            "elapsed_s": round(elapsed, 3),
        }
        if results_file is not None:
            summary += (
                f"\nToo long for one result: every item in full is in {results_file} "
                "(JSON Lines, one item per line, in order); below, the answers are cut."
            )
            structured["results_file"] = results_file
        structured["items"] = batch_rows(items, cut)
        return ToolOutput(text="\n\n".join([summary, *sections]), structured=structured, is_error=not ok)

    return fit(build, bodies, limit)


def batch_fits(items: Sequence[BatchOutcome], elapsed: float, limit: int = DEFAULT_OUTPUT_LIMIT) -> bool:
    """Whether every answer fits in one result uncut."""
    return batch_output(items, elapsed, limit=2**62).size() <= limit


# --------------------------------------------------------------------------- load, unload, status, children


def loaded_output(reply: LoadedModel) -> ToolOutput:
    took = f" in {reply.load_time_s:.1f} s" if reply.load_time_s is not None else ""
    text = f"Loaded {reply.model} on {reply.server} as instance {reply.instance_id}{took}."
    return ToolOutput(text=text, structured=_compact(_builtins(reply)))


def download_output(reply: DownloadedModel) -> ToolOutput:
    """How far a model download is, and how to follow it while it goes on."""
    shown = {
        "completed": "downloaded",
        "already_downloaded": "already downloaded",
        "failed": "failed to download (LM Studio's log says why)",
    }.get(reply.status, reply.status)
    text = f"{reply.model} on {reply.server}: {shown}"
    if reply.status == "downloading" and reply.total_size_bytes:
        done = reply.downloaded_bytes or 0
        text += f" ({done / reply.total_size_bytes:.0%} of {reply.total_size_bytes / 1e9:.1f} GB)"
    if reply.job_id and reply.status not in ("completed", "already_downloaded"):
        text += f"; download job {reply.job_id}: call lms_download_model again with wait=true to follow it"
    return ToolOutput(text=text, structured=_compact(_builtins(reply)))


def unloaded_output(reply: UnloadedModel) -> ToolOutput:
    text = f"Unloaded {reply.model} from {reply.server} ({', '.join(reply.instance_ids)})."
    return ToolOutput(text=text, structured=_compact(_builtins(reply)))


def status_output(
    reply: BridgeStatus, limit: int = DEFAULT_OUTPUT_LIMIT, *, tasks: int | None = None, event_loop: str | None = None
) -> ToolOutput:
    """Per model and server state; ``tasks`` (live tasks in serve's event loop, named by ``event_loop``) shows
    task leaks from outside."""
    lines = [f"{_count(len(reply.models), 'model')} in use, {_count(len(reply.servers), 'server')}"]
    for w in reply.models:
        p50 = f", p50 {w.latency_p50_s:.2f} s" if w.latency_p50_s is not None else ""
        p99 = f", p99 {w.latency_p99_s:.2f} s" if w.latency_p99_s is not None else ""
        ttft = f", first token p50 {w.ttft_p50_s:.2f} s" if w.ttft_p50_s is not None else ""
        breakers = {k: v for k, v in w.breakers.items() if v != "closed"}
        lines.append(
            f"- {w.model}: {w.in_flight}/{w.slots} slots busy, {w.queued} queued (limit {w.queue_limit}), "
            f"{w.completed} done, {w.failed} failed, {w.busy_rejections} refused busy, {w.retries} retries"
            f"{p50}{p99}{ttft}" + (f", breakers {breakers}" if breakers else "")
        )
    lines.append("Servers:")
    lines += [_server_line(s) for s in reply.servers]
    structured: dict[str, Any] = {
        "models": [_compact(_builtins(w)) | {"in_flight": w.in_flight, "queued": w.queued} for w in reply.models],
        "servers": [_server_fields(s) for s in reply.servers],
    }
    sessions = _sessions(reply)
    if sessions:
        lines.append("Sessions (shared bridge):")
        lines += [
            f"- {name}: {load['in_flight']} in flight, {load['queued']} queued" for name, load in sessions.items()
        ]
        structured["sessions"] = sessions
    if tasks is not None:
        lines.append(f"Process: {tasks} tasks" + (f" on {event_loop}" if event_loop else ""))
        structured["process"] = {"tasks": tasks} | ({"event_loop": event_loop} if event_loop else {})
    return _fit_listing("\n".join(lines), structured, limit)


def _sessions(reply: BridgeStatus) -> dict[str, dict[str, int]]:
    """Each named caller's requests over all models (a shared bridge's sessions; none in ``serve``)."""
    totals: dict[str, dict[str, int]] = {}
    for worker in reply.models:
        for caller, load in worker.callers.items():
            if caller:
                total = totals.setdefault(caller, {"in_flight": 0, "queued": 0})
                total["in_flight"] += load.in_flight
                total["queued"] += load.queued
    return totals


def children_output(reply: ChildServerList | None, limit: int = DEFAULT_OUTPUT_LIMIT) -> ToolOutput:
    if reply is None:
        text = "Child MCP servers are not enabled in this bridge (started with --no-child-servers)."
        return ToolOutput(text=text, structured={"servers": [], "enabled": False})
    lines = [f"{_count(len(reply.servers), 'child MCP server')}:"]
    for s in reply.servers:
        tools = f", {_count(s.tool_count, 'tool')}" if s.tool_count is not None else ""
        err = f", last error: {s.last_error}" if s.last_error else ""
        origin = f", from {s.source}" if s.source else ""
        note = f" - {s.note}" if s.note else ""
        lines.append(f"- {s.name} ({s.transport}{origin}): {s.state}{tools}{err}{note}")
    lines += [f"! {e}" for e in reply.errors]
    structured = {"enabled": True, "servers": [_compact(_builtins(s)) for s in reply.servers], "errors": reply.errors}
    return _fit_listing("\n".join(lines), structured, limit)


_STOP_NOTES: Final = {
    "final_answer": "the model gave its final answer",
    "max_rounds": "the round limit was reached (raise max_rounds to let it go on)",
    "time_budget": "the time budget ran out; this is the work so far (raise time_budget or simplify the task)",
    "loop": "the model repeated the same tool call a third time; stopped to save time",
    "error": "the run stopped on an error",
}


def run_output(result: RunResult, limit: int = DEFAULT_OUTPUT_LIMIT) -> ToolOutput:
    """An autonomous run: the answer first, then how it ended and its trace, compactly."""
    calls = result.tool_calls
    failed = sum(1 for c in calls if not c.ok)
    summary = (
        f"[{result.stop_reason}: {_STOP_NOTES.get(result.stop_reason, result.stop_reason)}; {result.rounds} rounds, "
        f"{len(calls)} tool calls ({failed} failed), model {result.model}, "
        f"{result.model_time_s:.1f} s in the model, {result.tool_time_s:.1f} s in tools, {result.total_s:.1f} s in all]"
    )
    trace = [
        f"  round {c.round}: {c.server}.{c.tool} {'ok' if c.ok else 'error'} ({c.duration_s * 1000:.0f} ms"
        + (f", {c.size:,} chars" if c.size else "")
        + (f": {c.error[:120]}" if c.error else "")
        + ")"
        for c in calls[-30:]
    ]
    if len(calls) > 30:
        trace.insert(0, f"  … {len(calls) - 30} earlier calls")
    if result.withheld_tools:
        trace.append(
            f"  withheld (marked destructive by their server): {', '.join(result.withheld_tools)}; {WITHHELD_TOOLS_HOW}"
        )
    error = f"\nerror: {result.error.code}: {result.error.message}" if result.error is not None else ""

    def build(bodies: Sequence[str]) -> ToolOutput:
        answer = bodies[0]
        structured = _compact(_builtins(result))
        structured["answer"] = answer
        structured.pop("tool_calls", None)
        structured["tool_calls"] = [_compact(_builtins(c)) for c in calls[-30:]]
        note = _STOP_NOTES.get(result.stop_reason, result.stop_reason)
        text = "\n".join([answer or f"(no final answer: {note})", "", summary, *trace]) + error
        return ToolOutput(text=text, structured=structured)

    return fit(build, [result.answer], limit)


def series_output(result: SeriesResult, limit: int = DEFAULT_OUTPUT_LIMIT) -> ToolOutput:
    """Several runs, one after another: each task's result in its place, sharing the room."""
    share = max(1000, limit // max(1, len(result.items)) - 200)
    texts: list[str] = []
    results: list[dict[str, Any]] = []
    for number, item in enumerate(result.items, 1):
        if item.run is not None:
            shown = run_output(item.run, share)
        else:
            assert item.error is not None
            shown = error_output(error_from_info(item.error), share)
        texts.append(f"## task {number}: {item.task[:80]}\n{shown.text}")
        results.append({"task": item.task, "ok": not shown.is_error, **shown.structured})
    failed = sum(1 for r in results if not r["ok"])
    text = "\n\n".join([*texts, f"[{len(results)} tasks, {failed} failed, {result.elapsed_s:.1f} s in all]"])
    return _fit_listing(text, {"results": results, "elapsed_s": result.elapsed_s}, limit)
