"""Normalize model listings from LM Studio's native APIs and from ``/v1/models``."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec

from bridge.llm._outcome import ModelInfo, NativeModel
from bridge.llm._wire import ModelList, NativeV0Entry, NativeV0List, NativeV1Entry, NativeV1List

__all__ = ["models_from_openai", "models_from_v0", "models_from_v1"]

_Listing = TypeVar("_Listing", NativeV0List, NativeV1List, ModelList)


def _kind(raw: str) -> Literal["llm", "embedding"]:
    return "embedding" if raw.startswith("embedding") else "llm"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _load_state(status: dict[str, Any] | str | None) -> str | None:
    """llama.cpp's router status (``{"value": "loaded"}`` or ``"loaded"``), lower-cased; ``None`` if absent."""
    value = status.get("value") if isinstance(status, dict) else status
    return (value.strip().lower() or None) if isinstance(value, str) else None


def _from_v0(entry: NativeV0Entry) -> NativeModel:
    loaded = entry.state == "loaded"
    return NativeModel(
        id=entry.id,
        type=_kind(entry.type),
        loaded=loaded,
        context_length=(entry.loaded_context_length if loaded else None) or entry.max_context_length,
        max_context_length=entry.max_context_length,
        tool_use="tool_use" in (entry.capabilities or ()),
        vision=entry.type == "vlm",
        publisher=entry.publisher,
        quantization=entry.quantization,
        architecture=entry.arch,
        format=entry.compatibility_type,
        # v0 addresses a loaded model by its id; that is also what unload takes.
        instance_ids=(entry.id,) if loaded else (),
        api="v0",
    )


def _from_v1(entry: NativeV1Entry) -> NativeModel:
    loaded_lengths = [
        instance.config.context_length
        for instance in entry.loaded_instances
        if instance.config is not None and instance.config.context_length
    ]
    capabilities = entry.capabilities
    parallel = [instance.config.parallel if instance.config else None for instance in entry.loaded_instances]
    return NativeModel(
        id=entry.key,
        type=_kind(entry.type),
        loaded=bool(entry.loaded_instances),
        # Several instances may differ; the smallest is the one a prompt is sure to fit.
        context_length=min(loaded_lengths) if loaded_lengths else entry.max_context_length,
        max_context_length=entry.max_context_length,
        tool_use=capabilities.trained_for_tool_use if capabilities else False,
        vision=capabilities.vision if capabilities else False,
        publisher=entry.publisher,
        quantization=entry.quantization.name if entry.quantization else None,
        architecture=entry.architecture,
        format=entry.format,
        display_name=entry.display_name,
        instance_ids=tuple(instance.id for instance in entry.loaded_instances if instance.id),
        api="v1",
        # LM Studio spreads a model's requests over its instances: their slots add up.
        parallel=sum(p for p in parallel if p) if parallel and all(p and p > 0 for p in parallel) else None,
    )


def _listing(payload: Any, shape: type[_Listing]) -> _Listing | None:
    """``payload`` as ``shape``; ``None`` when it is another shape (another server, or another API version)."""
    try:
        return msgspec.convert(payload, shape)
    except msgspec.ValidationError:
        return None


def models_from_v0(payload: Any) -> list[NativeModel] | None:
    """``GET /api/v0/models`` normalized, or ``None`` if the payload is not that shape."""
    listing = _listing(payload, NativeV0List)
    return None if listing is None else [_from_v0(entry) for entry in listing.data if entry.id]


def models_from_v1(payload: Any) -> list[NativeModel] | None:
    """``GET /api/v1/models`` normalized, or ``None`` if the payload is not that shape."""
    listing = _listing(payload, NativeV1List)
    return None if listing is None else [_from_v1(entry) for entry in listing.models if entry.key]


def models_from_openai(payload: Any) -> list[ModelInfo] | None:
    """``GET /v1/models`` from any server, or ``None`` if it is not a model list.

    OpenAI-style ``data[]`` entries come first; llama.cpp adds ``meta`` (with
    ``n_ctx`` and ``n_ctx_train``) to them and an Ollama-style ``models[]``
    beside them, whose entries are added only when ``data`` lacks them.
    """
    listing = _listing(payload, ModelList)
    if listing is None or (listing.data is None and listing.models is None):
        return None
    found: dict[str, ModelInfo] = {}
    for entry in listing.data or ():
        meta = entry.meta or {}
        if entry.id:
            found[entry.id] = ModelInfo(
                id=entry.id,
                owned_by=entry.owned_by,
                context_length=_int(meta.get("n_ctx")),
                max_context_length=_int(meta.get("n_ctx_train")),
                load_state=_load_state(entry.status),
            )
    for item in listing.models or ():
        model_id = item.model or item.name
        if not model_id:
            continue
        capabilities = tuple(item.capabilities or ())
        known = found.get(model_id) or found.get(item.name)
        if known is not None:
            if capabilities and not known.capabilities:
                found[known.id] = msgspec.structs.replace(known, capabilities=capabilities)
            continue
        details = item.details or {}
        found[model_id] = ModelInfo(
            id=model_id,
            owned_by=details.get("family") if isinstance(details.get("family"), str) else None,
            capabilities=capabilities,
        )
    return list(found.values())
