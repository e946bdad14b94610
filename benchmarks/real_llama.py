"""The LLM client against the real llama.cpp server at a realistic load.

Run: ``python -m benchmarks real_llama [--quick]``. llama.cpp (xllamacpp, SmolLM2-135M)
runs with 4 slots in its own process; 64 callers stream real generations through
:class:`~bridge.llm.LLMClient`, 4 at a time. Reported per transport: requests per
second, generated tokens per second, and the bridge process's own CPU per request
(the part a transport can change; the model's time is the server's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import msgspec

from bridge.llm import ChatMessage, ChatRequest, LLMClient
from bridge.llm._transport import HTTP11Transport
from tests.peers import ensure_smollm2_gguf, running_llama_server

SLOTS = 4
CALLERS = 64

TRANSPORTS: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
    "httpx": lambda: httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=16)),
    "http11": lambda: HTTP11Transport(max_connections=16),
}


async def _round(
    base_url: str, model: str, transport: httpx.AsyncBaseTransport, requests: int, tokens: int, tag: str
) -> dict[str, float]:
    slots = anyio.CapacityLimiter(SLOTS)
    generated = 0
    failures = 0
    next_index = 0
    async with LLMClient(base_url, transport=transport) as client:

        async def caller() -> None:
            nonlocal generated, failures, next_index
            while next_index < requests:
                index = next_index
                next_index += 1
                request = ChatRequest(
                    model=model,
                    messages=[ChatMessage(role="user", content=f"[{tag}] Count from {index} upwards.")],
                    max_tokens=tokens,
                    temperature=0.0,
                    extra={"ignore_eos": True},
                )
                async with slots:
                    try:
                        outcome = await client.chat(request)
                    except Exception:  # a failure is counted, not fatal to the benchmark
                        failures += 1
                        continue
                generated += (outcome.usage.completion_tokens or 0) if outcome.usage else 0

        cpu0, wall0 = time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(CALLERS):
                tg.start_soon(caller)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "req_per_s": requests / wall,
        "tokens_per_s": generated / wall,
        "bridge_cpu_ms_per_req": 1000 * cpu / requests,
        "failures": float(failures),
    }


async def run_all(quick: bool) -> dict[str, float]:
    requests, tokens, rounds = (32, 8, 1) if quick else (64, 32, 4)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-llama-") as work:
        gguf = ensure_smollm2_gguf()
        with running_llama_server(gguf, Path(work), n_parallel=SLOTS, n_ctx=4096, embeddings=False) as server:
            # one warm-up round so the first transport measured does not pay for the server's warm-up
            await _round(server.base_url, server.model, httpx.AsyncHTTPTransport(), SLOTS, tokens, "warm-up")
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in TRANSPORTS}
            order = list(TRANSPORTS)
            for number in range(rounds):
                # Interleaved and in turn first, so drift in the machine's load hits every transport
                # alike; every prompt is new (tagged), so none gains from llama.cpp's prompt cache.
                for name in order if number % 2 == 0 else reversed(order):
                    transport = TRANSPORTS[name]()
                    tag = f"{name}-{number}"
                    runs[name].append(await _round(server.base_url, server.model, transport, requests, tokens, tag))
    for name, results in runs.items():
        for key in ("req_per_s", "tokens_per_s", "bridge_cpu_ms_per_req"):
            figures[f"{name}_{key}"] = statistics.median(r[key] for r in results)
        figures[f"{name}_failures"] = sum(r["failures"] for r in results)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_llama")
    parser.add_argument("--backend", choices=["asyncio", "trio"], required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    figures = anyio.run(run_all, args.quick, backend=args.backend)
    sys.stdout.write(msgspec.json.encode(figures).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
