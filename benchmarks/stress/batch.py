"""``batch_chat`` fan-out: 1,000 prompts over 8 models in ONE call.

8 models x 4 slots at 100 ms per request: 1,000 items cannot take less than 1000 / 32 x 0.1 s =
3.1 s. The scenario sends the 1,000 prompts as one ``batch_chat`` call, then the same items as 10
concurrent calls of 100 (how a host that caps its own requests would send them), and measures both.

Figures per form: items succeeded / failed with a typed error / missing (an item with neither an
answer nor a typed error), wall time and its share of the slot bound, calls lost. 1,000 answers do
not fit in one tool result: the single call's result names a results file holding every item, which
is where its items are counted from.

Run: ``python -m benchmarks.stress.batch --backend asyncio|trio [--quick]``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
from mcp import ClientSession
from mcp.types import CallToolResult

from benchmarks.stress import _load as L

MODELS, SLOTS, LATENCY = 8, 4, 0.1


def _items(ids: list[str], start: int, count: int) -> list[dict[str, Any]]:
    return [{"prompt": f"p{i}", "model": ids[i % len(ids)]} for i in range(start, start + count)]


class _Items:
    """Per-item outcomes of one or more ``batch_chat`` calls."""

    def __init__(self) -> None:
        self.succeeded = self.failed = self.missing = self.lost_calls = 0

    async def send(self, session: ClientSession, items: list[dict[str, Any]]) -> None:
        try:
            with anyio.fail_after(155):
                result = await session.call_tool("batch_chat", {"items": items}, read_timeout_seconds=150)
        except Exception:
            self.lost_calls += 1
            self.missing += len(items)
            return
        assert isinstance(result, CallToolResult)
        data = result.structured_content or {}
        rows = data.get("items", [])
        if "results_file" in data:  # too big for one result: every item is in the file it names
            path = anyio.Path(data["results_file"])
            rows = [json.loads(line) for line in (await path.read_text()).splitlines()]
            await path.unlink()
        self.succeeded += sum(1 for r in rows if r.get("ok"))
        self.failed += sum(1 for r in rows if not r.get("ok") and r.get("code"))
        self.missing += len(items) - sum(1 for r in rows if r.get("ok") or r.get("code"))

    def figures(self, prefix: str, seconds: float, bound: float) -> dict[str, float]:
        return {
            f"{prefix}_succeeded": float(self.succeeded),
            f"{prefix}_failed": float(self.failed),
            f"{prefix}_missing": float(self.missing),
            f"{prefix}_lost_calls": float(self.lost_calls),
            f"{prefix}_s": seconds,
            f"{prefix}_share_of_bound": bound / seconds,
        }


async def run(backend: str, quick: bool) -> dict[str, float]:
    prompts = 100 if quick else 1000
    per_call = 10 if quick else 100
    ids = L.model_ids(MODELS)
    models = [{"id": m, "loaded": True, "parallel": SLOTS, "latency": LATENCY, "reply_tokens": 1} for m in ids]
    bound = prompts / (MODELS * SLOTS) * LATENCY
    figures: dict[str, float] = {"prompts": float(prompts), "per_call": float(per_call), "bound_s": bound}
    limits = {m: (SLOTS, prompts) for m in ids}
    async with L.open_sim(models) as sim, L.serve_warm(backend, sim.url, limits, call_budget=120) as served:
        session = served.session
        single = _Items()
        start = time.perf_counter()
        await single.send(session, _items(ids, 0, prompts))
        figures |= single.figures("single", time.perf_counter() - start, bound)
        split = _Items()
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for first in range(0, prompts, per_call):
                tg.start_soon(split.send, session, _items(ids, first, min(per_call, prompts - first)))
        figures |= split.figures("split", time.perf_counter() - start, bound)
        figures["lost"] = float(single.lost_calls + split.lost_calls)
    return figures


def main(argv: list[str] | None = None) -> int:
    return L.scenario_main("batch", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
