"""Everything one running simulator knows, shared by its route handlers.

Owned by :class:`~bridge.sim.server.SimServer`; nothing here is global, so
two simulators in one process never see each other.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup

from bridge.sim._config import FaultKind, SimConfig, SimModel
from bridge.sim._engine import Job
from bridge.sim._faults import FaultPicker
from bridge.sim._generate import Ids
from bridge.sim._http import HttpRequest
from bridge.sim._models import ModelRegistry, UnknownModel
from bridge.sim._params import Invalid
from bridge.sim._script import Fault, ScriptBook, Turn
from bridge.sim._stats import SimStats, disconnect_record
from bridge.sim._wire import invalid_request, model_not_found, no_models_loaded

__all__ = ["RecordedRequest", "ServerState", "Tracker"]

_NOT_PARAMS = frozenset({"model", "messages", "tools", "input", "prompt"})


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request a model received, as a test sees it.

    Attributes:
        endpoint: The path (``/v1/chat/completions``, ``/v1/responses`` …).
        model: The model id it was routed to.
        requested: The ``model`` string the client sent.
        body: The decoded JSON body, untouched.
        messages: The conversation as chat messages. For ``/v1/responses`` this
            includes the history behind ``previous_response_id``; for
            ``/v1/completions`` it is one user message holding the prompt.
        at: ``anyio.current_time()`` when it arrived.
    """

    endpoint: str
    model: str
    requested: str
    body: dict[str, Any]
    messages: list[dict[str, Any]]
    at: float

    @property
    def tools(self) -> list[Any]:
        """The ``tools`` sent (empty if none)."""
        tools = self.body.get("tools")
        return list(tools) if isinstance(tools, list) else []

    @property
    def params(self) -> dict[str, Any]:
        """Sampling and control parameters: the body without model, messages/input/prompt and tools."""
        return {k: v for k, v in self.body.items() if k not in _NOT_PARAMS}

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    def snapshot(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "requested": self.requested,
            "body": self.body,
            "messages": self.messages,
            "at": self.at,
        }


class Tracker:
    """Counts one request from arrival to its end: completed, failed, or left by its client."""

    __slots__ = ("_closed", "_stats", "endpoint", "job", "model", "ok", "request")

    def __init__(self, stats: SimStats, model: str, request: HttpRequest) -> None:
        self._stats = stats
        self.model = model
        self.endpoint = request.path
        self.request = request
        self.ok = False
        self.job: Job | None = None
        self._closed = False
        stats.received(model)

    def close(self) -> None:
        """Record the outcome once (call from ``finally``)."""
        if self._closed:
            return
        self._closed = True
        if self.request.client_gone and not self.ok:
            tokens = self.job.tokens_sent if self.job is not None else 0
            record = disconnect_record(self.model, self.endpoint, self.request.gone_at, tokens)
            self._stats.disconnected(record)
        else:
            self._stats.finished(self.model, ok=self.ok)


class ServerState:
    """The simulator's state. Strictly private: reach it through ``SimServer``."""

    def __init__(self, config: SimConfig, task_group: TaskGroup) -> None:
        self.config = config
        self.stats = SimStats([m.id for m in config.models])
        self.registry = ModelRegistry(config, self.stats, task_group)
        self.scripts = ScriptBook()
        self.faults = FaultPicker(config)
        self.ids = Ids(config.seed)
        self.unresponsive = config.unresponsive
        self.responses: dict[str, list[dict[str, Any]]] = {}
        self.downloads: dict[str, dict[str, Any]] = {}  # LM Studio's download jobs, by id
        self._log: dict[str, deque[RecordedRequest]] = {}

    # --- requests ------------------------------------------------------------------
    def record(
        self, request: HttpRequest, spec: SimModel, requested: str, body: dict[str, Any], messages: list[dict[str, Any]]
    ) -> None:
        log = self._log.setdefault(spec.id, deque(maxlen=self.config.request_log_size))
        log.append(RecordedRequest(request.path, spec.id, requested, body, messages, anyio.current_time()))

    def requests(self, model: str | None = None) -> list[RecordedRequest]:
        if model is not None:
            return list(self._log.get(model, ()))
        return sorted((r for log in self._log.values() for r in log), key=lambda r: r.at)

    def reset(self) -> None:
        self.stats.reset()
        self.scripts.clear()
        self._log.clear()

    # --- resolution ----------------------------------------------------------------
    def resolve(self, body: dict[str, Any], want: str) -> tuple[SimModel, str | None, str]:
        """The model a request names (or the loaded one, if it names none); :class:`Invalid` with the error reply.

        ``want`` is ``llm`` or ``embeddings``. Returns ``(spec, instance_id, requested)``.
        """
        requested = body.get("model")
        if requested is None or requested == "":
            spec = self.registry.first_loaded(want)
            if spec is None:
                raise Invalid(no_models_loaded())
            return spec, None, spec.id
        if not isinstance(requested, str):
            raise Invalid(invalid_request("Expected string, received " + type(requested).__name__, param="model"))
        try:
            spec, instance_id = self.registry.resolve(requested)
        except UnknownModel as exc:
            if not self.config.jit and not any(True for _ in self.registry.all_instances()):
                raise Invalid(no_models_loaded()) from None
            raise Invalid(model_not_found(exc.identifier, exc.available)) from None
        if not self.config.jit and instance_id is None and not self.registry.instances(spec.id):
            if not any(True for _ in self.registry.all_instances()):
                raise Invalid(no_models_loaded())
            raise Invalid(model_not_found(requested, self.registry.listed_ids()))
        if spec.type != want:
            if want == "embeddings":
                raise Invalid(invalid_request(f'Model "{requested}" is not an embedding model.', param="model"))
            raise Invalid(
                invalid_request(
                    f'Model "{requested}" is an embedding model and cannot be used for text generation.', param="model"
                )
            )
        return spec, instance_id, requested

    def take_turn(self, model: str, allowed: frozenset[FaultKind]) -> tuple[Turn | None, Fault | None]:
        """The next scripted turn for ``model`` and the fault for this request (scripted, else random)."""
        turn = self.scripts.pop(model)
        fault = turn if isinstance(turn, Fault) else self.faults.draw(allowed)
        if fault is not None:
            self.stats.fault(model, fault.kind)
        return (None if isinstance(turn, Fault) else turn), fault
