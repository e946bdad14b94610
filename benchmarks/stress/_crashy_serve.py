"""``serve`` with a fault-injecting model worker, for the restart storm.

The front end has no crash hook, so this wrapper patches ``LLMWorkerActor.handle`` before running
``bridge.cli.main``: a ``Chat`` crashes its worker (an unexpected ``RuntimeError``, as a bug would)
with probability ``STRESS_CRASH_RATE``, a few milliseconds after it started, while the worker serves
other requests. Everything else is the real ``serve``: the supervisor restarts the worker and the
requests it was serving fail with ``actor_crashed``.

Each crash and the first successful reply of that model after it are appended to
``STRESS_CRASH_LOG`` as ``crash|ok <model> <time.time()>`` lines, so the load generator can measure
recovery time.

Usage: ``python -m benchmarks.stress._crashy_serve serve --backend … --config …``.
"""

from __future__ import annotations

import os
import random
import sys
import time
from typing import Any

import anyio

from bridge.actors.worker import LLMWorkerActor
from bridge.messages import Chat

_rng = random.Random(int(os.environ.get("STRESS_CRASH_SEED", "3")))
_rate = float(os.environ.get("STRESS_CRASH_RATE", "0.01"))
_log_path = os.environ.get("STRESS_CRASH_LOG")
_crashed: set[str] = set()
_original = LLMWorkerActor.handle


def _note(kind: str, model: str) -> None:
    if _log_path:
        with open(_log_path, "a") as log:
            log.write(f"{kind} {model} {time.time():.6f}\n")


async def _handle(self: LLMWorkerActor, message: Any, ctx: Any) -> object:
    if isinstance(message, Chat) and _rng.random() < _rate:
        await anyio.sleep(_rng.uniform(0.0, 0.01))
        _crashed.add(self.model.id)
        _note("crash", self.model.id)
        raise RuntimeError("injected crash (restart storm)")
    result = await _original(self, message, ctx)
    if isinstance(message, Chat) and self.model.id in _crashed:
        _crashed.discard(self.model.id)
        _note("ok", self.model.id)
    return result


LLMWorkerActor.handle = _handle  # type: ignore[method-assign]


def main() -> int:
    from bridge.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
