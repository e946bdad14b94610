"""Jobs (issue 21): work that outlives one tool call, through a real MCP client, on both backends.

The simulator's speeds set how long each generation takes; waits are bounded polls
(``eventually``) or the bridge's own ``job_result`` waits, never sleeps standing in for events.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult

from bridge.actors import _job
from bridge.app import Bridge, open_bridge, open_session
from bridge.config import CliFlags, load_settings
from bridge.errors import ConfigError
from bridge.frontend._server import INSTRUCTIONS
from bridge.settings import BridgeSettings, ChildSettings, JobSettings, ModelLimits, RetrySettings, ServerSettings
from bridge.sim import CallTools, Say, SimConfig, SimModel, SimServer, ToolCallSpec
from tests._util import eventually, eventually_async, mcp_server
from tests.test_frontend import data, text

QUICK = "qwen/qwen3-coder-30b"
STEADY = "steady/writer"
SLOW = "slow/streamer"
AGENT = "sim/planner"
NOTES = [sys.executable, str(Path(__file__).parent / "_children" / "annotated_server.py")]

MODELS = (
    SimModel(id=QUICK, loaded=True, reply_tokens=6, context_length=8192),
    # About 1.5 s of streaming: longer than a short call budget, shorter than a test.
    SimModel(id=STEADY, loaded=True, ttft=0.05, tokens_per_s=100, reply_tokens=150),
    # Streams for 50 s: what queued, running and cancelled jobs are tested on.
    SimModel(id=SLOW, loaded=True, ttft=0.05, tokens_per_s=40, reply_tokens=2000),
    SimModel(id=AGENT, loaded=True, context_length=8192),
)


@asynccontextmanager
async def connected(tmp_path: Path | None = None, **overrides: Any) -> AsyncIterator[tuple[Client, SimServer, Bridge]]:
    """A bridge on the simulator, with the notes child server when ``tmp_path`` is given, and a client."""
    async with SimServer(SimConfig(models=MODELS, auto_evict=False)) as sim:
        fields: dict[str, Any] = {
            "servers": [ServerSettings(url=sim.url, name="sim")],
            "retry": RetrySettings(attempts=2, wait_initial=0.01, wait_max=0.02),
            "listing_timeout": 2.0,
            "call_budget": 30.0,
        }
        if tmp_path is not None:
            path = tmp_path / "mcp.json"
            path.write_text(json.dumps({"mcpServers": {"notes": {"command": NOTES[0], "args": NOTES[1:]}}}))
            fields["children"] = ChildSettings(config_paths=[str(path)], discover=False, watch=False)
        fields.update(overrides)
        async with (
            open_bridge(BridgeSettings(**fields), child_servers=tmp_path is not None) as bridge,
            Client(mcp_server(bridge), mode="legacy") as client,
        ):
            yield client, sim, bridge


async def started(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    """Start ``tool`` in the background; its job id."""
    result = await client.call_tool(tool, {**arguments, "background": True})
    assert not result.is_error, text(result)
    job_id = data(result)["job_id"]
    assert isinstance(job_id, str)
    assert job_id.startswith("job_")
    assert job_id in text(result)
    return job_id


async def status(client: Client, job_id: str) -> dict[str, Any]:
    result = await client.call_tool("job_status", {"job_id": job_id})
    assert not result.is_error, text(result)
    return data(result)


def first_line(result: CallToolResult) -> str:
    """The result's first line without its timings."""
    return re.sub(r"\d+\.\d+ s\b", "T s", text(result).split("\n")[0])


def comparable(structured: dict[str, Any]) -> dict[str, Any]:
    """A result without the figures that differ between two runs of the same work."""
    volatile = {"duration_s", "elapsed_s", "time_to_first_token_s", "tokens_per_second", "queued_s", "model_time_s"}

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in volatile}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    cleaned: dict[str, Any] = clean(structured)
    return cleaned


# --------------------------------------------------------------------------- each tool, in the background

LLM_TOOLS = [
    ("chat_completion", {"prompt": "hello", "model": QUICK}),
    ("text_completion", {"prompt": "Once upon a time", "model": QUICK}),
    ("batch_chat", {"prompts": ["one", "two", "three"], "models": [QUICK]}),
]


@pytest.mark.parametrize(("tool", "arguments"), LLM_TOOLS, ids=[t for t, _ in LLM_TOOLS])
async def test_a_background_call_returns_a_job_whose_result_is_the_plain_calls(
    tool: str, arguments: dict[str, Any]
) -> None:
    """The ticket names the job and model at once; job_result returns exactly what the plain call returns."""
    async with connected() as (client, _, _):
        plain = await client.call_tool(tool, arguments)
        ticket = await client.call_tool(tool, {**arguments, "background": True})
        assert not ticket.is_error, text(ticket)
        job_id = data(ticket)["job_id"]
        assert data(ticket)["state"] in ("queued", "running", "done")
        assert data(ticket)["tool"] == tool
        fetched = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 20})
    assert not plain.is_error, text(plain)
    assert not fetched.is_error, text(fetched)
    assert comparable(data(fetched)) == comparable(data(plain))
    assert first_line(fetched) == first_line(plain)


AUTONOMOUS = [
    ("autonomous_with_mcp", {"mcp_name": "notes"}),
    ("autonomous_with_multiple_mcps", {"mcp_names": ["notes"]}),
    ("autonomous_discover_and_execute", {}),
]


@pytest.mark.parametrize(("tool", "arguments"), AUTONOMOUS, ids=[t for t, _ in AUTONOMOUS])
async def test_an_autonomous_run_in_the_background_is_fetched_with_its_trace(
    tmp_path: Path, tool: str, arguments: dict[str, Any]
) -> None:
    async with connected(tmp_path) as (client, sim, _):
        sim.script(AGENT, [CallTools([ToolCallSpec("read_notes", {})]), Say("the notes are read")])
        job_id = await started(client, tool, {"task": "read the notes", "model": AGENT, **arguments})
        fetched = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 25})
        seen = await status(client, job_id)
    assert not fetched.is_error, text(fetched)
    result = data(fetched)
    assert result["answer"] == "the notes are read"
    assert result["stop_reason"] == "final_answer"
    assert [c["tool"] for c in result["tool_calls"]] == ["read_notes"]
    assert seen["state"] == "done"
    assert seen["rounds"] == 2


async def test_an_autonomous_job_outlives_the_shared_bridge_session_that_started_it(tmp_path: Path) -> None:
    """Regression: the session's end stopped its planner and child servers under its running job, which then
    failed with actor_unavailable. Now the session's actors stop once its jobs ended; another session fetches it."""
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"notes": {"command": NOTES[0], "args": NOTES[1:]}}}))
    child = ChildSettings(config_paths=[str(path)], discover=False, watch=False)
    # A slow writer: the answer takes about 7 s, longer than the 5 s an actor's stop grants its requests.
    models = (SimModel(id=AGENT, loaded=True, context_length=8192, ttft=0.05, tokens_per_s=10),)
    async with SimServer(SimConfig(models=models, auto_evict=False)) as sim:
        sim.script(AGENT, [CallTools([ToolCallSpec("read_notes", {})]), Say(" ".join(["word"] * 70))])
        settings = BridgeSettings(servers=[ServerSettings(url=sim.url, name="sim")], children=child)
        async with open_bridge(settings, child_servers=False) as bridge:
            where = {"working_dir": str(tmp_path), "environ": dict(os.environ)}
            async with (
                open_session(bridge, "first", child, **where) as first,
                Client(mcp_server(first), mode="legacy") as client,
            ):
                job_id = await started(
                    client, "autonomous_with_mcp", {"mcp_name": "notes", "task": "read", "model": AGENT}
                )
            async with (
                open_session(bridge, "second", None, **where) as second,
                Client(mcp_server(second), mode="legacy") as client,
            ):
                fetched = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 20})
    assert not fetched.is_error, text(fetched)
    assert data(fetched)["stop_reason"] == "final_answer"
    assert [c["tool"] for c in data(fetched)["tool_calls"]] == ["read_notes"]


# --------------------------------------------------------------------------- status, waits, cancel


async def test_status_while_queued_and_running_and_cancel_of_each() -> None:
    """With one slot, the second job waits at position 1; cancelling it sends nothing, cancelling the running one
    closes its stream (the simulator sees the client go)."""
    async with connected(models={SLOW: ModelLimits(slots=1, queue=4)}) as (client, sim, _):
        running = await started(client, "chat_completion", {"prompt": "long", "model": SLOW})
        await eventually_async(lambda: _has(client, running, "state", "running"))
        waiting = await client.call_tool("chat_completion", {"prompt": "long", "model": SLOW, "background": True})
        waiting_id = data(waiting)["job_id"]
        assert data(waiting)["state"] == "queued"
        assert data(waiting)["position"] == 1
        await eventually_async(lambda: _tokens(client, running))
        now = await status(client, running)
        assert now["state"] == "running"
        assert now["tokens"] > 0
        assert now["partial_text"]
        assert now["model"] == SLOW

        cancelled = await client.call_tool("cancel_job", {"job_id": waiting_id})
        assert data(cancelled)["state"] == "cancelled"
        assert sim.stats.model(SLOW).requests == 1  # the queued one never reached the server

        cancelled = await client.call_tool("cancel_job", {"job_id": running})
        assert data(cancelled)["state"] == "cancelled"
        await eventually(lambda: sim.stats.model(SLOW).in_progress == 0)
        assert sim.stats.model(SLOW).disconnects == 1
        result = await client.call_tool("job_result", {"job_id": running})
    assert result.is_error
    assert text(result).startswith("cancelled: ")
    assert "cancel_job" in text(result)


async def _has(client: Client, job_id: str, key: str, value: object) -> bool:
    return (await status(client, job_id)).get(key) == value


async def _tokens(client: Client, job_id: str) -> bool:
    seen = await status(client, job_id)
    return bool(seen.get("tokens")) and bool(seen.get("partial_text"))


async def test_job_result_ready_before_during_and_after_its_wait() -> None:
    async with connected() as (client, _, _):
        before = await started(client, "chat_completion", {"prompt": "hi", "model": QUICK})
        await eventually_async(lambda: _has(client, before, "state", "done"))
        ready = await client.call_tool("job_result", {"job_id": before, "wait_s": 0})
        assert not ready.is_error
        assert data(ready)["content"]

        during = await started(client, "chat_completion", {"prompt": "hi", "model": STEADY})
        waited = await client.call_tool("job_result", {"job_id": during, "wait_s": 25})
        assert not waited.is_error
        assert data(waited)["content"]
        assert data(waited)["model"] == STEADY

        after = await started(client, "chat_completion", {"prompt": "hi", "model": SLOW})
        early = await client.call_tool("job_result", {"job_id": after, "wait_s": 0.2})
        assert not early.is_error, text(early)
        assert data(early)["state"] in ("queued", "running")
        assert data(early)["job_id"] == after
        await client.call_tool("cancel_job", {"job_id": after})


# --------------------------------------------------------------------------- out of budget: on as a job


async def test_a_call_out_of_its_budget_goes_on_as_a_job_and_loses_no_tokens() -> None:
    """The timeout carries the text so far and the job's id; the job's final text starts with that text."""
    async with connected(call_budget=1.0) as (client, sim, _):
        result = await client.call_tool("chat_completion", {"prompt": "write", "model": STEADY})
        fields = data(result)
        assert result.is_error
        assert fields["code"] == "timeout"
        assert fields["retryable"] is True
        assert fields["details"]["continuing_as_job"] is True
        job_id = fields["job_id"]
        assert fields["details"]["job_id"] == job_id
        assert f"continuing as job {job_id}" in text(result)
        partial = fields["partial_content"]
        assert partial
        assert partial in text(result)
        done = None
        for _ in range(40):  # each job_result waits up to the call budget; the generation takes ~1.5 s
            done = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 1})
            if "content" in data(done):
                break
        assert done is not None
        assert not done.is_error, text(done)
        assert data(done)["content"].startswith(partial)
        assert len(data(done)["content"]) > len(partial)
        assert sim.stats.model(STEADY).disconnects == 0
        assert sim.stats.model(STEADY).requests == 1


async def test_on_budget_cut_ends_the_call_and_keeps_no_job() -> None:
    async with connected(call_budget=1.0, jobs=JobSettings(on_budget="cut")) as (client, sim, _):
        result = await client.call_tool("chat_completion", {"prompt": "write", "model": SLOW})
        listing = data(await client.call_tool("list_jobs", {}))
        await eventually(lambda: sim.stats.model(SLOW).in_progress == 0)
    assert result.is_error
    assert data(result)["code"] == "timeout"
    assert "job_id" not in data(result)
    assert listing["jobs"] == []
    assert listing["active"] == 0


# --------------------------------------------------------------------------- keeping: TTL and bounds


async def test_a_finished_job_expires_after_its_ttl() -> None:
    async with connected(jobs=JobSettings(ttl=0.2)) as (client, _, _):
        # STEADY streams for 1.5 s, so this job_result waits on the running job: on a loaded machine a fetch
        # sent after a QUICK job finished could come later than the 0.2 s TTL and find it gone.
        job_id = await started(client, "chat_completion", {"prompt": "hi", "model": STEADY})
        fetched = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 20})
        assert not fetched.is_error

        async def gone() -> bool:
            return (await client.call_tool("job_status", {"job_id": job_id})).is_error

        await eventually_async(gone)
        result = await client.call_tool("job_result", {"job_id": job_id})
    assert data(result)["code"] == "job_not_found"
    assert "jobs.ttl" in text(result)


async def test_finished_jobs_are_bounded_in_count_oldest_first() -> None:
    async with connected(jobs=JobSettings(max_kept=2)) as (client, _, _):
        ids = []
        for prompt in ("a", "b", "c"):
            job_id = await started(client, "chat_completion", {"prompt": prompt, "model": QUICK})
            assert not (await client.call_tool("job_result", {"job_id": job_id, "wait_s": 20})).is_error
            ids.append(job_id)
        oldest = await client.call_tool("job_status", {"job_id": ids[0]})
        listing = data(await client.call_tool("list_jobs", {}))
    assert data(oldest)["code"] == "job_not_found"
    assert sorted(j["job_id"] for j in listing["jobs"]) == sorted(ids[1:])
    assert listing["kept"] == 2


async def test_finished_jobs_are_bounded_in_bytes() -> None:
    async with connected(jobs=JobSettings(max_bytes=1)) as (client, _, _):
        job_id = await started(client, "chat_completion", {"prompt": "a", "model": QUICK})
        await eventually_async(lambda: _gone(client, job_id))
        listing = data(await client.call_tool("list_jobs", {}))
    assert listing["kept"] == 0


async def _gone(client: Client, job_id: str) -> bool:
    return (await client.call_tool("job_status", {"job_id": job_id})).is_error


async def test_active_jobs_are_bounded_and_the_refusal_is_busy() -> None:
    async with connected(jobs=JobSettings(max_active=1)) as (client, _, _):
        first = await started(client, "chat_completion", {"prompt": "long", "model": SLOW})
        refused = await client.call_tool("chat_completion", {"prompt": "x", "model": QUICK, "background": True})
        await client.call_tool("cancel_job", {"job_id": first})
    assert refused.is_error
    assert data(refused)["code"] == "busy"
    assert data(refused)["retryable"] is True
    assert "jobs.max_active" in text(refused)


@pytest.mark.parametrize("job_id", ["", "job_x", "job_" + "A" * 22, " ../etc/passwd", "x" * 5000])
async def test_an_unknown_job_id_is_job_not_found(job_id: str) -> None:
    async with connected() as (client, _, _):
        for tool in ("job_status", "job_result", "cancel_job"):
            result = await client.call_tool(tool, {"job_id": job_id})
            assert result.is_error
            assert data(result)["code"] == "job_not_found"
            assert data(result)["retryable"] is False


def test_job_ids_are_unguessable() -> None:
    ids = {_job.new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) >= 4 + 22 for i in ids)  # 128 random bits, URL-safe


# --------------------------------------------------------------------------- the jobs actor crashing


async def test_a_crash_of_the_jobs_actor_ends_its_jobs_with_typed_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain call waiting on a job gets actor_crashed; a background job's stream is closed and its id is then
    unknown; the restarted actor runs new jobs."""
    async with connected() as (client, sim, _):
        background = await started(client, "chat_completion", {"prompt": "long", "model": SLOW})
        await eventually_async(lambda: _has(client, background, "state", "running"))

        def crash(self: _job.Job, result: object, now: float) -> None:
            raise RuntimeError("boom")

        with monkeypatch.context() as patch:
            patch.setattr(_job.Job, "succeed", crash)
            result = await client.call_tool("chat_completion", {"prompt": "hi", "model": QUICK})
        assert result.is_error
        assert data(result)["code"] == "actor_crashed"
        assert data(result)["retryable"] is True
        await eventually(lambda: sim.stats.model(SLOW).in_progress == 0)
        assert sim.stats.model(SLOW).disconnects == 1
        lost = await client.call_tool("job_status", {"job_id": background})
        assert data(lost)["code"] == "job_not_found"
        again = await client.call_tool("chat_completion", {"prompt": "hi", "model": QUICK})
    assert not again.is_error, text(again)


# --------------------------------------------------------------------------- what the caller is told


async def test_descriptions_say_when_to_use_background_and_stay_under_2_kb() -> None:
    async with connected() as (client, _, _):
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert len(INSTRUCTIONS.encode()) < 2048
    assert "background" in INSTRUCTIONS
    for name, tool in tools.items():
        assert tool.description is not None
        assert len(tool.description.encode()) < 2048, name
    for name in ("chat_completion", "text_completion", "batch_chat", *[t for t, _ in AUTONOMOUS]):
        background = tools[name].input_schema["properties"]["background"]
        assert background["default"] is False
        assert "job_result" in background["description"]
    assert {"job_status", "job_result", "cancel_job", "list_jobs"} <= set(tools)


def test_on_budget_must_be_job_or_cut(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[jobs]\non_budget = "later"\n')
    with pytest.raises(ConfigError, match=r"jobs\.on_budget"):
        load_settings(CliFlags(config=str(path)), environ={})
    path.write_text("[jobs]\nttl = 0\n")
    with pytest.raises(ConfigError, match=r"jobs\.ttl"):
        load_settings(CliFlags(config=str(path)), environ={})
    path.write_text('[jobs]\non_budget = "cut"\nttl = 60\n')
    settings = load_settings(CliFlags(config=str(path)), environ={})
    assert settings.jobs.on_budget == "cut"
    assert settings.jobs.ttl == 60
