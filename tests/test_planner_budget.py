"""Context budgeting: per-result budgets, visible cuts, and trimming that keeps the conversation valid."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.planner import (
    CHARS_PER_TOKEN,
    cut_text,
    default_reply_tokens,
    estimate_message_tokens,
    estimate_messages_tokens,
    estimate_tokens,
    estimate_tools_tokens,
    pairing_problems,
    tool_result_budget,
    trim_messages,
)

SYSTEM = {"role": "system", "content": "You are a careful agent. " * 20}
TASK = {"role": "user", "content": "Summarize the repository. " * 20}


def call(call_id: str, name: str = "read_file") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": '{"path": "x"}'}}


def assistant(*ids: str, content: str = "") -> dict[str, Any]:
    return {"role": "assistant", "content": content, "tool_calls": [call(i) for i in ids]}


def tool(call_id: str, size: int) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": call_id[0] * size}


def conversation() -> list[dict[str, Any]]:
    return [
        SYSTEM,
        TASK,
        assistant("a1", "a2"),
        tool("a1", 8000),
        tool("a2", 8000),
        assistant("b1"),
        tool("b1", 8000),
        assistant("c1"),
        tool("c1", 8000),
    ]


# -- estimates and budgets ---------------------------------------------------------------------


def test_estimates() -> None:
    """The bridge's pessimistic 2.5 characters per token, plus 8 template tokens per message: the ratios the
    worker sizes max_tokens with (bridge.tokens)."""
    assert estimate_tokens("x" * 10) == 4
    assert estimate_message_tokens({"role": "user", "content": "x" * 40}) == 24
    assert estimate_message_tokens({"role": "user", "content": [{"type": "text", "text": "x" * 40}]}) == 24
    assert estimate_message_tokens(assistant("id")) == 8 + 10  # "read_file" + '{"path": "x"}' + "id" = 24 chars
    assert estimate_messages_tokens([{"role": "user", "content": "x" * 40}] * 2) == 48
    assert estimate_tools_tokens([]) == 0
    assert estimate_tools_tokens([{"a": "b"}]) == 5


def test_reply_reserve() -> None:
    """A quarter of the context is kept for the reply, at most 4,096 tokens."""
    assert default_reply_tokens(8192) == 2048
    assert default_reply_tokens(131072) == 4096


@pytest.mark.parametrize(
    ("context", "kwargs", "expected"),
    [
        (8192, {}, 3840),
        (32768, {}, 17920),
        (8192, {"reserved_tokens": 2048}, 2560),
        (8192, {"reply_tokens": 0, "share": 0.5}, 10240),
        (2048, {"reserved_tokens": 1500}, 1000),
    ],
)
def test_tool_result_budget(context: int, kwargs: dict[str, Any], expected: int) -> None:
    """The budget is a share of what the reply and fixed prompt leave, never below the floor."""
    assert tool_result_budget(context, **kwargs) == expected


# -- cutting one result ------------------------------------------------------------------------


def test_short_text_is_not_cut() -> None:
    """Text within the budget is returned as is."""
    assert cut_text("abc", 3) == "abc"


def test_cut_keeps_head_and_tail_with_a_marker() -> None:
    """A long result keeps its start and end, and says exactly how much was cut."""
    text = "".join(chr(ord("a") + i % 26) for i in range(20_000))
    cut = cut_text(text, 1000)
    marker = "\n…[cut 19,036 of 20,000 characters]\n"
    assert len(cut) == 1000
    assert marker in cut
    head, tail = cut.split(marker)
    assert len(head) + len(tail) == 20_000 - 19_036
    assert text.startswith(head)
    assert text.endswith(tail)
    assert len(tail) == int(964 * 0.2)


def test_cut_head_only() -> None:
    """tail_share=0 keeps only the start."""
    assert cut_text("x" * 100, 60, tail_share=0) == "x" * 31 + "\n…[cut 69 of 100 characters]\n"


def test_budget_smaller_than_the_marker() -> None:
    """A tiny budget gives the marker alone."""
    assert cut_text("x" * 100, 5) == "\n…[cut 100 of 100 characters]\n"


# -- trimming a conversation -------------------------------------------------------------------


def test_conversation_that_fits_is_untouched() -> None:
    """Nothing is cut when the conversation fits."""
    messages = conversation()
    result = trim_messages(messages, 100_000)
    assert result.messages == messages
    assert result.cut_results == 0
    assert result.dropped_messages == 0
    assert result.fits


NOTE = "[tool result removed to fit the context: 8,000 characters; call the tool again if you need it]"


def note_saving() -> int:
    """Tokens saved by replacing one 8,000-character result with the note."""
    return estimate_message_tokens(tool("a1", 8000)) - estimate_message_tokens({**tool("a1", 0), "content": NOTE})


def tool_contents(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "tool"]


def test_oldest_tool_results_are_cut_first() -> None:
    """The oldest results become notes; newer ones stay whole while that is enough."""
    messages = conversation()
    total = estimate_messages_tokens(messages)
    result = trim_messages(messages, total - 2 * note_saving(), reply_tokens=0)
    assert tool_contents(result.messages) == [NOTE, NOTE, "b" * 8000, "c" * 8000]
    assert result.cut_results == 2
    assert result.dropped_messages == 0
    assert result.fits
    assert result.tokens == result.limit


def test_last_needed_cut_is_partial() -> None:
    """When part of a result is enough, it is shortened with a marker instead of removed."""
    messages = conversation()
    total = estimate_messages_tokens(messages)
    result = trim_messages(messages, total - 500, reply_tokens=0)
    first = tool_contents(result.messages)[0]
    assert len(first) == 8000 - int(500 * CHARS_PER_TOKEN)
    assert "\n…[cut 1,284 of 8,000 characters]\n" in first
    assert tool_contents(result.messages)[1:] == ["a" * 8000, "b" * 8000, "c" * 8000]
    assert result.fits


def test_old_rounds_are_dropped_before_the_latest_results_are_cut() -> None:
    """When notes are not enough, old rounds go (calls with their answers) and the latest result stays whole."""
    messages = conversation()
    kept = [SYSTEM, TASK, messages[7], messages[8]]
    result = trim_messages(messages, estimate_messages_tokens(kept), reply_tokens=0)
    assert result.messages == kept
    assert pairing_problems(result.messages) == []
    assert result.dropped_messages == 5
    assert result.cut_results == 3
    assert result.fits


def test_latest_results_are_cut_as_a_last_resort() -> None:
    """With old rounds gone and still too big, the latest result is cut too."""
    messages = conversation()
    kept = [SYSTEM, TASK, messages[7], messages[8]]
    result = trim_messages(messages, estimate_messages_tokens(kept) - 100, reply_tokens=0)
    assert [m["role"] for m in result.messages] == ["system", "user", "assistant", "tool"]
    assert len(result.messages[3]["content"]) == 8000 - int(100 * CHARS_PER_TOKEN)
    assert result.fits


def test_system_and_task_are_never_touched() -> None:
    """Even when nothing else is left, the system prompt and the task stay as they were."""
    messages = conversation()
    result = trim_messages(messages, 200, reply_tokens=0)
    assert result.messages[0] is not SYSTEM
    assert result.messages[:2] == [SYSTEM, TASK]
    assert not result.fits


def test_a_later_user_message_does_not_expose_the_latest_round() -> None:
    """A nudge after the latest results neither makes them 'old' nor lets their round be dropped."""
    messages = [*conversation(), {"role": "user", "content": "Continue."}]
    kept = [SYSTEM, TASK, messages[7], messages[8], messages[9]]
    result = trim_messages(messages, estimate_messages_tokens(kept), reply_tokens=0)
    assert result.messages == kept


def is_subsequence(part: list[Any], whole: list[Any]) -> bool:
    iterator = iter(whole)
    return all(any(item == other for other in iterator) for item in part)


@pytest.mark.parametrize("context", [300, 600, 1500, 3000, 5000, 9000, 20_000])
def test_trimming_invariants(context: int) -> None:
    """At every size: pairs intact, system and task first, no message reordered, input unchanged."""
    messages = conversation()
    snapshot = [dict(m) for m in messages]
    result = trim_messages(messages, context, reply_tokens=0)
    assert messages == snapshot
    assert pairing_problems(result.messages) == []
    assert result.messages[:2] == [SYSTEM, TASK]
    roles_and_ids = [(m["role"], m.get("tool_call_id")) for m in result.messages]
    assert is_subsequence(roles_and_ids, [(m["role"], m.get("tool_call_id")) for m in messages])
    assert result.tokens == estimate_messages_tokens(result.messages)


def test_tools_take_room_too() -> None:
    """Tool definitions sent with the request lower the limit."""
    tools = [{"type": "function", "function": {"name": "t", "description": "d" * 4000, "parameters": {}}}]
    with_tools = trim_messages(conversation(), 20_000, reply_tokens=0, tools=tools)
    without = trim_messages(conversation(), 20_000, reply_tokens=0)
    assert with_tools.limit == 20_000 - estimate_tools_tokens(tools)
    assert without.limit == 20_000


def test_pairing_problems_are_found() -> None:
    """A call without an answer and an answer without a call are both reported."""
    broken = [TASK, assistant("x1", "x2"), tool("x1", 1), tool("zz", 1)]
    assert pairing_problems(broken) == [
        "tool message 3 answers no open call ('zz')",
        "call 'x2' has no tool answer",
    ]
