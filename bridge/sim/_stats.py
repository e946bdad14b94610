"""Counters a test or benchmark reads to see what the simulated server did.

Every event is counted twice: on the model's :class:`ModelStats` and on the
server-wide ``total``, so a benchmark can ask either "how many requests did
model A queue" or "how many streams were generating at once overall".
Timestamps are ``anyio.current_time()`` of the server's event loop (comparable
with the test's own clock when the server runs in-process); ``wall`` fields
carry ``time.time()`` for a server in another process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import anyio

from bridge.sim._config import FaultKind

__all__ = ["DisconnectRecord", "ModelStats", "SimStats"]


@dataclass(frozen=True, slots=True)
class DisconnectRecord:
    """A client that left before its reply was complete.

    Attributes:
        model: Model id the request addressed.
        endpoint: Request path.
        detected_at: When the server saw the socket close (EOF or a failed write).
        stopped_at: When generation for the request had stopped.
        wall: ``time.time()`` at ``stopped_at``, for a server in another process.
        tokens_sent: Tokens emitted before the generation stopped.
    """

    model: str
    endpoint: str
    detected_at: float
    stopped_at: float
    wall: float
    tokens_sent: int


@dataclass(slots=True)
class ModelStats:
    """Counters for one model (or, as ``SimStats.total``, for all of them).

    Attributes:
        requests: Requests received (generation and embedding endpoints).
        in_progress: Received and not yet finished.
        generating: Holding a slot now.
        max_generating: Most ever holding slots at once.
        queued: Waiting for a slot now.
        max_queued: Most ever waiting at once.
        completed: Finished with a full reply.
        errors: Finished with an error (faults, eviction, overflow, bad state).
        disconnects: Clients that left before the end of their reply.
        disconnect_log: One record per disconnect.
        loads: Instances loaded (JIT or API; a duplicate JIT load counts).
        evictions: Instances unloaded by auto-evict.
        unloads: Instances unloaded by ``/api/v1/models/unload``.
        faults: Faults injected, by kind.
        slot_waits: Seconds each request waited for a slot, in order of getting one.
        images: Image parts received by a model that takes them.
    """

    requests: int = 0
    in_progress: int = 0
    generating: int = 0
    max_generating: int = 0
    queued: int = 0
    max_queued: int = 0
    completed: int = 0
    errors: int = 0
    disconnects: int = 0
    disconnect_log: list[DisconnectRecord] = field(default_factory=list)
    loads: int = 0
    evictions: int = 0
    unloads: int = 0
    faults: dict[FaultKind, int] = field(default_factory=dict)
    slot_waits: list[float] = field(default_factory=list)
    images: int = 0

    def snapshot(self) -> dict[str, Any]:
        """Plain data (JSON-ready) copy."""
        return {
            "requests": self.requests,
            "in_progress": self.in_progress,
            "generating": self.generating,
            "max_generating": self.max_generating,
            "queued": self.queued,
            "max_queued": self.max_queued,
            "completed": self.completed,
            "errors": self.errors,
            "disconnects": self.disconnects,
            "images": self.images,
            "disconnect_log": [
                {
                    "model": r.model,
                    "endpoint": r.endpoint,
                    "detected_at": r.detected_at,
                    "stopped_at": r.stopped_at,
                    "wall": r.wall,
                    "tokens_sent": r.tokens_sent,
                }
                for r in self.disconnect_log
            ],
            "loads": self.loads,
            "evictions": self.evictions,
            "unloads": self.unloads,
            "faults": {str(kind): n for kind, n in self.faults.items()},
            "slot_waits": list(self.slot_waits),
        }


class SimStats:
    """All counters of one server: ``total`` plus one :class:`ModelStats` per model id.

    Read it live from ``SimServer.stats``; :meth:`snapshot` gives plain data
    (also served at ``GET /__sim/stats``).
    """

    __slots__ = ("_models", "http_requests", "total")

    def __init__(self, model_ids: Iterator[str] | list[str] | tuple[str, ...] = ()) -> None:
        self.total = ModelStats()
        self._models: dict[str, ModelStats] = {model_id: ModelStats() for model_id in model_ids}
        self.http_requests = 0
        """Every HTTP request parsed, whatever its route."""

    def model(self, model_id: str) -> ModelStats:
        """Counters of one model (created empty on first use)."""
        stats = self._models.get(model_id)
        if stats is None:
            stats = self._models[model_id] = ModelStats()
        return stats

    @property
    def models(self) -> dict[str, ModelStats]:
        """Counters by model id."""
        return dict(self._models)

    def reset(self) -> None:
        """Zero every counter except the gauges of work still running (in progress, generating, queued)."""
        for stats in (self.total, *self._models.values()):
            live = (stats.in_progress, stats.generating, stats.queued)
            fresh = ModelStats(in_progress=live[0], generating=live[1], queued=live[2])
            fresh.max_generating, fresh.max_queued = live[1], live[2]
            for f in fields(ModelStats):
                setattr(stats, f.name, getattr(fresh, f.name))
        self.http_requests = 0

    def snapshot(self) -> dict[str, Any]:
        """Plain data (JSON-ready) copy of everything."""
        return {
            "http_requests": self.http_requests,
            "total": self.total.snapshot(),
            "models": {model_id: stats.snapshot() for model_id, stats in self._models.items()},
        }

    # --- recording (used by the server) ---------------------------------------
    def _both(self, model_id: str) -> tuple[ModelStats, ModelStats]:
        return self.model(model_id), self.total

    def received(self, model_id: str) -> None:
        for stats in self._both(model_id):
            stats.requests += 1
            stats.in_progress += 1

    def finished(self, model_id: str, *, ok: bool) -> None:
        for stats in self._both(model_id):
            stats.in_progress -= 1
            if ok:
                stats.completed += 1
            else:
                stats.errors += 1

    def disconnected(self, record: DisconnectRecord) -> None:
        for stats in self._both(record.model):
            stats.in_progress -= 1
            stats.disconnects += 1
            stats.disconnect_log.append(record)

    def queue_changed(self, model_id: str, delta: int) -> None:
        for stats in self._both(model_id):
            stats.queued += delta
            stats.max_queued = max(stats.max_queued, stats.queued)

    def slot_taken(self, model_id: str, waited: float) -> None:
        for stats in self._both(model_id):
            stats.generating += 1
            stats.max_generating = max(stats.max_generating, stats.generating)
            stats.slot_waits.append(waited)

    def slot_released(self, model_id: str) -> None:
        for stats in self._both(model_id):
            stats.generating -= 1

    def loaded(self, model_id: str) -> None:
        for stats in self._both(model_id):
            stats.loads += 1

    def unloaded(self, model_id: str, *, evicted: bool) -> None:
        for stats in self._both(model_id):
            if evicted:
                stats.evictions += 1
            else:
                stats.unloads += 1

    def fault(self, model_id: str, kind: FaultKind) -> None:
        for stats in self._both(model_id):
            stats.faults[kind] = stats.faults.get(kind, 0) + 1


def disconnect_record(model: str, endpoint: str, detected_at: float | None, tokens_sent: int) -> DisconnectRecord:
    """A record stamped now; ``detected_at`` defaults to now when the write, not the reader, found the close."""
    now = anyio.current_time()
    return DisconnectRecord(
        model=model,
        endpoint=endpoint,
        detected_at=now if detected_at is None else detected_at,
        stopped_at=now,
        wall=time.time(),
        tokens_sent=tokens_sent,
    )
