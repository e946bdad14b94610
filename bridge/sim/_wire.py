"""LM Studio's error replies, byte for byte where known (lmstudio-api.md §0 and §3).

Two generations of error bodies coexist in LM Studio: older handlers answer
``{"error": "<string>"}``, newer validated ones an OpenAI-style object. Each
helper here returns the one LM Studio uses for that case, so clients are tested
against both.
"""

from __future__ import annotations

import msgspec

from bridge.sim._http import Response, json_response

__all__ = [
    "auth_required",
    "error_body",
    "error_frame",
    "invalid_request",
    "model_not_found",
    "model_unloaded",
    "no_models_loaded",
    "overflow_message",
    "openai_overflow_response",
    "overflow_response",
    "rate_limited",
    "server_error",
    "unexpected_endpoint",
]

MODEL_UNLOADED_MESSAGE = "Model unloaded."
NO_MODELS_LOADED_MESSAGE = "No models loaded. Please load a model in the developer page or use the 'lms load' command."


def unexpected_endpoint(method: str, path: str) -> Response:
    """Unknown route or method: HTTP **200** with a string error (BT#618)."""
    return json_response(200, {"error": f"Unexpected endpoint or method. ({method} {path})"})


def model_not_found(identifier: str, available: list[str]) -> Response:
    examples = ", ".join(available) or "no models downloaded"
    message = f'Invalid model identifier "{identifier}". Please specify a valid downloaded model (e.g., {examples}).'
    return invalid_request(message, param="model", code="model_not_found")


def no_models_loaded() -> Response:
    return json_response(400, {"error": NO_MODELS_LOADED_MESSAGE})


def invalid_request(message: str, *, param: str | None = None, code: str | None = None, status: int = 400) -> Response:
    """The OpenAI-style object of LM Studio's validated handlers."""
    return json_response(
        status, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    )


def auth_required() -> Response:
    message = "An LM Studio API token is required to make requests to this server. Pass it as a Bearer token."
    return json_response(401, {"error": {"type": "invalid_request", "code": "invalid_api_key", "message": message}})


def server_error(message: str | None = None) -> Response:
    text = message or "Internal server error."
    return json_response(500, {"error": {"message": text, "type": "server_error", "param": None, "code": None}})


def rate_limited(retry_after: float, message: str | None = None, *, header: str = "Retry-After") -> Response:
    text = message or "Too many requests. Please retry later."
    body = {"error": {"message": text, "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}}
    return json_response(429, body, headers=((header, f"{retry_after:g}"),))


def error_body(message: str | None = None) -> Response:
    """HTTP 200 with an error string: what a client sees on a wrong route, as a fault."""
    return json_response(200, {"error": message or "Compute error."})


def model_unloaded(message: str | None = None) -> Response:
    return json_response(400, {"error": message or MODEL_UNLOADED_MESSAGE})


def overflow_message(prompt_tokens: int, context_length: int) -> str:
    """The 0.4.21 streaming wording (BT#2322)."""
    return (
        f"Input does not fit in context length. The input has {prompt_tokens} tokens, "
        f"but the context length only supports {context_length} tokens."
    )


def overflow_response(prompt_tokens: int, context_length: int) -> Response:
    """Non-streamed overflow: the older 400 string (BT#237)."""
    message = (
        f"Trying to keep the first {prompt_tokens} tokens when context the overflows. However, the model is loaded "
        f"with context length of only {context_length} tokens, which is not enough. Try to load the model with a "
        "larger context length, or provide a shorter input"
    )
    return json_response(400, {"error": message})


def openai_overflow_response(prompt_tokens: int, context_length: int) -> Response:
    """llama-cpp-python's unstreamed overflow: an OpenAI-style 400 with ``code: context_length_exceeded``."""
    message = (
        f"This model's maximum context length is {context_length} tokens. However, you requested "
        f"{prompt_tokens} tokens ({prompt_tokens} in the messages, 0 in the completion). Please reduce the length "
        "of the messages or completion."
    )
    return invalid_request(message, param="messages", code="context_length_exceeded")


def error_frame(message: str, *, event_type: str | None = None) -> bytes:
    """A mid-stream error: ``event: error`` plus ``data: {"error":{"message":…},"message":…}``.

    ``event_type`` adds a ``type`` field (the Responses API's events all carry one).
    """
    payload: dict[str, object] = {"error": {"message": message}, "message": message}
    if event_type is not None:
        payload = {"type": event_type, **payload}
    return b"event: error\ndata: " + msgspec.json.encode(payload) + b"\n\n"
