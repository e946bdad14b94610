"""A simulated LM Studio: a real HTTP server on loopback for tests, demos and benchmarks.

It speaks LM Studio's OpenAI-compatible and native APIs with LM Studio's
quirks (errors as HTTP 200, ``role`` on every delta, ``key:2`` instances,
auto-evict mid-generation …), schedules requests like LM Studio (``parallel``
slots per loaded instance and a FIFO queue, JIT loads), can be scripted per
model and injects faults on demand or at random. It runs on asyncio and trio.

In-process::

    from bridge.sim import SimServer, SimConfig, SimModel, Say, CallTools, ToolCallSpec, Fault, FaultKind

    config = SimConfig(models=(SimModel(id="m", latency=0.2, reply_tokens=1, loaded=True),))
    async with SimServer(config) as sim:          # sim.url == "http://127.0.0.1:<port>"
        sim.script("m", [Say("hi"), CallTools([ToolCallSpec("read", '{"path": "a"}')]),
                         Fault(FaultKind.RATE_LIMIT, retry_after=2)])
        ...                                       # point any OpenAI/LM Studio client at sim.url
        sim.stats.model("m").max_generating, sim.requests("m")[0].messages

Out of process: ``python -m bridge.sim --port 0 --port-file PATH`` (or read the
``LISTENING <port>`` line on stdout; :func:`bridge.sim.testing.sim_process`
does it for you) and drive it with ``/__sim/stats``, ``/__sim/script``,
``/__sim/requests`` and ``/__sim/reset``; see :mod:`bridge.sim.cli`.

Timing knobs (per :class:`SimModel`): ``ttft`` then one token every
``1 / tokens_per_s``; ``latency=L`` makes every request hold its slot exactly L
seconds and then answer at once (use ``reply_tokens=1`` for cheap replies);
``jit_load_delay`` for loads. Fault knobs: scripted ``Fault(kind, …)`` turns, or
``SimConfig.fault_rates={FaultKind.DROP: 0.05, …}`` with ``seed``.
"""

from __future__ import annotations

from bridge.sim._config import FaultKind, ReasoningMode, SimConfig, SimModel, ToolStyle, default_config, load_config
from bridge.sim._script import CallTools, Fault, Raw, Say, ToolCallSpec, Turn
from bridge.sim._state import RecordedRequest
from bridge.sim._stats import DisconnectRecord, ModelStats, SimStats
from bridge.sim.server import SimServer

__all__ = [
    # the server
    "SimServer",
    "SimConfig",
    "SimModel",
    "default_config",
    "load_config",
    "ReasoningMode",
    "ToolStyle",
    # scripting
    "Say",
    "CallTools",
    "ToolCallSpec",
    "Raw",
    "Fault",
    "FaultKind",
    "Turn",
    # observing
    "SimStats",
    "ModelStats",
    "DisconnectRecord",
    "RecordedRequest",
]
