"""Keeping an autonomous run inside the model's context window.

Tool results are the part of a run that grows without bound (a file, a web
page, a directory listing), and local models are often loaded with 4k-32k
tokens. So each result is cut to a per-result budget when it arrives, and
before each model call the conversation is trimmed: old tool results go first
(the model has acted on them already), then whole old rounds. The system
prompt and the task are never touched, and an assistant turn that made tool
calls always keeps an answer for every call id, because OpenAI-compatible
servers reject a conversation where they do not pair up.

Token counts are estimates, with the bridge's pessimistic ratios
(:mod:`bridge.tokens`): the same ones the worker sizes a request's
``max_tokens`` with, so a conversation trimmed here leaves the reply the room
the worker gives it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from bridge.tokens import FEWEST_CHARS_PER_TOKEN, TURN_TOKENS

__all__ = [
    "CHARS_PER_TOKEN",
    "TrimResult",
    "cut_text",
    "default_reply_tokens",
    "estimate_message_tokens",
    "estimate_messages_tokens",
    "estimate_tokens",
    "estimate_tools_tokens",
    "pairing_problems",
    "tool_result_budget",
    "trim_messages",
]

CHARS_PER_TOKEN: Final = FEWEST_CHARS_PER_TOKEN
"""The estimate used for every conversion between characters and tokens."""

_MESSAGE_OVERHEAD_TOKENS: Final = TURN_TOKENS[1]
_MIN_PARTIAL_CHARS: Final = 500
_SYSTEM_ROLES: Final = frozenset({"system", "developer"})


def estimate_tokens(text: str, *, chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """Tokens ``text`` probably takes (rounded up)."""
    return math.ceil(len(text) / chars_per_token)


def estimate_message_tokens(message: Mapping[str, Any], *, chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """Tokens one OpenAI-format message probably takes, with its tool calls and reasoning."""
    chars = len(_content_text(message.get("content")))
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str):
            chars += len(value)
    for call in message.get("tool_calls") or []:
        if isinstance(call, Mapping):
            function = call.get("function")
            if isinstance(function, Mapping):
                chars += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
            chars += len(str(call.get("id", "")))
    return _MESSAGE_OVERHEAD_TOKENS + math.ceil(chars / chars_per_token)


def estimate_messages_tokens(messages: Sequence[Mapping[str, Any]], *, chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """Tokens a whole conversation probably takes."""
    return sum(estimate_message_tokens(m, chars_per_token=chars_per_token) for m in messages)


def estimate_tools_tokens(tools: Sequence[Mapping[str, Any]], *, chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """Tokens the tool definitions probably take in the prompt."""
    if not tools:
        return 0
    return math.ceil(len(json.dumps(list(tools), ensure_ascii=False, default=str)) / chars_per_token)


def default_reply_tokens(context_tokens: int) -> int:
    """Room left for the model's reply: a quarter of the context, at most 4,096 tokens."""
    return max(0, min(4096, context_tokens // 4))


def tool_result_budget(
    context_tokens: int,
    *,
    reserved_tokens: int = 0,
    reply_tokens: int | None = None,
    share: float = 0.25,
    min_chars: int = 1000,
    chars_per_token: float = CHARS_PER_TOKEN,
) -> int:
    """How many characters one tool result may keep.

    Args:
        context_tokens: The model's loaded context length.
        reserved_tokens: What is always in the prompt: system prompt, task and
            tool definitions (see the ``estimate_*`` functions).
        reply_tokens: Room kept for the reply; defaults to :func:`default_reply_tokens`.
        share: The fraction of the remaining room one result may fill, so a
            run can still hold a few results side by side.
        min_chars: Never less than this, so a result stays useful even when
            the context is nearly full (trimming makes room later).
        chars_per_token: The estimate (see the module docstring).

    Returns:
        The budget in characters. E.g. 8,192 tokens with nothing reserved:
        ``(8192 - 2048) * 0.25 * 2.5 = 3,840`` characters.
    """
    reply = default_reply_tokens(context_tokens) if reply_tokens is None else reply_tokens
    available = context_tokens - reply - reserved_tokens
    return max(min_chars, int(available * share * chars_per_token))


def cut_text(text: str, max_chars: int, *, tail_share: float = 0.2) -> str:
    """Cut ``text`` to at most ``max_chars`` characters, saying how much was cut.

    The start is kept and, with ``tail_share`` of the room, the end (where
    command output puts its errors and summaries). Between them goes a marker
    such as ``…[cut 12,345 of 20,000 characters]``, counted in ``max_chars``;
    a budget smaller than the marker gives the marker alone.

    Args:
        text: A tool result.
        max_chars: The budget (see :func:`tool_result_budget`).
        tail_share: The fraction of the kept characters taken from the end.
    """
    total = len(text)
    if total <= max_chars:
        return text
    # The marker's length depends on the number it shows: start from the
    # longest marker, then take back the few characters a shorter one frees.
    kept = max(0, max_chars - len(_marker(total, total)))
    while kept + 1 + len(_marker(total - kept - 1, total)) <= max_chars:
        kept += 1
    tail = int(kept * tail_share)
    head = kept - tail
    marker = _marker(total - kept, total)
    return text[:head] + marker + (text[total - tail :] if tail else "")


def _marker(cut: int, total: int) -> str:
    return f"\n…[cut {cut:,} of {total:,} characters]\n"


class TrimResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of :func:`trim_messages`.

    Attributes:
        messages: The conversation to send (a new list; the input is not changed).
        tokens: Its estimated size.
        limit: The size it had to fit.
        cut_results: How many tool results were shortened or replaced by a note.
        dropped_messages: How many messages of old rounds were removed.
        fits: False when even the protected messages exceed ``limit``.
    """

    messages: list[dict[str, Any]]
    tokens: int
    limit: int
    cut_results: int = 0
    dropped_messages: int = 0
    fits: bool = True


def trim_messages(
    messages: Sequence[Mapping[str, Any]],
    context_tokens: int,
    *,
    reply_tokens: int | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    chars_per_token: float = CHARS_PER_TOKEN,
) -> TrimResult:
    """Trim an OpenAI-format conversation to fit the context, oldest tool results first.

    1. Tool results older than the latest round of calls, oldest first, are
       replaced by a short note (the last one needed is only shortened with
       :func:`cut_text` when that is enough).
    2. If that is not enough, whole old rounds are removed, oldest first: an
       assistant turn together with the answers to all its tool calls, or a
       single other message. The last round is kept.
    3. If that is still not enough, the latest round's results are cut the
       same way, as a last resort: the model is about to act on them.

    System (and developer) messages and the first user message (the task) are
    never changed or removed.

    Args:
        messages: The conversation.
        context_tokens: The model's loaded context length.
        reply_tokens: Room kept for the reply; defaults to :func:`default_reply_tokens`.
        tools: The tool definitions sent with the request; they take room too.
        chars_per_token: The estimate (see the module docstring).

    Returns:
        The trimmed conversation and what was done.
    """
    reply = default_reply_tokens(context_tokens) if reply_tokens is None else reply_tokens
    limit = context_tokens - reply - estimate_tools_tokens(tools or (), chars_per_token=chars_per_token)
    result = [dict(m) for m in messages]
    sizes = [estimate_message_tokens(m, chars_per_token=chars_per_token) for m in result]
    protected = _protected(result)
    recent = _latest_results(result)
    state = _TrimState(total=sum(sizes), limit=limit, chars_per_token=chars_per_token)
    older = [i for i, m in enumerate(result) if m.get("role") == "tool" and i not in protected and i not in recent]
    state.cut_results(result, sizes, older)
    dropped = 0
    if state.total > limit:
        removed: set[int] = set()
        for unit in _droppable(_units(result, protected), recent):
            if state.total <= limit:
                break
            removed.update(unit)
            state.total -= sum(sizes[i] for i in unit)
            dropped += len(unit)
        result = [m for i, m in enumerate(result) if i not in removed]
        sizes = [s for i, s in enumerate(sizes) if i not in removed]
        recent = {i - sum(1 for r in removed if r < i) for i in recent}
    state.cut_results(result, sizes, sorted(recent))
    total = state.total
    return TrimResult(
        messages=result, tokens=total, limit=limit, cut_results=state.cut, dropped_messages=dropped, fits=total <= limit
    )


class _TrimState:
    """The running size of a conversation being trimmed. Strictly private."""

    __slots__ = ("chars_per_token", "cut", "limit", "total")

    def __init__(self, *, total: int, limit: int, chars_per_token: float) -> None:
        self.total = total
        self.limit = limit
        self.chars_per_token = chars_per_token
        self.cut = 0

    def cut_results(self, messages: list[dict[str, Any]], sizes: list[int], indices: Sequence[int]) -> None:
        """Shorten the tool messages at ``indices``, in order, until the conversation fits."""
        for index in indices:
            if self.total <= self.limit:
                return
            replacement = _shortened(messages[index], (self.total - self.limit) * self.chars_per_token)
            if replacement is None:
                continue
            messages[index]["content"] = replacement
            new_size = estimate_message_tokens(messages[index], chars_per_token=self.chars_per_token)
            self.total += new_size - sizes[index]
            sizes[index] = new_size
            self.cut += 1


def pairing_problems(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """What breaks the pairing of tool calls and tool answers (empty when none does).

    Every call id of an assistant turn needs one ``tool`` message before the
    next assistant turn, and every ``tool`` message must answer such a call.
    """
    problems: list[str] = []
    open_ids: list[str] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "assistant":
            problems.extend(f"call {call_id!r} has no tool answer" for call_id in open_ids)
            open_ids = [str(call.get("id")) for call in message.get("tool_calls") or [] if isinstance(call, Mapping)]
        elif role == "tool":
            call_id = str(message.get("tool_call_id"))
            if call_id in open_ids:
                open_ids.remove(call_id)
            else:
                problems.append(f"tool message {index} answers no open call ({call_id!r})")
    problems.extend(f"call {call_id!r} has no tool answer" for call_id in open_ids)
    return problems


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, Mapping)]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def _protected(messages: Sequence[Mapping[str, Any]]) -> set[int]:
    protected = {i for i, m in enumerate(messages) if m.get("role") in _SYSTEM_ROLES}
    task = next((i for i, m in enumerate(messages) if m.get("role") == "user"), None)
    if task is not None:
        protected.add(task)
    return protected


def _droppable(units: list[list[int]], recent: set[int]) -> list[list[int]]:
    """Units older than the latest round (or than the last message, when no round made calls)."""
    if recent:
        first_recent = min(recent)
        # The latest assistant turn's unit holds the recent results, so it is excluded too.
        return [unit for unit in units if max(unit) < first_recent]
    return units[:-1]


def _latest_results(messages: Sequence[Mapping[str, Any]]) -> set[int]:
    """Indices of the tool messages after the last assistant turn that made calls."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant" and m.get("tool_calls")), default=-1)
    return {i for i, m in enumerate(messages) if i > last >= 0 and m.get("role") == "tool"}


def _shortened(message: Mapping[str, Any], excess_chars: float) -> str | None:
    """The new content of a tool message, or None when cutting it would not help."""
    text = _content_text(message.get("content"))
    note = f"[tool result removed to fit the context: {len(text):,} characters; call the tool again if you need it]"
    wanted = len(text) - math.ceil(excess_chars)
    if isinstance(message.get("content"), str) and wanted >= _MIN_PARTIAL_CHARS:
        shortened = cut_text(text, wanted)
        return shortened if len(shortened) < len(text) else None
    return note if len(note) < len(text) else None


def _units(messages: Sequence[Mapping[str, Any]], protected: set[int]) -> list[list[int]]:
    """Groups of message indices that can only be removed together, oldest first."""
    units: list[list[int]] = []
    answered: set[int] = set()
    for index, message in enumerate(messages):
        if index in protected or index in answered:
            continue
        unit = [index]
        ids = {str(c.get("id")) for c in message.get("tool_calls") or [] if isinstance(c, Mapping)}
        if message.get("role") == "assistant" and ids:
            for later in range(index + 1, len(messages)):
                other = messages[later]
                if other.get("role") == "assistant":
                    break
                if other.get("role") == "tool" and str(other.get("tool_call_id")) in ids:
                    unit.append(later)
                    answered.add(later)
        units.append(unit)
    return units
