"""``lmstudio-bridge demo``: the whole system, end to end, in about twenty seconds.

It starts the simulated LM Studio in this process (four models that stream at
a human-visible pace), starts ``lmstudio-bridge serve`` as a real stdio
subprocess pointed at it, and talks to it with the MCP SDK's client, exactly
as Claude Code would: the handshake, the tool list, listing models,
concurrent chats on different models, a batch across models where one item
fails cleanly, progress notifications, a call cancelled by the client (and
the simulated server seeing its stream closed), a typed error, an autonomous
run, a long chat that outlasts the call budget and goes on as a job, and the
per-model status. It prints a transcript with timings and exits 0, or 1 with
the step that went wrong.

Needs only the installed package: no LM Studio, no network, no test extras.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

import anyio

__all__ = ["DemoError", "main"]

CODER: Final = "qwen/qwen3-coder-30b"
GEMMA: Final = "google/gemma-3-12b"
GPT_OSS: Final = "openai/gpt-oss-20b"
EMBEDDER: Final = "text-embedding-nomic-embed-text-v1.5"
WRITER: Final = "mistralai/devstral-small"
VISION: Final = "qwen/qwen2.5-vl-7b"
PIXEL: Final = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
CALL_BUDGET: Final = 5.0
"""The demo's call budget: short, so one long chat runs out of it and goes on as a job."""


class DemoError(Exception):
    """A step of the demo did not show what it should."""


class Transcript:
    """The demo's printed steps, timed by the event loop's clock from the start of the tour."""

    def __init__(self) -> None:
        self.start = 0.0  # set by ``tour``: the clock exists only inside the event loop
        self.total = 0.0  # the last elapsed time, for the summary printed after the loop ended

    def elapsed(self) -> float:
        self.total = anyio.current_time() - self.start
        return self.total

    def step(self, line: str) -> None:
        print(f"[{self.elapsed():6.2f}s] {line}", flush=True)

    def detail(self, line: str) -> None:
        for part in line.splitlines() or [""]:
            print(f"          {part}", flush=True)


def _sim_config() -> Any:
    from bridge.sim import SimConfig, SimModel

    return SimConfig(
        models=(
            SimModel(id=CODER, loaded=True, ttft=0.15, tokens_per_s=40, reply_tokens=120, context_length=8192),
            SimModel(id=GEMMA, loaded=True, ttft=0.25, tokens_per_s=30, reply_tokens=60, reasoning="think"),
            SimModel(id=GPT_OSS, loaded=True, ttft=0.1, tokens_per_s=50, reply_tokens=60, reasoning="reasoning"),
            SimModel(id=EMBEDDER, type="embeddings", loaded=True, tool_use=False, context_length=2048),
            SimModel(id=WRITER, loaded=True, ttft=0.1, tokens_per_s=60, reply_tokens=480, context_length=8192),
            SimModel(id=VISION, loaded=True, ttft=0.2, tokens_per_s=60, reply_tokens=30, vision=True, tool_use=False),
        ),
        auto_evict=False,
    )


def _text(result: Any) -> str:
    return str(result.content[0].text) if result.content else ""


def _short(text: str, width: int = 72) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


async def tour(out: Transcript, backend: str, workdir: Path, errlog: TextIO) -> None:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    from bridge.sim import SimServer

    out.start = anyio.current_time()

    async with SimServer(_sim_config()) as sim:
        out.step(f"simulated LM Studio listening on {sim.url} with {len(sim.config.models)} models (in this process)")
        # The user's own settings must not steer the demo: a clean environment and an empty config file.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LMSTUDIO", "MCP_JSON"))}
        children = workdir / "mcp.json"
        children.write_text(
            json.dumps(
                {"mcpServers": {"workshop": {"command": sys.executable, "args": ["-m", "bridge.sim.demo_tools"]}}}
            )
        )
        (workdir / "config.toml").write_text(
            f"call_budget = {CALL_BUDGET:g}\n"
            f"[children]\nconfig_paths = [{json.dumps(str(children))}]\ndiscover = false\nwatch = false\n"
        )
        params = StdioServerParameters(
            command=sys.executable,
            args=[
                "-m",
                "bridge",
                "serve",
                "--base-url",
                sim.url,
                "--config",
                str(workdir / "config.toml"),
                "--log-level",
                "WARNING",
                "--backend",
                backend,
            ],
            env=env,
        )
        await _session_tour(out, sim, params, errlog, ClientSession, stdio_client)


async def _session_tour(
    out: Transcript, sim: Any, params: Any, errlog: Any, session_class: Any, stdio_client: Any
) -> None:
    started = anyio.current_time()
    async with (
        stdio_client(params, errlog=errlog) as (read, write),
        session_class(read, write, read_timeout_seconds=60) as session,
    ):
        init = await session.initialize()
        out.step(
            f"started `lmstudio-bridge serve` over stdio; initialize answered {anyio.current_time() - started:.2f} s "
            f"after spawning it (protocol {init.protocol_version}, server {init.server_info.name} "
            f"{init.server_info.version})"
        )
        tools = (await session.list_tools()).tools
        read_only = [t.name for t in tools if t.annotations and t.annotations.read_only_hint]
        out.step(f"{len(tools)} tools: {', '.join(t.name for t in tools)}")
        out.detail(f"read-only (a host may run them in parallel): {', '.join(read_only)}")

        await _list_models(out, session)
        await _concurrent_chats(out, session)
        await _batch(out, session)
        await _progress(out, session)
        await _cancellation(out, session, sim)
        await _typed_error(out, session)
        await _image(out, session, sim)
        await _autonomous(out, session, sim)
        await _job(out, session)
        await _status(out, session)
        closing = anyio.current_time()
    out.step(f"closed stdin: the bridge shut its actors down and exited ({anyio.current_time() - closing:.2f} s)")


async def _call(session: Any, name: str, args: dict[str, Any], **kw: Any) -> Any:
    from mcp.types import CallToolResult

    result = await session.call_tool(name, args, **kw)
    if not isinstance(result, CallToolResult):
        raise DemoError(f"{name} answered with {type(result).__name__}, not a tool result")
    return result


async def _list_models(out: Transcript, session: Any) -> None:
    t = anyio.current_time()
    result = await _call(session, "list_models", {})
    if result.is_error:
        raise DemoError(f"list_models failed: {_text(result)}")
    models = result.structured_content["models"]
    out.step(f"list_models -> {len(models)} models ({anyio.current_time() - t:.2f} s)")
    for line in _text(result).splitlines()[1 : 1 + len(models)]:
        out.detail(line)


async def _concurrent_chats(out: Transcript, session: Any) -> None:
    out.step("three chat_completion calls at once, one per model (each model streams ~1 s of tokens):")
    timings: dict[str, tuple[float, str, int]] = {}

    async def chat(model: str, prompt: str) -> None:
        t = anyio.current_time()
        result = await _call(session, "chat_completion", {"prompt": prompt, "model": model, "max_tokens": 30})
        if result.is_error:
            raise DemoError(f"chat_completion on {model} failed: {_text(result)}")
        data = result.structured_content
        timings[model] = (anyio.current_time() - t, data["content"], data.get("tokens", 0))

    t0 = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(chat, CODER, "Write a haiku about queues.")
        tg.start_soon(chat, GEMMA, "Name three prime numbers.")
        tg.start_soon(chat, GPT_OSS, "What is an actor system?")
    wall = anyio.current_time() - t0
    for model, (took, content, tokens) in timings.items():
        out.detail(f"{model}: {tokens} tokens in {took:.2f} s: {_short(content, 60)!r}")
    total = sum(took for took, _, _ in timings.values())
    out.detail(f"together: {wall:.2f} s of wall time for {total:.2f} s of calls — they ran concurrently")
    if wall > total * 0.9:
        raise DemoError("the three chats did not overlap")


async def _batch(out: Transcript, session: Any) -> None:
    out.step("batch_chat: 2 prompts x 2 models, plus one item for a model that does not exist:")
    args = {
        "prompts": ["Say hello in French.", "Say hello in Japanese."],
        "models": [CODER, GPT_OSS],
        "items": [{"prompt": "This one fails.", "model": "acme/no-such-model"}],
        "max_tokens": 12,
    }
    result = await _call(session, "batch_chat", args)
    data = result.structured_content
    for item in sorted(data["items"], key=lambda i: i["index"]):
        if item["ok"]:
            out.detail(f"[{item['index']}] {item['model']}: ok, {item.get('tokens', 0)} tokens")
        else:
            out.detail(f"[{item['index']}] {item['model']}: {item['code']}: {_short(item['message'], 64)}")
    summary = f"{data['succeeded']} succeeded, {data['failed']} failed, in {data['elapsed_s']:.2f} s"
    out.detail(f"{summary}; isError={str(result.is_error).lower()}")
    if data["succeeded"] != 4 or data["failed"] != 1 or result.is_error:
        raise DemoError(f"the batch should have 4 answers and 1 clean failure: {_text(result)[:400]}")


async def _progress(out: Transcript, session: Any) -> None:
    out.step(f"chat_completion with a progress token ({CODER}, 80 tokens at 40 tokens/s):")
    seen: list[str] = []
    t = anyio.current_time()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")
        out.detail(f"progress @ {anyio.current_time() - t:4.2f} s: {message} (value {progress:g})")

    result = await _call(
        session,
        "chat_completion",
        {"prompt": "Explain backpressure.", "model": CODER, "max_tokens": 80},
        progress_callback=on_progress,
    )
    if result.is_error:
        raise DemoError(f"the chat with progress failed: {_text(result)}")
    out.detail(f"answer: {result.structured_content['tokens']} tokens in {anyio.current_time() - t:.2f} s")
    if len(seen) < 2:
        raise DemoError(f"expected several progress notifications, got {seen}")


async def _cancellation(out: Transcript, session: Any, sim: Any) -> None:
    from bridge.sim.testing import wait_until

    stats = sim.stats.model(CODER)
    before = stats.disconnects
    out.step(f"a long chat ({CODER}, 120 tokens ≈ 3 s) cancelled by the client after 1 s:")
    t = anyio.current_time()
    with anyio.move_on_after(1.0) as scope:
        await _call(session, "chat_completion", {"prompt": "Tell me a long story.", "model": CODER})
    if not scope.cancelled_caught:
        raise DemoError("the long chat finished before it could be cancelled")
    out.detail(f"client gave up at {anyio.current_time() - t:.2f} s (the SDK sends notifications/cancelled)")
    try:
        await wait_until(lambda: stats.disconnects > before and stats.in_progress == 0, timeout=5.0)
    except TimeoutError:
        raise DemoError(
            f"the simulated server did not see the stream closed (disconnects {stats.disconnects}, "
            f"in progress {stats.in_progress})"
        ) from None
    record = stats.disconnect_log[-1]
    out.detail(
        f"the simulated LM Studio saw the stream closed after {record.tokens_sent} tokens, "
        f"{anyio.current_time() - t:.2f} s in; requests in progress on {CODER}: {stats.in_progress} (slot free)"
    )


async def _image(out: Transcript, session: Any, sim: Any) -> None:
    args = {"prompt": "What is in this picture?", "model": VISION, "images": [PIXEL]}
    result = await _call(session, "chat_completion", args)
    if result.is_error or sim.stats.model(VISION).images != 1:
        raise DemoError(f"the image chat should have reached the vision model: {_short(_text(result), 200)}")
    out.step(f"chat_completion with an image ({VISION}, a vision model): the simulated server got 1 image part")
    refused = await _call(session, "chat_completion", {**args, "model": CODER})
    code = (refused.structured_content or {}).get("code")
    if not refused.is_error or code != "unsupported":
        raise DemoError(f"an image to a model that cannot see should be refused: {_short(_text(refused), 200)}")
    out.detail(f"the same image to {CODER} -> isError=true, code={code}, before anything was sent:")
    out.detail(_short(_text(refused), 150))


async def _typed_error(out: Transcript, session: Any) -> None:
    result = await _call(session, "chat_completion", {"prompt": "hi", "model": "qwen3-coder"})
    out.step('chat_completion(model="qwen3-coder") -> a typed error, not a traceback:')
    if not result.is_error:
        raise DemoError("a wrong model id should have been an error")
    data = result.structured_content
    out.detail(f"isError=true, code={data['code']}, retryable={str(data['retryable']).lower()}")
    out.detail(_short(_text(result), 150))


async def _autonomous(out: Transcript, session: Any, sim: Any) -> None:
    from bridge.sim import CallTools, Say, ToolCallSpec

    sentence = "Supervised actors keep every local model busy and every failure typed."
    sim.script(
        CODER,
        [
            CallTools([ToolCallSpec("word_count", {"text": sentence})]),
            Say("The sentence has 10 words."),
        ],
    )
    started = anyio.current_time()
    result = await _call(
        session,
        "autonomous_with_mcp",
        {"mcp_name": "workshop", "task": f"How many words are in: {sentence!r}?", "model": CODER},
    )
    data = result.structured_content or {}
    out.step(
        f"autonomous_with_mcp on {CODER} with the 'workshop' child server: {data.get('stop_reason')} after "
        f"{data.get('rounds')} rounds in {anyio.current_time() - started:.2f} s -> {_short(str(data.get('answer')))}"
    )
    for call in data.get("tool_calls", []):
        out.detail(
            f"round {call['round']}: {call['server']}.{call['tool']}({json.dumps(call['arguments'])[:60]}) "
            f"{'ok' if call['ok'] else 'error'} in {call.get('duration_s', 0) * 1000:.0f} ms"
        )


async def _job(out: Transcript, session: Any) -> None:
    out.step(f"a long chat ({WRITER}, 480 tokens ≈ 8 s) with a call budget of {CALL_BUDGET:g} s: it goes on as a job")
    t = anyio.current_time()
    result = await _call(session, "chat_completion", {"prompt": "Write the whole chapter.", "model": WRITER})
    data = result.structured_content or {}
    if not result.is_error or data.get("code") != "timeout" or "job_id" not in data:
        raise DemoError(f"the long chat should have gone on as a job: {_short(_text(result), 200)}")
    job_id, partial = data["job_id"], str(data.get("partial_content", ""))
    out.detail(
        f"at {anyio.current_time() - t:.2f} s: timeout (retryable), continuing as job {job_id[:12]}…, "
        f"with the {len(partial)} characters written so far"
    )
    status = (await _call(session, "job_status", {"job_id": job_id})).structured_content or {}
    out.detail(f"job_status: {status.get('state')}, {status.get('tokens')} tokens so far")
    final: dict[str, Any] = {}
    for _ in range(10):
        fetched = await _call(session, "job_result", {"job_id": job_id, "wait_s": CALL_BUDGET - 1})
        final = fetched.structured_content or {}
        if "content" in final or fetched.is_error:
            break
    content = str(final.get("content", ""))
    if not content.startswith(partial) or len(content) <= len(partial):
        raise DemoError(f"the job's result should continue the partial text: {final}")
    out.detail(
        f"job_result at {anyio.current_time() - t:.2f} s: {final.get('tokens')} tokens; it starts with the "
        "partial text, so nothing generated before the timeout was lost"
    )


async def _status(out: Transcript, session: Any) -> None:
    result = await _call(session, "bridge_status", {})
    if result.is_error:
        raise DemoError(f"bridge_status failed: {_text(result)}")
    out.step("bridge_status:")
    for line in _text(result).splitlines():
        if line.startswith("- ") and "slots busy" in line:
            out.detail(_short(line[2:], 150))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status (0: everything shown as it should be)."""
    parser = argparse.ArgumentParser(prog="lmstudio-bridge demo", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio", help="event loop")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr)
    out = Transcript()
    print("lmstudio-bridge demo: the bridge over real MCP stdio, against a simulated LM Studio\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="lmstudio-bridge-demo-") as tmp:
        workdir = Path(tmp)
        (workdir / "config.toml").write_text("# the demo's settings: only the command line's\n", encoding="utf-8")
        log_path = workdir / "serve.log"
        with open(log_path, "w", encoding="utf-8") as errlog:
            try:
                anyio.run(tour, out, args.backend, workdir, errlog, backend=args.backend)
            except DemoError as exc:
                errlog.flush()
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                if tail.strip():
                    print(f"--- the bridge's log (stderr) ---\n{tail}", file=sys.stderr)
                print(f"\ndemo FAILED: {exc}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                return 130
    print(
        f"\ndone in {out.total:.1f} s. Next: `lmstudio-bridge check`, then "
        "`claude mcp add lmstudio -- lmstudio-bridge serve --shared`.",
        flush=True,
    )
    return 0
