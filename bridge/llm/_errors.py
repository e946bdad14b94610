"""Turn what a server or httpx reports into the bridge's error taxonomy.

LLM servers report the same failure in many ways: LM Studio alone has two
error-body generations (``{"error": "text"}`` and an OpenAI-style object),
answers unknown routes with HTTP 200 plus an error body, and reports a context
overflow as a 400, as an ``event: error`` frame inside a 200 stream, or as a
chunk with an ``error`` key. llama.cpp, Ollama and vLLM each add their own
texts. So the class is chosen from the message text first and the status
second, and every message says what to do next.
"""

from __future__ import annotations

import contextlib
import email.utils
import html
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from bridge.errors import (
    BadRequestError,
    BridgeError,
    ContextOverflowError,
    LLMConnectionError,
    LLMError,
    LLMRateLimitError,
    LLMResponseError,
    ModelNotFoundError,
    ModelUnloadedError,
    StreamingRefusedError,
    UnsupportedEndpointError,
)

__all__ = [
    "CallContext",
    "ServerError",
    "error_for_status",
    "error_for_transport",
    "error_in_200_body",
    "error_in_stream",
    "parse_error_body",
    "parse_retry_after",
    "server_error_from_payload",
    "server_wait",
]

_MAX_TEXT = 500


@dataclass(frozen=True, slots=True)
class CallContext:
    """Where a call went, for messages and ``details``."""

    server: str
    endpoint: str
    method: str = "POST"
    model: str | None = None
    # Generation endpoints only: a load failure mentioning "context length" is not a prompt overflow.
    inference: bool = True

    @property
    def url(self) -> str:
        return self.server + self.endpoint

    def describe(self) -> str:
        model = f" (model {self.model!r})" if self.model else ""
        return f"{self.method} {self.endpoint} on {self.server}{model}"

    def details(self, **more: Any) -> dict[str, Any]:
        found: dict[str, Any] = {"server": self.server, "endpoint": self.endpoint, "url": self.url}
        if self.model:
            found["model"] = self.model
        found.update({key: value for key, value in more.items() if value is not None})
        return found


@dataclass(frozen=True, slots=True)
class ServerError:
    """An error as the server described it, whatever the body's generation."""

    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None
    numbers: dict[str, int] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        found: dict[str, Any] = {"server_message": self.message}
        if self.type:
            found["error_type"] = self.type
        if self.code:
            found["error_code"] = self.code
        if self.param:
            found["error_param"] = self.param
        found.update(self.numbers)
        return found


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    return str(value)


def server_error_from_payload(payload: Any) -> ServerError | None:
    """The error a decoded JSON body or chunk carries, or ``None`` if it carries none.

    Understands ``{"error": "text"}`` (older LM Studio, Ollama),
    ``{"error": {"message", "type", "code", "param"}}`` (OpenAI, newer LM
    Studio, llama.cpp with numeric ``code`` and ``n_ctx`` extras) and
    ``{"object": "error", "message": ...}`` (vLLM).
    """
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, str) and error:
        return ServerError(message=error)
    if isinstance(error, dict) and error:
        numbers = {
            key: value
            for key in ("n_prompt_tokens", "n_ctx")
            if isinstance(value := error.get(key), int) and not isinstance(value, bool)
        }
        message = _text(error.get("message")) or _text(payload.get("message")) or msgspec.json.encode(error).decode()
        return ServerError(
            message=message,
            type=_text(error.get("type")),
            code=_text(error.get("code")),
            param=_text(error.get("param")),
            numbers=numbers,
        )
    if (payload.get("object") == "error" or payload.get("type") == "error") and (said := _text(payload.get("message"))):
        return ServerError(message=said, type=_text(payload.get("type")), code=_text(payload.get("code")))
    return None


_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def _shorten(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def parse_error_body(raw: bytes) -> ServerError:
    """Whatever an error response says, as a :class:`ServerError` (never fails)."""
    try:
        payload = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        payload = None
    if payload is not None:
        found = server_error_from_payload(payload)
        if found is not None:
            return ServerError(
                message=_shorten(found.message),
                type=found.type,
                code=found.code,
                param=found.param,
                numbers=found.numbers,
            )
        if isinstance(payload, dict) and (detail := _text(payload.get("detail")) or _text(payload.get("message"))):
            return ServerError(message=_shorten(detail))
    text = raw.decode("utf-8", errors="replace")
    if "<" in text and ">" in text:
        # An HTML error page from a proxy or a web server: keep the words only.
        text = html.unescape(_TAG.sub(" ", text))
    text = _SPACE.sub(" ", text).strip()
    return ServerError(message=_shorten(text) or "(empty body)")


_CONTEXT = re.compile(
    r"context length|context size|context window|context_length_exceeded|exceed_context_size"
    r"|maximum context|does not fit in (the )?context|n_keep|context the overflows|context overflow"
    r"|too many tokens in (the )?prompt|prompt is too long",
    re.IGNORECASE,
)
_NO_MODELS = re.compile(r"no models? (is |are )?loaded", re.IGNORECASE)
# LM Studio: "Model does not support images. Please use a model that does." (lmstudio-bug-tracker#908);
# llama.cpp's server without a projector: "image input is not supported".
_NO_IMAGES = re.compile(r"does not support (images|image input|vision)|image input is not supported", re.IGNORECASE)
_NOT_FOUND = re.compile(
    r"model_not_found|invalid model identifier|no such model|unknown model"
    r"|\bmodel\b.{0,200}\b(not found|does not exist|is not downloaded)",
    re.IGNORECASE | re.DOTALL,
)
_UNLOADED = re.compile(
    r"model (is |was |has been |got )?unloaded|model is (still |currently )?loading"
    r"|loading model|model (is )?being loaded",
    re.IGNORECASE,
)
_UNKNOWN_ROUTE = re.compile(r"unexpected endpoint|unknown (endpoint|route)|cannot (get|post) /", re.IGNORECASE)
_UNSUPPORTED = re.compile(r"not supported|not_supported|not implemented|not_implemented", re.IGNORECASE)
_EMBEDDING_OFF = re.compile(
    r"must be created with embedding\s*=\s*true|embeddings? (are |is )?(not enabled|disabled)"
    r"|--embeddings?|pooling type none",
    re.IGNORECASE,
)
# llama-cpp-python's function-calling chat formats: ValueError("Automatic streaming tool choice is not supported").
_NO_STREAMED_TOOLS = re.compile(r"streaming tool choice is not supported", re.IGNORECASE)
_AUTH = re.compile(
    r"authentication error|\bunauthori[sz]ed\b|no api key|invalid api key|api key (is )?(missing|invalid|required)"
    r"|invalid (proxy server )?token|missing (bearer|authorization)",
    re.IGNORECASE,
)
_LM_STUDIO_NUMBERS = re.compile(r"has (\d+) tokens, but the context length only supports (\d+)", re.IGNORECASE)


def _overflow(error: ServerError, ctx: CallContext, status: int, in_stream: bool) -> ContextOverflowError:
    numbers = dict(error.numbers)
    if match := _LM_STUDIO_NUMBERS.search(error.message):
        numbers.setdefault("n_prompt_tokens", int(match.group(1)))
        numbers.setdefault("n_ctx", int(match.group(2)))
    fits = ""
    if "n_prompt_tokens" in numbers and "n_ctx" in numbers:
        fits = f" The prompt has {numbers['n_prompt_tokens']} tokens; the loaded context holds {numbers['n_ctx']}."
    return ContextOverflowError(
        f"The prompt does not fit the model's context length on {ctx.describe()}: {error.message}.{fits} "
        "Shorten the prompt or the conversation, lower max_tokens, or load the model with a larger context_length "
        "(LM Studio: `lms load <model> --context-length N` or load_model(context_length=N)).",
        details={**ctx.details(status=status, in_stream=in_stream or None), **error.details(), **numbers},
    )


def _classify_text(error: ServerError, ctx: CallContext, status: int, *, in_stream: bool = False) -> BridgeError | None:
    """The error class the server's words call for, or ``None`` if they say nothing specific."""
    text = error.message
    details = {**ctx.details(status=status, in_stream=in_stream or None), **error.details()}
    if ctx.inference and (
        error.type == "exceed_context_size_error" or error.code == "context_length_exceeded" or _CONTEXT.search(text)
    ):
        return _overflow(error, ctx, status, in_stream)
    if ctx.inference and _NO_IMAGES.search(text):
        which = ctx.model or "the model"
        return UnsupportedEndpointError(
            f"{which} on {ctx.server} does not take images ({text}). Send the images to a vision model "
            "(list_models marks them `vision`), or send the text alone",
            details={**details, "reason": "images"},
        )
    if _NO_MODELS.search(text):
        return ModelNotFoundError(
            f"No model is loaded on {ctx.server} and none was loaded just in time ({text}). "
            "Load one (`lms load <model>` or load_model()), or turn on JIT loading in LM Studio's server settings.",
            details=details,
        )
    if error.code == "model_not_found" or _NOT_FOUND.search(text):
        which = f"model {ctx.model!r}" if ctx.model else "the requested model"
        return ModelNotFoundError(
            f"{ctx.server} does not have {which}: {text}. "
            "Check the id against list_models() (`lms ls`), download the model, or fix the name in the configuration.",
            details=details,
        )
    if ctx.inference and _UNLOADED.search(text):
        return ModelUnloadedError(
            f"The model was unloaded or is still loading on {ctx.server} ({text}). "
            "Retry shortly; if it keeps happening, another request is making LM Studio evict this model "
            "(turn off Auto-Evict or load both models with `lms load`).",
            details=details,
        )
    return None


def _unsupported(ctx: CallContext, error: ServerError, status: int, hint: str) -> UnsupportedEndpointError:
    return UnsupportedEndpointError(
        f"{ctx.server} does not serve {ctx.method} {ctx.endpoint} (HTTP {status}: {error.message}). {hint}",
        details={**ctx.details(status=status), **error.details()},
    )


def _unsupported_hint(ctx: CallContext) -> str:
    if ctx.endpoint.startswith("/api/"):
        return "That is LM Studio's native API; other servers (and LM Studio before 0.4 for /api/v1) lack it."
    if ctx.endpoint == "/v1/embeddings":
        return (
            "Use an embedding model, or a server with embeddings enabled (llama.cpp: start it with --embeddings; "
            'llama-cpp-python: "embedding": true in the model config).'
        )
    if ctx.endpoint == "/v1/responses":
        return "Use chat completions instead, or LM Studio 0.3.29 or newer."
    return "Check the base URL and that the server is OpenAI-compatible."


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds)


def _duration(value: str) -> float | None:
    """``1.5``, ``20ms``, ``6m0s``, ``1h2m3s`` (OpenAI's ``x-ratelimit-reset-*``) as seconds."""
    value = value.strip().lower()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def server_wait(headers: httpx.Headers) -> float | None:
    """The longest wait any of the server's headers asks for, in seconds, or ``None``.

    ``Retry-After`` (seconds or an HTTP date), ``retry-after-ms``, the provider headers a LiteLLM
    proxy forwards (``llm_provider-retry-after``) and OpenAI-style ``x-ratelimit-reset-*``.
    The longest wins: retrying sooner than any of them asked only spends a retry.
    """
    waits: list[float] = []
    for name in ("retry-after", "llm_provider-retry-after"):
        found = parse_retry_after(headers.get(name))
        if found is not None:
            waits.append(found)
    for name in ("retry-after-ms", "llm_provider-retry-after-ms"):
        value = headers.get(name)
        with contextlib.suppress(ValueError):
            if value:
                waits.append(max(0.0, float(value) / 1000))
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith(("x-ratelimit-reset", "llm_provider-x-ratelimit-reset")):
            seconds = _duration(value)
            if seconds is not None:
                waits.append(seconds)
    return max(waits) if waits else None


def _refused(ctx: CallContext, error: ServerError, status: int, details: dict[str, Any]) -> LLMResponseError:
    return LLMResponseError(
        f"{ctx.server} refused the request for want of valid credentials (HTTP {status}: {error.message}). "
        "Set the server's API token: LMSTUDIO_API_KEY, or api_key of the server in the configuration (LM Studio "
        "tokens look like sk-lm-…, made under Developer → Server Settings → Require Authentication; a LiteLLM "
        "proxy wants its master or virtual key).",
        details={**details, "reason": "authentication"},
    )


def error_for_status(status: int, headers: httpx.Headers, raw: bytes, ctx: CallContext) -> BridgeError:
    """The error for a non-2xx answer."""
    error = parse_error_body(raw)
    details = {**ctx.details(status=status), **error.details()}
    retry_after = server_wait(headers)
    if status in (401, 403) or (status >= 500 and _AUTH.search(error.message)):
        return _refused(ctx, error, status, details)
    if status == 429:
        wait = f" Retry after {retry_after:g} s." if retry_after is not None else " Retry later."
        return LLMRateLimitError(
            f"{ctx.server} is rate limiting requests (HTTP 429: {error.message}).{wait}",
            retry_after=retry_after,
            details=details,
        )
    found = _classify_text(error, ctx, status)
    if found is not None:
        found.retry_after = retry_after
        return found
    if _NO_STREAMED_TOOLS.search(error.message):
        return StreamingRefusedError(
            f"{ctx.server} does not stream replies that may call tools (HTTP {status}: {error.message}); "
            "the bridge asks it again without streaming",
            details={**details, "reason": "streamed_tool_choice"},
        )
    if status in (404, 405, 501) or error.type == "not_supported_error":
        return _unsupported(ctx, error, status, _unsupported_hint(ctx))
    if ctx.endpoint.endswith("/embeddings") and _EMBEDDING_OFF.search(error.message):
        # llama-cpp-python answers 500 "Llama model must be created with embedding=True": not transient.
        return _unsupported(ctx, error, status, _unsupported_hint(ctx))
    if 500 <= status < 600:
        return LLMResponseError(
            f"{ctx.server} failed with HTTP {status} on {ctx.describe()}: {error.message}. "
            "This is usually transient; if it persists, check the server's log.",
            retryable=True,
            retry_after=retry_after,
            details=details,
        )
    if 400 <= status < 500:
        if _UNSUPPORTED.search(error.message):
            return _unsupported(ctx, error, status, _unsupported_hint(ctx))
        return BadRequestError(
            f"{ctx.server} rejected {ctx.describe()} as invalid (HTTP {status}: {error.message}). "
            "Fix the request parameters named in that message; sending it again unchanged will fail again.",
            details=details,
        )
    location = headers.get("location")
    moved = f" It points to {location}; use that as the base URL." if location else ""
    return LLMResponseError(
        f"{ctx.server} answered {ctx.describe()} with unexpected HTTP {status}.{moved}",
        details={**details, "location": location} if location else details,
    )


def error_in_200_body(error: ServerError, ctx: CallContext) -> BridgeError:
    """An HTTP 200 whose body is an error: LM Studio's answer to routes it does not know."""
    found = _classify_text(error, ctx, 200)
    if found is not None:
        return found
    if ctx.endpoint.startswith("/api/"):
        return _unsupported(ctx, error, 200, _unsupported_hint(ctx))
    hint = (
        "LM Studio answers routes it does not know with HTTP 200 and an error body, so the base URL is probably "
        "wrong (the OpenAI-compatible API lives under /v1 at the server's root)."
    )
    if _UNKNOWN_ROUTE.search(error.message):
        return _unsupported(ctx, error, 200, hint)
    return LLMResponseError(
        f"{ctx.server} answered {ctx.describe()} with HTTP 200 but an error body: {error.message}. "
        f"If every request fails like this, {hint[0].lower()}{hint[1:]}",
        details={**ctx.details(status=200), **error.details()},
    )


def error_in_stream(error: ServerError, ctx: CallContext, *, tokens: int) -> BridgeError:
    """An error the server reported inside a 200 stream (``event: error`` or an ``error`` chunk)."""
    found = _classify_text(error, ctx, 200, in_stream=True)
    if found is not None:
        found.details["tokens"] = tokens
        return found
    return LLMResponseError(
        f"{ctx.server} reported an error mid-stream on {ctx.describe()} after {tokens} tokens: {error.message}. "
        "Check the server's log; the model may have crashed or run out of memory.",
        details={**ctx.details(status=200, in_stream=True, tokens=tokens), **error.details()},
    )


def _untrusted_certificate(exc: BaseException) -> bool:
    """Whether a connect failure is a refused certificate; trio gives it only as a cause of the cause."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain; a loop in it would otherwise never end
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_CLOSED_UNANSWERED = "Server disconnected without sending a response."
"""httpcore's words for a connection closed before any byte of an answer."""


def error_for_transport(exc: httpx.TransportError, ctx: CallContext, *, tokens: int = 0) -> LLMError:
    """A network-level failure (refused, reset, DNS, broken stream)."""
    reason = str(exc) or type(exc).__name__
    details = ctx.details(transport_error=type(exc).__name__, tokens=tokens or None)
    if isinstance(exc, httpx.ConnectError) and _untrusted_certificate(exc):
        return LLMConnectionError(
            f"{ctx.server} answered with a TLS certificate this machine does not trust. "
            "Set SSL_CERT_FILE to the PEM file of the CA that signed it, or use http:// for a server on localhost.",
            retryable=False,
            details=details,
        )
    if isinstance(exc, httpx.ConnectError):
        return LLMConnectionError(
            f"Could not connect to {ctx.server} ({reason}). "
            "Is the LLM server running (LM Studio: `lms server start`), and is the base URL's host and port right?",
            details=details,
        )
    if isinstance(exc, httpx.UnsupportedProtocol):
        return LLMConnectionError(
            f"{ctx.server} is not a usable URL ({reason}); use http://host:port.",
            retryable=False,
            details=details,
        )
    if isinstance(exc, httpx.RemoteProtocolError) and reason == _CLOSED_UNANSWERED and not tokens:
        # llama.cpp's server closes kept-alive connections now and then without saying so: the server is up.
        return LLMConnectionError(
            f"{ctx.server} closed the connection without answering {ctx.describe()} ({reason}). Some servers "
            "(llama.cpp's) close kept-alive connections without saying so; the request is not sent twice on "
            "the same attempt, since the server may have read it.",
            details={**details, "reason": "closed_unanswered"},
        )
    during = f" after {tokens} tokens" if tokens else ""
    return LLMConnectionError(
        f"The connection to {ctx.server} broke during {ctx.describe()}{during} ({type(exc).__name__}: {reason}). "
        "The server may have restarted or crashed; check its log.",
        details=details,
    )
