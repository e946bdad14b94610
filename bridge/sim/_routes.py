"""The route table: model listings, load/unload, embeddings, the greeting, and the simulator's own control routes.

Generation routes live in ``_chat`` and ``_responses``; llama.cpp's router
(``SimConfig.api``) in ``_llama_router``. Anything unknown gets LM Studio's
HTTP 200 ``{"error":"Unexpected endpoint or method. (…)"}``.

The control routes under ``/__sim/`` are not LM Studio's: they let a test or
benchmark drive a simulator running in another process (stats, scripts,
recorded requests, reset). They need no token.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec

from bridge.sim import _downloads as downloads
from bridge.sim import _llama_router as llama_router
from bridge.sim._chat import Collected, chat_completions, completions, prelude
from bridge.sim._config import SimModel
from bridge.sim._engine import GenerationFailed, Job, run_generation, server_turn
from bridge.sim._faults import EMBEDDING_FAULTS
from bridge.sim._generate import Plan, embed, estimate_tokens, message_text
from bridge.sim._http import HttpRequest, Response, StreamingResponse, json_response
from bridge.sim._models import Instance
from bridge.sim._params import Invalid, json_object, required, required_string, wrong_type
from bridge.sim._responses import responses
from bridge.sim._script import decode_turns
from bridge.sim._state import ServerState, Tracker
from bridge.sim._wire import auth_required, invalid_request, model_not_found, model_unloaded, unexpected_endpoint

__all__ = ["Router"]

Handler = Callable[[ServerState, HttpRequest], Awaitable[Response | StreamingResponse]]

_PARAMS_RE = re.compile(r"(\d+(?:\.\d+)?)[bB](?![a-zA-Z])")


def _publisher(model_id: str) -> str:
    return model_id.split("/", 1)[0] if "/" in model_id else "local"


def _v0_entry(spec: SimModel, instances: list[Instance]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": spec.id,
        "object": "model",
        "type": "vlm" if spec.vision and spec.type == "llm" else spec.type,
        "publisher": _publisher(spec.id),
        "arch": spec.arch,
        "compatibility_type": "gguf",
        "quantization": spec.quantization,
        "state": "loaded" if instances else "not-loaded",
        "max_context_length": spec.max_context_length,
    }
    if instances:
        entry["loaded_context_length"] = instances[0].context_length
    entry["capabilities"] = ["tool_use"] if spec.tool_use and spec.type == "llm" else []
    return entry


def _v1_entry(spec: SimModel, instances: list[Instance]) -> dict[str, Any]:
    params = _PARAMS_RE.search(spec.id.rsplit("/", 1)[-1])
    entry: dict[str, Any] = {
        "type": "llm" if spec.type == "llm" else "embedding",
        "publisher": _publisher(spec.id),
        "key": spec.id,
        "display_name": spec.id.rsplit("/", 1)[-1],
    }
    if spec.type == "llm":
        entry["architecture"] = spec.arch
    capabilities: dict[str, Any] = {
        "vision": spec.vision and spec.type == "llm",
        "trained_for_tool_use": spec.tool_use and spec.type == "llm",
    }
    if spec.reasoning is not None:
        capabilities["reasoning"] = {"allowed_options": ["off", "on"], "default": "on"}
    entry.update(
        {
            "quantization": {"name": spec.quantization, "bits_per_weight": 4},
            "size_bytes": 1_000_000_000,
            "params_string": params.group(1).upper() + "B" if params else None,
            "loaded_instances": [
                {
                    "id": instance.id,
                    "config": {
                        "context_length": instance.context_length,
                        "eval_batch_size": 512,
                        "parallel": spec.parallel,
                        "flash_attention": True,
                        "offload_kv_cache_to_gpu": True,
                    },
                }
                for instance in instances
            ],
            "max_context_length": spec.max_context_length,
            "format": "gguf",
            "capabilities": capabilities,
            "description": None,
        }
    )
    return entry


async def _list_v1(state: ServerState, request: HttpRequest) -> Response:
    """``GET /v1/models``; with ``listing_takes_turn``, under the server's generation lock (llama-cpp-python).

    llama.cpp's server adds ``meta`` to each entry, with the context it runs (``n_ctx``) and was trained for.
    """
    turns = state.registry.server_turns if state.config.listing_takes_turn else None
    async with server_turn(turns, state.stats):
        data: list[dict[str, Any]] = [
            {"id": i, "object": "model", "owned_by": "organization_owner"} for i in state.registry.listed_ids()
        ]
    if state.config.api == "llama.cpp":
        for entry in data:
            spec = state.registry.specs.get(entry["id"])
            if spec is not None:
                entry["meta"] = {"n_ctx": spec.context_length, "n_ctx_train": spec.max_context_length}
    return json_response(200, {"data": data, "object": "list"})


async def _list_v0(state: ServerState, request: HttpRequest) -> Response:
    registry = state.registry
    data = [
        _v0_entry(spec, registry.instances(spec.id))
        for spec in registry.specs.values()
        if state.config.jit or registry.instances(spec.id)
    ]
    return json_response(200, {"object": "list", "data": data})


async def _one_v0(state: ServerState, request: HttpRequest) -> Response:
    model_id = request.path.removeprefix("/api/v0/models/")
    spec = state.registry.specs.get(model_id)
    if spec is None:
        return invalid_request(f'Model "{model_id}" not found', param="model", code="model_not_found", status=404)
    return json_response(200, _v0_entry(spec, state.registry.instances(spec.id)))


async def _list_native_v1(state: ServerState, request: HttpRequest) -> Response:
    registry = state.registry
    models = [_v1_entry(spec, registry.instances(spec.id)) for spec in registry.specs.values()]
    return json_response(200, {"models": models})


async def _load(state: ServerState, request: HttpRequest) -> Response:
    try:
        body = json_object(request)
        model = required_string(body, "model")
        context_length = body.get("context_length")
        if context_length is not None and (isinstance(context_length, bool) or not isinstance(context_length, int)):
            raise wrong_type("context_length", "integer", context_length)
    except Invalid as exc:
        return exc.response
    spec = state.registry.specs.get(model.split("@", 1)[0])
    if spec is None:
        return model_not_found(model, list(state.registry.specs))
    if context_length is not None and not 1 <= context_length <= spec.max_context_length:
        message = f"context_length must be between 1 and {spec.max_context_length} for {spec.id}"
        return invalid_request(message, param="context_length", code="invalid_value")
    started = anyio.current_time()
    instance = await state.registry.load(spec, context_length)
    reply: dict[str, Any] = {
        "type": "llm" if spec.type == "llm" else "embedding",
        "instance_id": instance.id,
        "load_time_seconds": anyio.current_time() - started,
        "status": "loaded",
    }
    if body.get("echo_load_config") is True:
        reply["load_config"] = {"context_length": instance.context_length, "parallel": spec.parallel}
    return json_response(200, reply)


async def _unload(state: ServerState, request: HttpRequest) -> Response:
    try:
        instance_id = required_string(json_object(request), "instance_id")
    except Invalid as exc:
        return exc.response
    instance = state.registry.find_instance(instance_id)
    if instance is None:
        message = f'No loaded model instance with identifier "{instance_id}".'
        return invalid_request(message, param="instance_id", code="model_not_found")
    state.registry.unload(instance, evicted=False)
    return json_response(200, {"instance_id": instance_id})


async def _embeddings(state: ServerState, request: HttpRequest) -> Response:
    try:
        body = json_object(request)
        value = body.get("input")
        if value is None:
            raise required("input")
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise wrong_type("input", "string or array of strings", value)
        spec, instance_id, requested = state.resolve(body, "embeddings")
    except Invalid as exc:
        return exc.response
    state.record(request, spec, requested, body, [{"role": "user", "content": t} for t in texts])
    tracker = Tracker(state.stats, spec.id, request)
    try:
        _, fault, early = await prelude(state, spec.id, EMBEDDING_FAULTS)
        if early is not None:
            return early
        tokens = sum(estimate_tokens(t) for t in texts)
        job = Job(spec, instance_id, Plan(), 0, None, fault)
        tracker.job = job
        try:
            await run_generation(job, Collected(), state.registry, state.stats)
        except GenerationFailed as exc:
            return model_unloaded(exc.message)
        data = [
            {"object": "embedding", "embedding": embed(text, spec.embedding_dim), "index": i}
            for i, text in enumerate(texts)
        ]
        model = f"{job.instance.id if job.instance else spec.id}@{spec.quantization.lower()}"
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        tracker.ok = True
        return json_response(200, {"object": "list", "data": data, "model": model, "usage": usage})
    finally:
        tracker.close()


async def _greeting(state: ServerState, request: HttpRequest) -> Response:
    return json_response(200, {"lmstudio": True})


# --- the simulator's own control routes -------------------------------------------------
async def _sim_stats(state: ServerState, request: HttpRequest) -> Response:
    return json_response(200, state.stats.snapshot())


async def _sim_script(state: ServerState, request: HttpRequest) -> Response:
    try:
        body = json_object(request)
        model = body.get("model")
        if not isinstance(model, str) or model not in state.registry.specs:
            return invalid_request(f"Unknown model {model!r}", param="model", code="model_not_found")
        turns = decode_turns(msgspec.json.encode(body.get("turns", [])))
    except Invalid as exc:
        return exc.response
    except msgspec.ValidationError as exc:
        return invalid_request(f"Invalid turns: {exc}", param="turns", code="invalid_value")
    state.scripts.add(model, turns)
    return json_response(200, {"model": model, "pending": state.scripts.pending(model)})


async def _sim_requests(state: ServerState, request: HttpRequest) -> Response:
    model = request.query.get("model", [None])[0]
    return json_response(200, [r.snapshot() for r in state.requests(model)])


async def _sim_reset(state: ServerState, request: HttpRequest) -> Response:
    state.reset()
    return json_response(200, {"reset": True})


_OPEN_ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/lmstudio-greeting"): _greeting,
    ("GET", "/__sim/stats"): _sim_stats,
    ("POST", "/__sim/script"): _sim_script,
    ("GET", "/__sim/requests"): _sim_requests,
    ("POST", "/__sim/reset"): _sim_reset,
}

_OPENAI_ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/v1/models"): _list_v1,
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/completions"): completions,
    ("POST", "/v1/embeddings"): _embeddings,
    ("POST", "/v1/responses"): responses,
}

_LMSTUDIO_ROUTES: dict[tuple[str, str], Handler] = {  # its OpenAI-compatible API and its own
    **_OPENAI_ROUTES,
    ("GET", "/api/v0/models"): _list_v0,
    ("POST", "/api/v0/chat/completions"): chat_completions,
    ("POST", "/api/v0/completions"): completions,
    ("POST", "/api/v0/embeddings"): _embeddings,
    ("GET", "/api/v1/models"): _list_native_v1,
    ("POST", "/api/v1/models/load"): _load,
    ("POST", "/api/v1/models/unload"): _unload,
    ("POST", "/api/v1/models/download"): downloads.download,
}


_LLAMA_ROUTER_ROUTES: dict[tuple[str, str], Handler] = {
    **_OPENAI_ROUTES,
    ("GET", "/v1/models"): llama_router.list_models,
    ("GET", "/models"): llama_router.list_models,
    ("POST", "/models/load"): llama_router.load,
    ("POST", "/models/unload"): llama_router.unload,
}


async def _llama_props(state: ServerState, request: HttpRequest) -> Response:
    """llama.cpp server's ``GET /props``: ``total_slots`` is its ``-np`` (the model's ``parallel`` here);
    ``modalities.vision`` says whether a projector (``--mmproj``) is loaded (the model's ``vision`` here)."""
    spec = next(iter(state.registry.specs.values()))
    return json_response(
        200,
        {
            "total_slots": spec.parallel,
            "default_generation_settings": {"n_ctx": spec.context_length},
            "model_path": f"/models/{spec.id}.gguf",
            "modalities": {"vision": spec.vision, "audio": False},
        },
    )


async def _llama_apply_template(state: ServerState, request: HttpRequest) -> Response:
    """llama.cpp server's ``POST /apply-template``: the chat rendered by the model's template (ChatML here)."""
    try:
        body = json_object(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise wrong_type("messages", "array of objects", messages)
    except Invalid as exc:
        return exc.response
    turns = [f"<|im_start|>{m.get('role', 'user')}\n{message_text(m.get('content'))}<|im_end|>\n" for m in messages]
    tools = body.get("tools")
    if tools:
        turns.insert(0, f"<|im_start|>system\n<tools>{msgspec.json.encode(tools).decode()}</tools><|im_end|>\n")
    return json_response(200, {"prompt": "".join(turns) + "<|im_start|>assistant\n"})


async def _llama_tokenize(state: ServerState, request: HttpRequest) -> Response:
    """llama.cpp server's ``POST /tokenize``: ``{"tokens": [...]}``, one per 4 characters as the simulator counts."""
    try:
        content = json_object(request).get("content")
        if not isinstance(content, str):
            raise wrong_type("content", "string", content)
    except Invalid as exc:
        return exc.response
    return json_response(200, {"tokens": list(range(estimate_tokens(content)))})


_LLAMA_SERVER_ROUTES: dict[tuple[str, str], Handler] = {
    **_OPENAI_ROUTES,
    ("GET", "/props"): _llama_props,
    ("POST", "/apply-template"): _llama_apply_template,
    ("POST", "/tokenize"): _llama_tokenize,
}

_ROUTES_OF_API = {"openai": _OPENAI_ROUTES, "llama.cpp": _LLAMA_SERVER_ROUTES, "llama.cpp-router": _LLAMA_ROUTER_ROUTES}


class Router:
    """Dispatches a request to its handler: the simulator's HTTP app. Strictly private."""

    __slots__ = ("_accepted", "_state")

    def __init__(self, state: ServerState) -> None:
        self._state = state
        config = state.config
        accepted = [f"Bearer {config.api_token}"] if config.api_token is not None else []
        if config.basic_auth is not None:
            accepted.append("Basic " + base64.b64encode(config.basic_auth.encode()).decode("ascii"))
        self._accepted = frozenset(accepted)

    async def __call__(self, request: HttpRequest) -> Response | StreamingResponse:
        path = request.path.rstrip("/") or "/"
        key = (request.method, path)
        handler = _OPEN_ROUTES.get(key)
        if handler is not None:
            return await handler(self._state, request)
        if self._accepted and request.headers.get("authorization") not in self._accepted:
            return auth_required()
        other_api = _ROUTES_OF_API.get(self._state.config.api)
        if other_api is not None:
            handler = other_api.get(key)
            if handler is None:
                return llama_router.not_found(request.method, request.path)
            return await handler(self._state, request)
        handler = _LMSTUDIO_ROUTES.get(key)
        if handler is None and request.method == "GET" and path.startswith("/api/v0/models/"):
            handler = _one_v0
        if handler is None and request.method == "GET" and path.startswith("/api/v1/models/download/status/"):
            handler = downloads.download_status
        if handler is None:
            return unexpected_endpoint(request.method, request.path)
        return await handler(self._state, request)
