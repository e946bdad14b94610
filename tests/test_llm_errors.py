"""Error translation: every way a server says no becomes the right bridge.errors class."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx
import pytest

from bridge.errors import (
    BadRequestError,
    BridgeError,
    ContextOverflowError,
    LLMConnectionError,
    LLMRateLimitError,
    LLMResponseError,
    ModelNotFoundError,
    ModelUnloadedError,
    UnsupportedEndpointError,
)
from bridge.llm import EmbeddingRequest, ResponsesRequest
from bridge.llm._errors import parse_error_body, parse_retry_after
from tests.test_llm_fakes import DONE, SERVER, Body, Recorder, as_json, ask, chunk, client, event, sse

LMS_MODEL_NOT_FOUND = {
    "error": {
        "message": 'Invalid model identifier "nope". Please specify a valid downloaded model (e.g., qwen3-8b).',
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
}
NO_MODELS = {"error": "No models loaded. Please load a model in the developer page or use the 'lms load' command."}
LMS_OLD_OVERFLOW = {
    "error": "Trying to keep the first 5012 tokens when context the overflows. However, the model is loaded with "
    "context length of only 4096 tokens, which is not enough. Try to load the model with a larger context length, "
    "or provide a shorter input"
}
LLAMA_CPP_OVERFLOW = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 5000,
        "n_ctx": 4096,
    }
}
VLLM_OVERFLOW = {
    "object": "error",
    "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}
LMS_401 = {
    "error": {
        "type": "invalid_request",
        "code": "invalid_api_key",
        "message": "An LM Studio API token is required to make requests to this server.",
    }
}
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"

# (id, status, body, headers, expected class, retryable, words the message must contain)
ROWS: list[tuple[str, int, Any, dict[str, str], type[BridgeError], bool, str]] = [
    ("lms-model-not-found", 400, LMS_MODEL_NOT_FOUND, {}, ModelNotFoundError, False, "list_models()"),
    ("lms-0.3.5-model-not-found", 404, {"error": 'Model "nope" not found.'}, {}, ModelNotFoundError, False, "nope"),
    ("ollama-model-not-found", 404, {"error": {"message": 'model "llama9" not found, try pulling it first',
                                               "type": "api_error"}}, {}, ModelNotFoundError, False, "llama9"),
    ("vllm-model-not-found", 404, {"object": "error", "message": "The model `nope` does not exist.",
                                   "type": "NotFoundError", "code": 404}, {}, ModelNotFoundError, False, "nope"),
    ("no-models-loaded", 400, NO_MODELS, {}, ModelNotFoundError, False, "JIT"),
    ("no-models-loaded-0.3.5", 404, NO_MODELS, {}, ModelNotFoundError, False, "lms load"),
    ("lms-old-overflow", 400, LMS_OLD_OVERFLOW, {}, ContextOverflowError, False, "context_length"),
    ("llama-cpp-overflow", 400, LLAMA_CPP_OVERFLOW, {}, ContextOverflowError, False, "The prompt has 5000 tokens"),
    ("llama-cpp-n-keep", 500, {"error": "Cannot truncate prompt with n_keep (5000) >= n_ctx (4096)"}, {},
     ContextOverflowError, False, "Shorten the prompt"),
    ("mlx-overflow", 400, {"error": "Context size has been exceeded."}, {}, ContextOverflowError, False, "max_tokens"),
    ("vllm-overflow", 400, VLLM_OVERFLOW, {}, ContextOverflowError, False, "4096"),
    ("model-unloaded", 500, {"error": "Model unloaded."}, {}, ModelUnloadedError, True, "Auto-Evict"),
    ("model-is-unloaded", 400, {"error": {"message": "Model is unloaded."}}, {}, ModelUnloadedError, True, "Retry"),
    ("llama-cpp-loading", 503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}, {},
     ModelUnloadedError, True, "still loading"),
    ("unauthorized", 401, LMS_401, {}, LLMResponseError, False, "api_key"),
    ("forbidden", 403, {"error": "forbidden"}, {}, LLMResponseError, False, "API token"),
    ("rate-limited", 429, {"error": "slow down"}, {"Retry-After": "7"}, LLMRateLimitError, True, "Retry after 7 s"),
    ("server-error-text", 500, b"Internal Server Error", {}, LLMResponseError, True, "transient"),
    ("bad-gateway-html", 502, HTML_502, {"content-type": "text/html"}, LLMResponseError, True, "502 Bad Gateway"),
    ("json-object-rejected", 400, {"error": {"message": "'response_format.type' must be 'json_schema' or 'text'",
                                             "type": "invalid_request_error", "code": "invalid_string"}}, {},
     BadRequestError, False, "Fix the request"),
    ("legacy-validation", 400, {"error": "'messages' field is required"}, {}, BadRequestError, False, "messages"),
    ("fastapi-detail", 422, {"detail": "temperature must be >= 0"}, {}, BadRequestError, False, "temperature"),
    ("unknown-route-404", 404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}, {},
     UnsupportedEndpointError, False, "File Not Found"),
    ("method-not-allowed", 405, b"Method Not Allowed", {}, UnsupportedEndpointError, False, "base URL"),
    ("redirect", 307, b"", {"location": "http://other:1234/v1/chat/completions"}, LLMResponseError, False,
     "http://other:1234"),
]  # fmt: skip


def _answer(status: int, body: Any, headers: dict[str, str]) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.Response(status, content=body, headers=headers)
    return as_json(body, status, headers)


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "retryable", "words"),
    [pytest.param(*row[1:], id=row[0]) for row in ROWS],
)
async def test_http_error_mapping(
    status: int, body: Any, headers: dict[str, str], expected: type[BridgeError], retryable: bool, words: str
) -> None:
    """Each documented server failure maps to its class, retryability, advice and details."""
    async with client(Recorder(lambda request: _answer(status, body, headers))) as llm:
        with pytest.raises(BridgeError) as caught:
            await llm.chat(ask(model="nope"))
    error = caught.value
    assert type(error) is expected
    assert error.retryable is retryable
    assert words in error.message
    assert error.details["status"] == status
    assert error.details["server"] == SERVER
    assert error.details["endpoint"] == "/v1/chat/completions"
    assert error.details["model"] == "nope"


async def test_rate_limit_reads_retry_after_date() -> None:
    """A Retry-After given as an HTTP date becomes seconds from now."""
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    answer = Recorder(lambda request: as_json({"error": "busy"}, 429, {"Retry-After": when}))
    async with client(answer) as llm:
        with pytest.raises(LLMRateLimitError) as caught:
            await llm.chat(ask())
    assert caught.value.retry_after is not None
    assert 60 < caught.value.retry_after <= 120


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("soon", None), (None, None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Retry-After takes seconds or HTTP dates; past dates mean now, nonsense means unknown."""
    assert parse_retry_after(value) == expected


def test_error_body_generations() -> None:
    """Both LM Studio error-body generations, and llama.cpp's numeric code, parse to the same fields."""
    old = parse_error_body(b'{"error":"No models loaded."}')
    new = parse_error_body(b'{"error":{"message":"Required","type":"invalid_request_error","param":"text.format",'
                           b'"code":"missing_required_parameter"}}')  # fmt: skip
    numeric = parse_error_body(b'{"error":{"code":400,"message":"bad","type":"invalid_request_error"}}')
    assert (old.message, old.type, old.code) == ("No models loaded.", None, None)
    assert (new.message, new.type, new.code, new.param) == (
        "Required",
        "invalid_request_error",
        "missing_required_parameter",
        "text.format",
    )
    assert (numeric.message, numeric.code) == ("bad", "400")


def test_error_body_html_and_empty() -> None:
    """HTML pages are reduced to their words; an empty body says so."""
    assert parse_error_body(HTML_502).message == "502 Bad Gateway 502 Bad Gateway"
    assert parse_error_body(b"").message == "(empty body)"
    assert len(parse_error_body(b"x" * 5000).message) == 500


@pytest.mark.parametrize("stream", [True, False])
async def test_200_with_unknown_route_body(stream: bool) -> None:
    """LM Studio's HTTP 200 answer to an unknown route is an unsupported endpoint with URL advice."""
    body = {"error": "Unexpected endpoint or method. (POST /chat/completions)"}
    async with client(Recorder(lambda request: as_json(body))) as llm:
        with pytest.raises(UnsupportedEndpointError) as caught:
            await llm.chat(ask(), stream=stream)
    assert "base URL is probably wrong" in caught.value.message
    assert "/v1" in caught.value.message
    assert caught.value.details["status"] == 200


async def test_200_with_other_error_body() -> None:
    """An unrecognized HTTP 200 error body is a response error that still hints at the URL."""
    async with client(Recorder(lambda request: as_json({"error": "something odd"}))) as llm:
        with pytest.raises(LLMResponseError) as caught:
            await llm.chat(ask(), stream=False)
    assert type(caught.value) is LLMResponseError
    assert "HTTP 200 but an error body: something odd" in caught.value.message


async def test_200_with_classified_error_body() -> None:
    """An HTTP 200 error body that names a known failure gets that failure's class."""
    async with client(Recorder(lambda request: as_json(NO_MODELS))) as llm:
        with pytest.raises(ModelNotFoundError):
            await llm.chat(ask(), stream=False)


async def test_200_html_is_not_an_llm_server() -> None:
    """A 200 page that is not JSON (a web UI at the base URL) is reported as such."""
    page = Recorder(
        lambda request: httpx.Response(200, content=b"<html>hello</html>", headers={"content-type": "text/html"})
    )
    async with client(page) as llm:
        with pytest.raises(LLMResponseError) as caught:
            await llm.chat(ask(), stream=False)
    assert "not JSON" in caught.value.message


LMS_STREAM_OVERFLOW = {
    "error": {"message": "Input does not fit in context length. The input has 9000 tokens, but the context length "
              "only supports 4096 tokens."},
    "message": "Input does not fit in context length.",
}  # fmt: skip


async def test_event_error_context_overflow_in_200_stream() -> None:
    """LM Studio 0.4's ``event: error`` overflow frame is a ContextOverflowError with the numbers."""
    body = Body(event(LMS_STREAM_OVERFLOW, name="error"))
    async with client(Recorder(lambda request: sse(body))) as llm:
        with pytest.raises(ContextOverflowError) as caught:
            await llm.chat(ask())
    assert caught.value.details["n_prompt_tokens"] == 9000
    assert caught.value.details["n_ctx"] == 4096
    assert caught.value.details["in_stream"] is True
    assert "The prompt has 9000 tokens; the loaded context holds 4096." in caught.value.message
    assert body.closed


async def test_data_error_chunk_mid_stream() -> None:
    """An ``error`` chunk after some tokens is a response error that counts them."""
    body = Body(chunk(content="Hel"), event({"error": {"message": "Compute error."}, "message": "Compute error."}))
    async with client(Recorder(lambda request: sse(body))) as llm:
        with pytest.raises(LLMResponseError) as caught:
            await llm.chat(ask())
    assert type(caught.value) is LLMResponseError
    assert caught.value.message.startswith(f"{SERVER} reported an error mid-stream")
    assert "after 1 tokens: Compute error." in caught.value.message
    assert caught.value.details["tokens"] == 1
    assert body.closed


async def test_data_error_chunk_model_unloaded() -> None:
    """A model evicted mid-stream ("Model unloaded") is a retryable ModelUnloadedError."""
    body = Body(chunk(content="a"), event({"error": "Model unloaded."}), DONE)
    async with client(Recorder(lambda request: sse(body))) as llm:
        with pytest.raises(ModelUnloadedError) as caught:
            await llm.chat(ask())
    assert caught.value.retryable


async def test_event_error_with_plain_text_data() -> None:
    """An ``event: error`` whose data is not JSON still raises, carrying the text."""
    body = Body(chunk(content="a"), b"event: error\ndata: engine crashed\n\n")
    async with client(Recorder(lambda request: sse(body))) as llm:
        with pytest.raises(LLMResponseError) as caught:
            await llm.chat(ask())
    assert caught.value.details["server_message"] == "engine crashed"


async def test_connection_refused() -> None:
    """A refused connection is a retryable LLMConnectionError chained to httpx's error."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with client(Recorder(refuse)) as llm:
        with pytest.raises(LLMConnectionError) as caught:
            await llm.chat(ask())
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert "lms server start" in caught.value.message
    assert caught.value.details["transport_error"] == "ConnectError"


async def test_connection_reset_mid_stream() -> None:
    """A stream cut by the network after a token is a connection error that says how far it got."""
    body = Body(chunk(content="a"), httpx.ReadError("Connection reset by peer"))
    async with client(Recorder(lambda request: sse(body))) as llm:
        with pytest.raises(LLMConnectionError) as caught:
            await llm.chat(ask())
    assert "after 1 tokens" in caught.value.message
    assert isinstance(caught.value.__cause__, httpx.ReadError)


async def test_unsupported_responses_endpoint() -> None:
    """A 404 on /v1/responses means the server lacks the Responses API."""
    answer = Recorder(lambda request: as_json({"error": {"code": 404, "message": "File Not Found"}}, 404))
    async with client(answer) as llm:
        with pytest.raises(UnsupportedEndpointError) as caught:
            await llm.respond(ResponsesRequest(model="m", input="hi"))
    assert "Use chat completions instead" in caught.value.message
    assert caught.value.details["endpoint"] == "/v1/responses"


async def test_embeddings_not_enabled_on_llama_cpp() -> None:
    """llama.cpp's 501 ``not_supported_error`` for embeddings is an unsupported endpoint with the fix."""
    body = {
        "error": {
            "code": 501,
            "message": "This server does not support embeddings. Start it with `--embeddings`",
            "type": "not_supported_error",
        }
    }
    async with client(Recorder(lambda request: as_json(body, 501))) as llm:
        with pytest.raises(UnsupportedEndpointError) as caught:
            await llm.embed(EmbeddingRequest(model="m", input="x"))
    assert "--embeddings" in caught.value.message
    assert caught.value.details["error_type"] == "not_supported_error"
