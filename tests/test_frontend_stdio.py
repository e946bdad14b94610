"""``lmstudio-bridge serve`` as a real stdio subprocess, through the MCP SDK's stdio client, against the
simulator running in another process: the path Claude Code takes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio
import pytest
import sniffio
from mcp import StdioServerParameters

from bridge.sim.testing import SimProcess
from tests._stdio import (
    INITIALIZE,
    INITIALIZED,
    call,
    clean_env,
    data,
    drain,
    initialize,
    read_message,
    send,
    serve_argv,
    session_for,
    sim_fixture,
    sim_stats,
    start_raw,
    stdio_session,
    text,
    tool_call,
)
from tests._util import eventually, free_port
from tests.peers import ProcessLeakCheck

QWEN = "qwen/qwen3-coder-30b"
GEMMA = "google/gemma-3-12b"
SLOW = "slow/streamer"
LONG = "long/writer"
EMBED = "text-embedding-nomic"

SIM_CONFIG = {
    "models": [
        {"id": QWEN, "loaded": True, "reply_tokens": 6},
        {"id": GEMMA, "loaded": False, "reply_tokens": 6},
        {"id": SLOW, "loaded": True, "ttft": 0.05, "tokens_per_s": 40, "reply_tokens": 2000},
        {"id": LONG, "loaded": True, "reply_tokens": 3000, "context_length": 16384},
        {"id": EMBED, "type": "embeddings", "loaded": True, "embedding_dim": 8},
    ],
    "auto_evict": False,
}

LONG_CALL = tool_call(2, "chat_completion", {"prompt": "long", "model": SLOW})

sim = sim_fixture(SIM_CONFIG)


# --------------------------------------------------------------------------- every tool over stdio


async def test_every_tool_over_stdio(sim: SimProcess, tmp_path: Path, errlog: TextIO) -> None:
    """Each tool answers through a real stdio session, with the server on the test's event loop."""
    async with session_for(sim.url, tmp_path, errlog) as session:
        tools = {t.name for t in (await session.list_tools()).tools}
        calls: list[tuple[str, dict[str, Any]]] = [
            ("health_check", {}),
            ("list_models", {"model_type": "llm"}),
            ("get_current_model", {}),
            ("chat_completion", {"prompt": "hi", "model": QWEN, "system_prompt": "Be brief."}),
            ("text_completion", {"prompt": "Once", "model": QWEN, "stop_sequences": ["."]}),
            ("generate_embeddings", {"text": ["a", "b"]}),
            ("create_response", {"input": "hi", "model": QWEN}),
            ("batch_chat", {"prompts": ["a", "b"], "models": [QWEN, GEMMA]}),
            ("load_model", {"model": GEMMA}),
            ("unload_model", {"model": GEMMA}),
            ("bridge_status", {}),
            ("list_available_mcps", {}),
        ]
        autonomous = {"autonomous_with_mcp", "autonomous_with_multiple_mcps", "autonomous_discover_and_execute"}
        jobs = {"job_status", "job_result", "cancel_job", "list_jobs"}
        # The autonomous tools need child servers; tests/test_frontend_autonomous.py runs them over stdio.
        assert {name for name, _ in calls} | autonomous | jobs == tools
        results = {name: await call(session, name, args) for name, args in calls}
        ticket = await call(session, "chat_completion", {"prompt": "hi", "model": QWEN, "background": True})
        job = {"job_id": data(ticket)["job_id"]}
        results["job_result"] = await call(session, "job_result", {**job, "wait_s": 20})
        results["job_status"] = await call(session, "job_status", job)
        results["list_jobs"] = await call(session, "list_jobs", {})
        results["cancel_job"] = await call(session, "cancel_job", job)  # finished: a cancel changes nothing
    assert data(results["job_result"])["model"] == QWEN
    assert data(results["job_status"])["state"] == "done"
    assert data(results["cancel_job"])["state"] == "done"
    assert [j["job_id"] for j in data(results["list_jobs"])["jobs"]] == [job["job_id"]]
    for name, result in results.items():
        assert not result.is_error, f"{name}: {text(result)}"
        assert text(result), name
    assert data(results["chat_completion"])["model"] == QWEN
    assert len(data(results["generate_embeddings"])["vectors"]) == 2
    assert data(results["batch_chat"])["succeeded"] == 4
    assert data(results["health_check"])["healthy"] is True
    assert data(results["bridge_status"])["process"]["event_loop"] == sniffio.current_async_library()
    stats = await sim_stats(sim)
    assert stats["models"][GEMMA]["loads"] >= 1
    # batch_chat loaded one instance (JIT) and load_model a second (LM Studio loads another, GEMMA:2):
    # unload_model unloads the model, every instance of it, as /api/v1/models lists them.
    assert stats["models"][GEMMA]["unloads"] == 2


async def test_progress_notifications_over_stdio(sim: SimProcess, tmp_path: Path, errlog: TextIO) -> None:
    async with session_for(sim.url, tmp_path, errlog) as session:
        messages: list[str] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            messages.append(message or "")

        result = await call(
            session, "chat_completion", {"prompt": "go", "model": SLOW, "max_tokens": 40}, progress_callback=on_progress
        )
    assert not result.is_error, text(result)
    assert any(m.startswith(f"first token from {SLOW}") for m in messages), messages
    assert any(m.endswith(f"tokens from {SLOW}") for m in messages), messages


async def test_cancellation_over_stdio_frees_the_slot(sim: SimProcess, tmp_path: Path, errlog: TextIO) -> None:
    """The client cancels a long call: the simulator sees the stream closed and nothing stays in progress."""
    async with session_for(sim.url, tmp_path, errlog) as session:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: call(session, "chat_completion", {"prompt": "long", "model": SLOW}))
            generating = 0

            async def poll() -> None:
                nonlocal generating
                generating = (await sim_stats(sim))["models"][SLOW]["generating"]

            with anyio.fail_after(30):
                while generating != 1:
                    await poll()
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        with anyio.fail_after(30):
            while True:
                stats = (await sim_stats(sim))["models"][SLOW]
                if stats["disconnects"] == 1 and stats["in_progress"] == 0:
                    break
                await anyio.sleep(0.02)
        status = data(await call(session, "bridge_status", {}))
    worker = next(m for m in status["models"] if m["model"] == SLOW)
    assert worker["in_flight"] == 0
    assert worker["queued"] == 0


async def test_errors_over_stdio_are_typed_results(sim: SimProcess, tmp_path: Path, errlog: TextIO) -> None:
    async with session_for(sim.url, tmp_path, errlog) as session:
        missing = await call(session, "chat_completion", {"prompt": "x", "model": "no/such-model"})
        bad = await call(session, "chat_completion", {"prompt": "x", "max_tokens": "many"})
        unknown = await call(session, "no_such_tool", {})
    for result, code in ((missing, "model_not_found"), (bad, "bad_request"), (unknown, "bad_request")):
        assert result.is_error
        assert text(result).startswith(f"{code}: ")
        assert data(result)["code"] == code
        assert "retryable" in data(result)
        assert "retry_after" in data(result)


async def test_output_is_cut_over_stdio(sim: SimProcess, tmp_path: Path, errlog: TextIO) -> None:
    async with session_for(sim.url, tmp_path, errlog, "--max-output-chars", "2500") as session:
        result = await call(session, "chat_completion", {"prompt": "x", "model": LONG, "max_tokens": 1000})
    assert not result.is_error, text(result)
    assert len(text(result)) <= 2500
    assert "…[cut " in text(result)


async def test_call_budget_flag_gives_a_typed_timeout(sim: SimProcess, tmp_path: Path, errlog: TextIO) -> None:
    async with session_for(sim.url, tmp_path, errlog, "--call-budget", "0.5") as session:
        result = await call(session, "chat_completion", {"prompt": "long", "model": SLOW})
    assert result.is_error
    assert text(result).startswith("timeout: ")
    assert data(result)["retryable"] is True


# --------------------------------------------------------------------------- start-up and shutdown


async def test_initialize_and_tools_without_any_llm_server(tmp_path: Path, errlog: TextIO) -> None:
    """Nothing listens on the configured port: the handshake, the tool list and health_check all answer."""
    url = f"http://127.0.0.1:{free_port()}"
    async with session_for(url, tmp_path, errlog) as session:
        tools = (await session.list_tools()).tools
        health = await call(session, "health_check", {})
        chat = await call(session, "chat_completion", {"prompt": "hi"})
    assert len(tools) == 19
    assert not health.is_error
    assert data(health)["healthy"] is False
    assert chat.is_error
    assert data(chat)["code"] == "backend_unavailable"


async def test_stdin_eof_shuts_down_with_a_call_in_flight(
    sim: SimProcess, tmp_path: Path, process_leak_check: ProcessLeakCheck
) -> None:
    """Closing stdin mid-call ends the process (exit 0), closes the LLM stream, and leaves no process behind."""
    process = await start_raw(sim.url, tmp_path)
    async with process:
        buffer = bytearray()
        reply = await initialize(process, buffer)
        assert reply["result"]["serverInfo"]["name"] == "lmstudio-bridge"
        await send(process, INITIALIZED, LONG_CALL)
        process_leak_check.sample()
        with anyio.fail_after(30):
            while (await sim_stats(sim))["models"][SLOW]["generating"] != 1:
                await anyio.sleep(0.02)
        await process.stdin.aclose()
        with anyio.fail_after(30):  # a bound against hanging, not a timing assertion
            await process.wait()
        rest = await drain(process.stdout)
    assert process.returncode == 0
    for line in rest.splitlines():  # whatever was still written is JSON-RPC
        assert json.loads(line)["jsonrpc"] == "2.0"
    with anyio.fail_after(30):
        while (stats := (await sim_stats(sim))["models"][SLOW])["in_progress"] != 0:
            await anyio.sleep(0.02)
    assert stats["disconnects"] == 1


async def test_notifications_cancelled_stops_the_call(sim: SimProcess, tmp_path: Path) -> None:
    """What Claude Code sends when the user interrupts: the call gets no answer, its stream is closed,
    and the server goes on answering other requests."""
    process = await start_raw(sim.url, tmp_path)
    async with process:
        buffer = bytearray()
        await initialize(process, buffer)
        await send(process, INITIALIZED, LONG_CALL)
        with anyio.fail_after(30):
            while (await sim_stats(sim))["models"][SLOW]["generating"] != 1:
                await anyio.sleep(0.02)
        await send(process, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}})
        with anyio.fail_after(30):
            while (stats := (await sim_stats(sim))["models"][SLOW])["in_progress"] != 0:
                await anyio.sleep(0.02)
        await send(process, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
        with anyio.fail_after(30):
            reply = await read_message(process.stdout, buffer)
        await process.stdin.aclose()
        with anyio.fail_after(30):
            await process.wait()
    assert stats["disconnects"] == 1
    assert reply["id"] == 3  # nothing was sent for the cancelled request 2
    assert len(reply["result"]["tools"]) == 19


async def test_stdout_carries_only_json_rpc_and_logs_go_to_stderr(sim: SimProcess, tmp_path: Path) -> None:
    """With DEBUG logs in JSON lines, stdout still holds nothing but JSON-RPC messages."""
    process = await start_raw(sim.url, tmp_path, "--log-level", "DEBUG", "--log-format", "json")
    async with process:
        await send(
            process,
            INITIALIZE,
            INITIALIZED,
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "chat_completion", "arguments": {"prompt": "hi", "model": QWEN}},
            },
            {
                "jsonrpc": "2.0",
                "id": 4,
                "method": "tools/call",
                "params": {"name": "chat_completion", "arguments": {"prompt": "hi", "model": "nope"}},
            },
        )
        buffer = bytearray()
        replies: dict[int, dict[str, Any]] = {}
        with anyio.fail_after(60):
            while len(replies) < 4:
                message = await read_message(process.stdout, buffer)
                if "id" in message:
                    replies[message["id"]] = message
        await process.stdin.aclose()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                out: list[bytes] = []
                err: list[bytes] = []

                async def collect(stream: Any, into: list[bytes]) -> None:
                    into.append(await drain(stream))

                tg.start_soon(collect, process.stdout, out)
                tg.start_soon(collect, process.stderr, err)
                await process.wait()
    assert process.returncode == 0
    assert replies[3]["result"]["isError"] is False
    assert replies[4]["result"]["isError"] is True
    for line in (bytes(buffer) + out[0]).splitlines():
        assert json.loads(line)["jsonrpc"] == "2.0"
    log_lines = [line for line in err[0].decode().splitlines() if line.strip()]
    assert log_lines, "DEBUG logging wrote nothing to stderr"
    records = [json.loads(line) for line in log_lines]
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"].startswith("bridge") for r in records)


async def test_sigterm_stops_an_idle_server(tmp_path: Path, process_leak_check: ProcessLeakCheck) -> None:
    """SIGTERM with stdin still open: the server shuts down and exits by itself."""
    process = await start_raw(f"http://127.0.0.1:{free_port()}", tmp_path)
    async with process:
        buffer = bytearray()
        await initialize(process, buffer)
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            await process.wait()
        await process.stdin.aclose()
    assert process.returncode == 0


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--call-budget", "-1"], {}, "--call-budget"),
        ([], {"LMSTUDIO_BRIDGE_CALL_BUDGET": "soon"}, "LMSTUDIO_BRIDGE_CALL_BUDGET"),
        (["--config", "/nonexistent/bridge.toml"], {}, "does not exist"),
    ],
)
async def test_bad_configuration_exits_2_with_the_reason_on_stderr(
    tmp_path: Path, args: Sequence[str], env: dict[str, str], fragment: str
) -> None:
    process = await anyio.run_process(
        [sys.executable, *serve_argv(*args)],
        env={**clean_env(tmp_path), **env},
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert process.returncode == 2
    assert process.stdout == b""
    assert fragment in process.stderr.decode()
    assert "config_error" in process.stderr.decode()


async def test_the_bare_command_serves(sim: SimProcess, tmp_path: Path, errlog: TextIO) -> None:
    """`lmstudio-bridge` without a command is `serve` (what `claude mcp add … -- lmstudio-bridge` runs)."""
    env = {**clean_env(tmp_path), "LMSTUDIO_BASE_URL": sim.url}
    params = StdioServerParameters(command=sys.executable, args=["-m", "bridge"], env=env)
    async with stdio_session(params, errlog) as session:
        result = await call(session, "list_models", {})
    assert QWEN in {m["id"] for m in data(result)["models"]}


async def test_eof_before_anything_exits_cleanly(tmp_path: Path, process_leak_check: ProcessLeakCheck) -> None:
    """A client that connects and leaves at once: exit 0, nothing on stdout, no process left."""
    process = await start_raw(f"http://127.0.0.1:{free_port()}", tmp_path)
    async with process:
        await process.stdin.aclose()
        with anyio.fail_after(30):
            await process.wait()
        out = await drain(process.stdout)
    assert process.returncode == 0
    assert out == b""
    await eventually(lambda: not process_leak_check.leftovers())
