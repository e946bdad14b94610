"""The LLM client against the real llama.cpp server at a realistic load.

Run: ``python -m benchmarks real_llama [--quick]``. llama.cpp (xllamacpp, SmolLM2-135M)
runs with 4 slots in its own process; 64 callers stream real generations, 4 at a
time, through :class:`~bridge.llm.LLMClient` and, for comparison, through bare httpx
(one streamed POST, lines read to ``[DONE]``). Reported for each: requests per second,
generated tokens per second, and this process's own CPU per request (the part the
client can change; the model's time is the server's). Issue 15.8 chose httpx's
transport over the bridge's own with this benchmark (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx
import msgspec

from benchmarks import _report
from benchmarks._callers import run_callers
from bridge.llm import ChatMessage, ChatRequest, LLMClient
from tests.peers import ensure_smollm2_gguf, running_llama_server

SLOTS = 4
CALLERS = 64

Generate = Callable[[ChatRequest], Awaitable[int]]
"""Stream one chat completion; the number of tokens generated."""


async def _with_bridge(base_url: str, run: Callable[[Generate], Awaitable[None]]) -> None:
    async with LLMClient(base_url, max_connections=16) as client:

        async def generate(request: ChatRequest) -> int:
            outcome = await client.chat(request)
            return (outcome.usage.completion_tokens or 0) if outcome.usage else 0

        await run(generate)


async def _with_bare_httpx(base_url: str, run: Callable[[Generate], Awaitable[None]]) -> None:
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=None, trust_env=False) as http:

        async def generate(request: ChatRequest) -> int:
            body = {**msgspec.to_builtins(request), "stream": True, "stream_options": {"include_usage": True}}
            body.update(body.pop("extra", {}))
            tokens = 0
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if line == "data: [DONE]":
                        break
                    if line.startswith("data: "):
                        # every frame is decoded, as a client must to read it
                        usage = msgspec.json.decode(line[6:]).get("usage")
                        tokens = usage["completion_tokens"] if usage else tokens
            return tokens

        await run(generate)


CLIENTS: dict[str, Callable[[str, Callable[[Generate], Awaitable[None]]], Awaitable[None]]] = {
    "bridge": _with_bridge,
    "bare_httpx": _with_bare_httpx,
}


async def _round(base_url: str, model: str, client: str, requests: int, tokens: int, tag: str) -> dict[str, float]:
    slots = anyio.CapacityLimiter(SLOTS)
    generated = 0
    failures = 0
    cpu = wall = 0.0

    async def run(generate: Generate) -> None:
        nonlocal cpu, wall

        async def one(index: int) -> None:
            nonlocal generated, failures
            request = ChatRequest(
                model=model,
                messages=[ChatMessage(role="user", content=f"[{tag}] Count from {index} upwards.")],
                max_tokens=tokens,
                temperature=0.0,
                extra={"ignore_eos": True},
            )
            async with slots:
                try:
                    tokens_generated = await generate(request)
                except Exception as exc:  # a failure is counted and named, not fatal to the benchmark
                    failures += 1
                    print(f"{client}: request {index} failed: {exc!r}", file=sys.stderr)
                else:
                    generated += tokens_generated

        cpu0 = time.process_time()
        wall = await run_callers(requests, CALLERS, one)
        cpu = time.process_time() - cpu0

    await CLIENTS[client](base_url, run)
    return {
        "req_per_s": requests / wall,
        "tokens_per_s": generated / wall,
        "bridge_cpu_ms_per_req": 1000 * cpu / requests,
        "failures": float(failures),
    }


async def run_all(quick: bool) -> dict[str, float]:
    requests, tokens, rounds = (8, 4, 1) if quick else (64, 32, 4)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-llama-") as work:
        gguf = ensure_smollm2_gguf()
        # Two threads, as the figures in benchmarks/README.md were taken (the tests run their servers on one).
        with running_llama_server(
            gguf, Path(work), n_parallel=SLOTS, n_ctx=4096, threads=2, embeddings=False
        ) as server:
            # one warm-up round so the first transport measured does not pay for the server's warm-up
            await _round(server.base_url, server.model, "bare_httpx", SLOTS, tokens, "warm-up")
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in CLIENTS}
            order = list(CLIENTS)
            for number in range(rounds):
                # Interleaved and in turn first, so drift in the machine's load hits every client
                # alike; every prompt is new (tagged), so none gains from llama.cpp's prompt cache.
                for name in order if number % 2 == 0 else reversed(order):
                    tag = f"{name}-{number}"
                    runs[name].append(await _round(server.base_url, server.model, name, requests, tokens, tag))
    for name, results in runs.items():
        for key in ("req_per_s", "tokens_per_s", "bridge_cpu_ms_per_req"):
            figures[f"{name}_{key}"] = statistics.median(r[key] for r in results)
        figures[f"{name}_failures"] = sum(r["failures"] for r in results)
    figures.update(requests=requests, tokens_per_request=tokens, rounds=rounds, slots=SLOTS)
    return figures


def main(argv: list[str] | None = None) -> int:
    return _report.child_main("python -m benchmarks.real_llama", run_all, argv, log_level=None)


if __name__ == "__main__":
    raise SystemExit(main())
