"""Smoke tests of the real peers and of the fixtures that start them (tests/peers.py).

They prove, on every CI run, that llama.cpp's server with SmolLM2 and the real MCP servers
install, start, answer the requests the bridge makes, and stop. They test mechanics, not
answer quality (the model has 135M parameters). No timing assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from tests import peers
from tests.peers import (
    GET_CURRENT_TIME_TOOL,
    LlamaServer,
    PeerSetupError,
    ProcessLeakCheck,
    assert_no_leftover_processes,
    running_llama_server,
    tool_use_few_shot,
)

SEED = 1234


def _client(server: LlamaServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=httpx.Timeout(120.0, connect=5.0))


def _chat_body(server: LlamaServer, **extra: Any) -> dict[str, Any]:
    return {
        "model": server.model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
        "temperature": 0,
        "seed": SEED,
        **extra,
    }


def _sse_events(lines: list[str]) -> tuple[list[dict[str, Any]], bool]:
    """Parse SSE ``data:`` lines; return the JSON events and whether ``[DONE]`` ended them."""
    events, done = [], False
    for line in lines:
        if not line.startswith("data:"):
            assert line == "" or line.startswith(("event:", ":")), f"unexpected SSE line {line!r}"
            continue
        data = line.removeprefix("data:").strip()
        assert not done, "data after [DONE]"
        if data == "[DONE]":
            done = True
        else:
            events.append(json.loads(data))
    return events, done


# --------------------------------------------------------------------------- the model file


def test_smollm2_gguf_is_a_cached_gguf(smollm2_gguf: Path) -> None:
    assert smollm2_gguf.name == peers.SMOLLM2_GGUF_NAME
    assert smollm2_gguf.parent == peers.cache_dir() / "models"
    with open(smollm2_gguf, "rb") as fh:
        assert fh.read(4) == b"GGUF"


def test_cached_model_is_reused_without_pip(smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_installs(*args: Any, **kwargs: Any) -> str:
        raise AssertionError(f"the cache was not reused: {args}")

    monkeypatch.setattr(peers, "_run", no_installs)
    assert peers.ensure_smollm2_gguf() == smollm2_gguf


def test_cache_dir_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(peers.CACHE_ENV, str(tmp_path / "c"))
    assert peers.cache_dir() == (tmp_path / "c").resolve()
    assert (tmp_path / "c").is_dir()


# --------------------------------------------------------------------------- llama.cpp server


def test_llama_server_is_a_loopback_child_in_its_own_group(llama_server: LlamaServer) -> None:
    assert llama_server.base_url.startswith("http://127.0.0.1:")
    assert 0 < llama_server.port < 65536
    child = psutil.Process(llama_server.pid)
    assert child.ppid() == os.getpid()
    assert os.getpgid(llama_server.pid) == llama_server.pid != os.getpgid(0)
    assert (llama_server.n_ctx, llama_server.n_parallel, llama_server.n_ctx_per_slot) == (4096, 2, 2048)


def test_models_lists_the_alias(llama_server: LlamaServer) -> None:
    with _client(llama_server) as c:
        r = c.get("/v1/models")
    r.raise_for_status()
    data = r.json()["data"]
    assert [m["id"] for m in data] == [llama_server.model]
    assert data[0]["meta"]["n_ctx"] == llama_server.n_ctx_per_slot


def test_chat_completion_returns_text_and_usage(llama_server: LlamaServer) -> None:
    with _client(llama_server) as c:
        r = c.post("/v1/chat/completions", json=_chat_body(llama_server))
    r.raise_for_status()
    body = r.json()
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_chat_completion_streams_chunks_then_done(llama_server: LlamaServer) -> None:
    body = _chat_body(llama_server, stream=True, stream_options={"include_usage": True})
    with _client(llama_server) as c, c.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        assert r.headers["content-type"].startswith("text/event-stream")
        events, done = _sse_events(list(r.iter_lines()))
    assert done, "the stream did not end with data: [DONE]"
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    text = "".join((e["choices"][0]["delta"].get("content") or "") for e in events if e["choices"])
    assert text.strip()
    finishes = [e["choices"][0]["finish_reason"] for e in events if e["choices"] and e["choices"][0]["finish_reason"]]
    assert finishes in (["stop"], ["length"])
    assert events[-1]["usage"]["completion_tokens"] > 0  # include_usage: a last chunk with usage


def test_completions(llama_server: LlamaServer) -> None:
    with _client(llama_server) as c:
        r = c.post(
            "/v1/completions",
            json={
                "model": llama_server.model,
                "prompt": "The capital of France is",
                "max_tokens": 6,
                "temperature": 0,
                "seed": SEED,
            },
        )
    r.raise_for_status()
    body = r.json()
    assert body["object"] == "text_completion"
    assert isinstance(body["choices"][0]["text"], str)
    assert body["choices"][0]["text"]
    assert 0 < body["usage"]["completion_tokens"] <= 6


def test_embeddings_one_vector_per_input(llama_embedding_server: LlamaServer) -> None:
    with _client(llama_embedding_server) as c:
        r = c.post("/v1/embeddings", json={"model": llama_embedding_server.model, "input": ["hello", "a cat sat"]})
    r.raise_for_status()
    data = r.json()["data"]
    assert [d["index"] for d in data] == [0, 1]
    vectors = [d["embedding"] for d in data]
    assert len(vectors[0]) == len(vectors[1]) > 0
    assert all(isinstance(x, float) for x in vectors[0])
    assert vectors[0] != vectors[1]


def test_embeddings_take_inputs_longer_than_the_default_batch(llama_embedding_server: LlamaServer) -> None:
    # llama.cpp embeds an input in one physical batch (512 tokens by default); the fixture
    # raises it to a slot's context so documents of ~2000 tokens can be embedded.
    with _client(llama_embedding_server) as c:
        r = c.post("/v1/embeddings", json={"model": llama_embedding_server.model, "input": "word " * 600})
    r.raise_for_status()
    body = r.json()
    assert body["usage"]["prompt_tokens"] > 512
    assert len(body["data"]) == 1
    assert len(body["data"][0]["embedding"]) > 0


def test_chat_and_embeddings_from_one_server(llama_server: LlamaServer, llama_embedding_server: LlamaServer) -> None:
    assert llama_embedding_server is llama_server


def test_responses_api_answers(llama_server: LlamaServer) -> None:
    with _client(llama_server) as c:
        r = c.post(
            "/v1/responses",
            json={"model": llama_server.model, "input": "Say hello.", "max_output_tokens": 8, "temperature": 0},
        )
    r.raise_for_status()
    body = r.json()
    assert body["object"] == "response"
    assert body["status"] == "completed"
    texts = [part["text"] for item in body["output"] if item["type"] == "message" for part in item["content"]]
    assert "".join(texts).strip()
    assert body["usage"]["output_tokens"] > 0


def test_bad_request_gets_openai_style_error(llama_server: LlamaServer) -> None:
    with _client(llama_server) as c:
        r = c.post("/v1/chat/completions", json={"model": llama_server.model, "messages": "not a list"})
    assert 400 <= r.status_code < 500
    assert isinstance(r.json()["error"]["message"], str)


def _tool_body(server: LlamaServer, **extra: Any) -> dict[str, Any]:
    return {
        "model": server.model,
        "messages": tool_use_few_shot("London"),
        "tools": [GET_CURRENT_TIME_TOOL],
        "temperature": 0,
        "seed": SEED,
        "max_tokens": 48,
        **extra,
    }


def test_tool_call_is_parsed_into_message_tool_calls(llama_server: LlamaServer) -> None:
    with _client(llama_server) as c:
        r = c.post("/v1/chat/completions", json=_tool_body(llama_server))
    r.raise_for_status()
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    calls = choice["message"]["tool_calls"]
    assert len(calls) == 1
    assert calls[0]["type"] == "function"
    assert calls[0]["id"]
    assert calls[0]["function"]["name"] == "get_current_time"
    args = json.loads(calls[0]["function"]["arguments"])
    assert isinstance(args.get("timezone"), str)
    assert args["timezone"]
    assert "<tool_call>" not in (choice["message"].get("content") or "")


def test_tool_call_streams_as_deltas(llama_server: LlamaServer) -> None:
    with (
        _client(llama_server) as c,
        c.stream("POST", "/v1/chat/completions", json=_tool_body(llama_server, stream=True)) as r,
    ):
        r.raise_for_status()
        events, done = _sse_events(list(r.iter_lines()))
    assert done
    deltas = [tc for e in events if e["choices"] for tc in (e["choices"][0]["delta"].get("tool_calls") or [])]
    assert deltas, "no tool_calls deltas in the stream"
    assert {d["index"] for d in deltas} == {0}
    assert [d["function"]["name"] for d in deltas if d.get("function", {}).get("name")] == ["get_current_time"]
    assert sum(1 for d in deltas if d.get("id")) == 1
    args = json.loads("".join(d.get("function", {}).get("arguments") or "" for d in deltas))
    assert isinstance(args.get("timezone"), str)
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"] and e["choices"][0]["finish_reason"]] == [
        "tool_calls"
    ]


def test_a_dedicated_server_starts_and_is_stopped_by_pid(smollm2_gguf: Path, tmp_path: Path) -> None:
    with running_llama_server(smollm2_gguf, tmp_path, n_parallel=1, n_ctx=512, embeddings=False) as srv:
        pid = srv.pid
        with _client(srv) as c:
            assert c.get("/health").status_code == 200
            r = c.post("/v1/embeddings", json={"model": srv.model, "input": "x"})
        assert r.status_code == 501  # embeddings are off on this one
        assert psutil.pid_exists(pid)
    assert_no_leftover_processes([pid], pgids=[pid], timeout=0)
    assert "llama_server.py: listening on" in srv.log_tail(200)


def test_a_server_that_cannot_start_fails_with_its_log(tmp_path: Path, process_leak_check: ProcessLeakCheck) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a gguf file")
    with pytest.raises(PeerSetupError, match=r"did not start: the process exited") as info:
        with running_llama_server(bogus, tmp_path / "srv", start_timeout=60):
            pytest.fail("the server started on a bogus model")
    assert "last lines of" in str(info.value)
    assert str(bogus) in str(info.value) or "gguf" in str(info.value).lower()


# --------------------------------------------------------------------------- leak checker


def test_leak_check_reports_a_process_left_running() -> None:
    checker = ProcessLeakCheck(timeout=0.2)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert [p.pid for p in checker.sample()] == [proc.pid]
        with pytest.raises(pytest.fail.Exception, match=rf"pid {proc.pid}: .*time\.sleep\(60\)"):
            checker.check()
    finally:
        proc.kill()
        proc.wait()
    checker.check()  # gone now
    with pytest.raises(pytest.fail.Exception, match="still running"):
        assert_no_leftover_processes([os.getpid()], timeout=0)


# --------------------------------------------------------------------------- MCP servers


def _params(argv: list[str]) -> StdioServerParameters:
    return StdioServerParameters(command=argv[0], args=argv[1:])


async def test_time_server_lists_and_calls_get_current_time(
    time_server: list[str], process_leak_check: ProcessLeakCheck
) -> None:
    async with stdio_client(_params(time_server)) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        assert init.server_info.name
        assert process_leak_check.sample(), "the server is not a child of this process"
        names = {t.name for t in (await session.list_tools()).tools}
        assert {"get_current_time", "convert_time"} <= names
        result = await session.call_tool("get_current_time", {"timezone": "UTC"}, read_timeout_seconds=30)
        assert isinstance(result, CallToolResult)
        assert not result.is_error, result
        assert result.structured_content is not None
        assert result.structured_content["timezone"] == "UTC"
        assert isinstance(result.structured_content["datetime"], str)


async def test_everything_server_lists_tools_and_echoes(
    everything_server: list[str], process_leak_check: ProcessLeakCheck
) -> None:
    async with stdio_client(_params(everything_server)) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        assert process_leak_check.sample(), "the server is not a child of this process"
        names = {t.name for t in (await session.list_tools()).tools}
        assert {"echo", "get-sum"} <= names
        result = await session.call_tool("echo", {"message": "hello bridge"}, read_timeout_seconds=30)
        assert isinstance(result, CallToolResult)
        assert not result.is_error
        texts = [c.text for c in result.content if isinstance(c, TextContent)]
        assert any("hello bridge" in t for t in texts), texts
        total = await session.call_tool("get-sum", {"a": 2, "b": 3}, read_timeout_seconds=30)
        assert isinstance(total, CallToolResult)
        assert not total.is_error
        assert any("5" in c.text for c in total.content if isinstance(c, TextContent))


def test_everything_install_is_reused_without_npm(
    everything_server: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = peers._run

    def only_node_version(argv: list[str], **kw: Any) -> str:
        assert argv[1:] == ["--version"], f"the npm install was not reused: {argv}"
        return real_run(argv, **kw)

    monkeypatch.setattr(peers, "_run", only_node_version)
    assert peers.ensure_server_everything() == everything_server
    assert everything_server[-1] == "stdio"
    assert Path(everything_server[1]).is_file()
