"""LM Studio's model downloads (``POST /api/v1/models/download`` and its status), simulated.

A model the simulator already has answers ``already_downloaded``; any other id starts a download that is
``downloading`` at its first status look and ``completed`` at the next, after which the model is listed (not
loaded), as LM Studio lists a model once its download finished.
"""

from __future__ import annotations

import time
from typing import Any

from bridge.sim._config import SimModel
from bridge.sim._http import HttpRequest, Response, json_response
from bridge.sim._params import Invalid, json_object, required_string, wrong_type
from bridge.sim._state import ServerState
from bridge.sim._wire import invalid_request

__all__ = ["download", "download_status"]

_SIZE = 4_683_073_536  # bytes: a 7B model at Q4_K_M


async def download(state: ServerState, request: HttpRequest) -> Response:
    try:
        model = required_string(json_object(request), "model")
        if not model.strip():
            raise wrong_type("model", "string", model)
    except Invalid as exc:
        return exc.response
    started = int(time.time())
    if model in state.registry.specs:
        return json_response(200, {"job_id": None, "status": "already_downloaded", "started_at": started})
    job_id = f"job_{len(state.downloads) + 1:06d}"
    state.downloads[job_id] = {"model": model, "looks": 0, "started_at": started}
    return json_response(
        200, {"job_id": job_id, "status": "downloading", "total_size_bytes": _SIZE, "started_at": started}
    )


async def download_status(state: ServerState, request: HttpRequest) -> Response:
    job_id = request.path.rsplit("/", 1)[-1]
    job = state.downloads.get(job_id)
    if job is None:
        return invalid_request(f'No download job with id "{job_id}".', param="job_id", code="not_found", status=404)
    job["looks"] += 1
    reply: dict[str, Any] = {"job_id": job_id, "total_size_bytes": _SIZE, "started_at": job["started_at"]}
    if job["looks"] < 2:
        return json_response(200, {**reply, "status": "downloading", "downloaded_bytes": _SIZE // 2})
    if job["model"] not in state.registry.specs:
        state.registry.specs[job["model"]] = SimModel(id=job["model"], loaded=False)
    return json_response(200, {**reply, "status": "completed", "downloaded_bytes": _SIZE})
