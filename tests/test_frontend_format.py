"""Result formatting, output cutting and progress forwarding, without a server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.errors import BusyError, DeadlineExceededError, ModelNotFoundError
from bridge.frontend._format import (
    ToolOutput,
    chat_output,
    children_output,
    cut_text,
    error_output,
    fit,
    health_output,
    models_output,
)
from bridge.frontend._progress import MIN_INTERVAL, ProgressForwarder
from bridge.messages import (
    ChatResult,
    ChildServerInfo,
    ChildServerList,
    ModelEntry,
    ModelList,
    Progress,
    ServerState,
)


def size(output: ToolOutput) -> int:
    return max(len(output.text), len(json.dumps(output.structured, ensure_ascii=False, separators=(",", ":"))))


def test_cut_text_keeps_head_and_tail_and_says_how_much_was_cut() -> None:
    text = "A" * 5000 + "Z" * 5000
    cut = cut_text(text, 1000)
    assert len(cut) <= 1000
    assert cut.startswith("A")
    assert cut.endswith("Z")
    kept = len(cut) - len(cut[cut.index("\n…[cut ") : cut.index("characters]\n") + len("characters]\n")])
    assert f"…[cut {len(text) - kept:,} of 10,000 characters]" in cut
    assert cut_text("short", 1000) == "short"


@pytest.mark.parametrize("limit", [400, 1000, 5000])
def test_fit_shares_the_room_fairly(limit: int) -> None:
    """Short bodies stay whole; long ones are cut; both forms stay under the limit, escapes included."""
    bodies = ["short answer", 'x"\\' * 3000, "y" * 9000]

    def build(cut: Any) -> ToolOutput:
        return ToolOutput(text="\n".join(cut), structured={"items": [{"content": c} for c in cut]})

    output = fit(build, bodies, limit)
    assert size(output) <= limit
    assert output.structured["items"][0]["content"] == "short answer"
    assert "…[cut " in output.structured["items"][1]["content"]
    assert "…[cut " in output.structured["items"][2]["content"]


def test_fit_leaves_small_results_alone() -> None:
    output = fit(lambda cut: ToolOutput(text=cut[0], structured={"c": cut[0]}), ["hello"], 100)
    assert output.text == "hello"


def test_error_output_starts_with_the_code_and_carries_the_contract() -> None:
    output = error_output(BusyError("model m is busy; retry in 2 s", retry_after=2.0, details={"model": "m"}))
    assert output.is_error
    assert output.text.startswith("busy: model m is busy; retry in 2 s.")
    assert "retryable: the same call may succeed if sent again after 2 s" in output.text
    assert output.structured == {
        "code": "busy",
        "message": "model m is busy; retry in 2 s",
        "retryable": True,
        "retry_after": 2.0,
        "details": {"model": "m"},
    }


def test_not_retryable_errors_say_to_change_the_request() -> None:
    output = error_output(ModelNotFoundError("no model x"))
    assert output.text == "model_not_found: no model x. (not retryable as is: change the request first)"
    assert output.structured["retryable"] is False
    assert output.structured["retry_after"] is None


def test_a_timeout_with_partial_output_shows_it_and_cuts_it() -> None:
    """Where the error carries what was generated before the budget ran out, the result shows it."""
    error = DeadlineExceededError("out of time", details={"partial_content": "Once upon a time " * 500})
    output = error_output(error, limit=2000)
    assert output.is_error
    assert output.text.startswith("timeout: out of time.")
    assert "Partial output before the budget ran out:\nOnce upon a time" in output.text
    assert output.structured["partial_content"].startswith("Once upon a time")
    assert "partial_content" not in output.structured.get("details", {})
    assert size(output) <= 2000


def test_chat_output_puts_reasoning_first_and_footer_last() -> None:
    result = ChatResult(
        model="m", content="the answer", reasoning="because", finish_reason="length", tokens=3, duration_s=0.5
    )
    output = chat_output(result)
    assert output.text.startswith("<reasoning>\nbecause\n</reasoning>\nthe answer")
    assert "stopped at max_tokens" in output.text
    assert output.text.endswith("[m · 3 tokens in 0.50 s · finish length]")
    assert output.structured["content"] == "the answer"
    assert output.structured["reasoning"] == "because"
    raw = chat_output(result, raw=True)
    assert raw.text.endswith("the answer")


async def test_progress_values_always_grow() -> None:
    sent: list[tuple[float, float | None, str | None]] = []

    async def send(value: float, total: float | None, message: str | None) -> None:
        sent.append((value, total, message))

    forward = ProgressForwarder(send, model="m", total=100)
    await forward(Progress(stage="queued", position=2))
    await forward(Progress(stage="queued", position=1))
    await forward(Progress(stage="first_token", tokens=1))
    await forward(Progress(stage="generating", tokens=30))
    values = [v for v, _, _ in sent]
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert [m for _, _, m in sent] == [
        "queued from m: position 2",
        "queued from m: position 1",
        sent[2][2],
        "30 tokens from m",
    ]
    assert sent[2][2] is not None
    assert sent[2][2].startswith("first token from m after ")
    assert sent[-1][:2] == (30.0, 100)


async def test_generating_reports_are_thinned() -> None:
    """Reports that come faster than MIN_INTERVAL during generation are dropped."""
    sent: list[str | None] = []

    async def send(value: float, total: float | None, message: str | None) -> None:
        sent.append(message)

    forward = ProgressForwarder(send)
    for tokens in range(10, 60, 10):
        await forward(Progress(stage="generating", tokens=tokens))
    assert sent == ["10 tokens"]
    assert MIN_INTERVAL > 0


async def test_a_failing_progress_sink_does_not_fail_the_call() -> None:
    async def send(value: float, total: float | None, message: str | None) -> None:
        raise RuntimeError("connection closed")

    forward = ProgressForwarder(send)
    await forward(Progress(stage="loading"))
    assert forward.sent == 1


def test_an_error_with_huge_details_still_fits() -> None:
    """A model list of thousands in an error's details is cut, not sent whole."""
    error = ModelNotFoundError("no model x", details={"available": [f"vendor/model-{i}" for i in range(5000)]})
    output = error_output(error, limit=3000)
    assert size(output) <= 3000
    assert output.text.startswith("model_not_found: no model x.")
    assert output.structured["code"] == "model_not_found"


def test_listings_count_in_plain_english_and_never_show_an_empty_source() -> None:
    """'2 models on 1 server', '1 child MCP server', and no '(stdio, from )' for a row with no file."""
    server = ServerState(name="sim", url="http://127.0.0.1:1234", reachable=True, models=2, loaded=["a"])
    models = ModelList(models=[ModelEntry(id="a", server="sim"), ModelEntry(id="b", server="sim")], servers=[server])
    assert models_output(models).text.startswith("2 models on 1 server (1 reachable):")
    assert health_output(models).text.startswith("ok: 1 of 1 LLM server reachable, 2 models")
    one = ModelList(models=[ModelEntry(id="a", server="sim")], servers=[server, server])
    assert models_output(one).text.startswith("1 model on 2 servers")
    children = ChildServerList(servers=[ChildServerInfo(name="x", transport="stdio", source="", state="skipped")])
    text = children_output(children).text
    assert text.startswith("1 child MCP server:")
    assert "- x (stdio): skipped" in text
    assert "from )" not in text
