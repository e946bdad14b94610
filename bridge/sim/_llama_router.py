"""llama.cpp's router (``llama-server`` started without a model): its listing and load routes.

Taught from llama.cpp's server (router mode, 2025-12 onwards): ``/v1/models`` and
``/models`` give each model a ``status`` object whose ``value`` is ``loaded``,
``loading`` or ``unloaded``; ``POST /models/load`` and ``/models/unload`` take
``{"model": id}`` and answer ``{"success": true}`` (the load goes on after the
answer); errors are ``{"error": {"code", "message", "type"}}`` with 400 or 404;
LM Studio's native API is absent (404).
"""

from __future__ import annotations

from typing import Any

import anyio

from bridge.sim._http import HttpRequest, Response, json_response
from bridge.sim._params import Invalid, json_object, required_string
from bridge.sim._state import ServerState

__all__ = ["list_models", "load", "not_found", "unload"]


def _error(status: int, message: str, kind: str) -> Response:
    return json_response(status, {"error": {"code": status, "message": message, "type": kind}})


def not_found(method: str, path: str) -> Response:
    """What llama-server answers for a route it does not have."""
    return _error(404, "File Not Found", "not_found_error")


def _status(state: ServerState, model_id: str) -> str:
    if state.registry.instances(model_id):
        return "loaded"
    return "loading" if state.registry.loading(model_id) else "unloaded"


async def list_models(state: ServerState, request: HttpRequest) -> Response:
    created = int(anyio.current_time())
    data: list[dict[str, Any]] = [
        {
            "id": spec.id,
            "object": "model",
            "owned_by": "llamacpp",
            "created": created,
            "status": {"value": _status(state, spec.id)},
        }
        for spec in state.registry.specs.values()
    ]
    return json_response(200, {"data": data, "object": "list"})


def _model_named(request: HttpRequest) -> str:
    return required_string(json_object(request), "model")


async def load(state: ServerState, request: HttpRequest) -> Response:
    try:
        model = _model_named(request)
    except Invalid as exc:
        return exc.response
    spec = state.registry.specs.get(model)
    if spec is None:
        return _error(404, "model is not found", "not_found_error")
    if _status(state, model) == "loaded":
        return _error(400, "model is already loaded", "invalid_request_error")
    if not state.registry.loading(model):
        state.registry.start_load(spec)
    return json_response(200, {"success": True})


async def unload(state: ServerState, request: HttpRequest) -> Response:
    try:
        model = _model_named(request)
    except Invalid as exc:
        return exc.response
    if model not in state.registry.specs:
        return _error(404, "model is not found", "not_found_error")
    instances = state.registry.instances(model)
    if not instances:
        return _error(400, "model is not loaded", "invalid_request_error")
    for instance in instances:
        state.registry.unload(instance, evicted=False)
    return json_response(200, {"success": True})
