"""The async client for one OpenAI-compatible LLM server.

It does HTTP, parsing, time budgets and error translation, nothing else:
queueing, concurrency limits, circuit breaking and retries belong to the
actors that call it (they use :func:`bridge.llm.call_with_retries`). Every
failure leaves as a :mod:`bridge.errors` class, with the httpx error chained.
"""

from __future__ import annotations

import array
import base64
import contextlib
import logging
import socket
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar

import anyio
import anyio.lowlevel
import httpx
import msgspec

import bridge
from bridge.errors import BridgeError, LLMError, LLMResponseError
from bridge.llm._budgets import Budgets, Clock, timeout_error
from bridge.llm._chat import (
    ChatAccumulator,
    CompletionAccumulator,
    StreamAccumulator,
    bad_shape,
    decode_json_body,
    usage_from_wire,
)
from bridge.llm._errors import (
    CallContext,
    error_for_status,
    error_for_transport,
    server_error_from_payload,
)
from bridge.llm._http import RequestBody, http_client, tls_context
from bridge.llm._models import models_from_openai, models_from_v0, models_from_v1
from bridge.llm._outcome import (
    ChatOutcome,
    CompletionOutcome,
    DownloadStatus,
    EmbeddingsOutcome,
    LoadResult,
    ModelInfo,
    NativeModel,
    ResponsesOutcome,
    ServerProps,
    StreamProgress,
)
from bridge.llm._params import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    ResponsesRequest,
    Tool,
    encode_body,
)
from bridge.llm._responses import ResponsesAccumulator
from bridge.llm._sse import SSEDecoder, SSELineSplitter
from bridge.llm._wire import EmbeddingList, LlamaProps, LoadResponse
from bridge.server_address import check_api_key, normalize_base_url

__all__ = ["LLMClient", "ProgressCallback"]

ProgressCallback = Callable[[StreamProgress], Awaitable[None]]
"""Awaited with a snapshot after every chunk that carried output; keep it quick."""

_A = TypeVar("_A", bound=StreamAccumulator)
log = logging.getLogger("bridge.llm")

_MAX_ERROR_BODY = 64 * 1024
_NOT_THERE = frozenset({404, 405, 501})


class _Answer(msgspec.Struct, frozen=True):
    status: int
    headers: httpx.Headers
    body: bytes


async def _abandon(iterator: AsyncIterator[Any]) -> None:
    """Finish a partly read httpx body iterator without reading on.

    httpx's body iterators are chains of async generators (``aiter_lines`` over
    ``aiter_text`` over ``aiter_bytes`` ... over the transport's), and
    ``aclose()`` on the outermost does not close the inner ones: trio then
    warns about each when it is garbage collected. Driving the chain inside a
    cancelled scope makes the innermost await raise, and that unwinds every
    generator properly. Buffered data is discarded; nothing waits on the network.
    """
    with anyio.CancelScope() as scope:
        scope.cancel()
        with contextlib.suppress(Exception):
            async for _ in iterator:
                pass


async def _read_capped(response: httpx.Response, limit: int = _MAX_ERROR_BODY) -> bytes:
    """An error body, at most ``limit`` bytes: an HTML page from a proxy can be large."""
    parts: list[bytes] = []
    size = 0
    chunks = response.aiter_bytes()
    try:
        async for chunk in chunks:
            parts.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    finally:
        await _abandon(chunks)
    return b"".join(parts)[:limit]


def _default_headers(base_url: str, api_key: str | None) -> httpx.Headers:
    """Headers of every request: no compression (streams must arrive as they are written), the API key.

    Credentials in the base URL (``http://user:pass@host``, a reverse proxy's)
    become Basic auth and are kept out of the URLs the bridge reports; an API
    key takes precedence.
    """
    headers = httpx.Headers(
        {
            "accept": "application/json, text/event-stream",
            "accept-encoding": "identity",
            "user-agent": f"lmstudio-bridge/{bridge.__version__}",
        }
    )
    url = httpx.URL(base_url if "://" in base_url else f"http://{base_url.strip()}")
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    elif url.username or url.password:
        userinfo = f"{url.username}:{url.password}".encode()
        headers["authorization"] = "Basic " + base64.b64encode(userinfo).decode("ascii")
    return headers


def _drop_connection(response: httpx.Response) -> None:
    """Make sure the connection that carried ``response`` serves no other request.

    Called when a stream ended without saying how it finished. llama-cpp-python's server
    (uvicorn) closes the connection a moment after such a stream, and a request sent on it in
    that moment (the unstreamed question that follows an empty stream) is lost: "Server
    disconnected without sending a response". Rather than re-send on that error (which cannot
    tell a closing connection from a server that read the request and died), the bridge shuts
    the socket down itself: it then reads as closed, which is what the pool checks before it
    hands out an idle connection, so the pool drops it and the next request gets a fresh one.
    The socket comes from httpcore's documented ``network_stream`` extension; a transport
    without one (tests' ``MockTransport``) keeps no connections.
    """
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed by the server: just as good
            sock.shutdown(socket.SHUT_RDWR)


def _body_chunks(response: httpx.Response) -> tuple[AsyncIterator[bytes], Callable[[], Awaitable[None]]]:
    """The response body's chunks, and how to stop reading them early (:func:`_abandon`).

    An uncompressed body (asked for, and what LLM servers send) is read from the
    stream itself, one generator layer fewer per chunk than ``aiter_raw``; a body
    the server compressed anyway goes through httpx's decoders.
    """
    stream = response.stream
    if response.headers.get("content-encoding", "identity").lower() in ("identity", "") and isinstance(
        stream, httpx.AsyncByteStream
    ):
        chunks = stream.__aiter__()
    else:
        chunks = response.aiter_bytes()
    return chunks, lambda: _abandon(chunks)


class LLMClient:
    """One pooled HTTP client for one LLM server (LM Studio, Ollama, llama.cpp, vLLM, ...).

    Args:
        base_url: The server's root or its ``/v1`` URL; both are accepted
            (``http://localhost:1234`` and ``http://localhost:1234/v1``).
        api_key: Sent as ``Authorization: Bearer``; LM Studio needs it when
            "Require Authentication" is on.
        budgets: Default time budgets; each call can override them.
        max_connections: Connections open at once to this server.
        transport: An httpx transport to use for every request instead of httpx's own
            (tests pass ``httpx.MockTransport``).

    Use it as ``async with LLMClient(...) as client:`` or call :meth:`aclose`.
    Proxy variables (``HTTPS_PROXY``, ``NO_PROXY``, ...) are honoured except for
    loopback servers, which are always reached directly (see ``_http``).

    Raises:
        ConfigError: The base URL is not usable, or the API key cannot be a header value.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        budgets: Budgets | None = None,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._root = normalize_base_url(base_url)
        if api_key:
            check_api_key(api_key)
        self._budgets = budgets or Budgets()
        self._http = http_client(max_connections=max_connections, tls=tls_context(self._root), transport=transport)
        self._headers = _default_headers(base_url, api_key)
        self._json_headers = httpx.Headers({**self._headers, "content-type": "application/json"})
        self._urls: dict[str, httpx.URL] = {}
        # (endpoint, model) pairs whose streamed requests with tools came back empty and whose unstreamed
        # answer then was an answer (llama-cpp-python's function-calling formats): asked unstreamed from then on.
        self._unstreamed_tools: set[tuple[str, str]] = set()
        # True once the server closed a kept-alive connection without answering the request sent on it
        # (llama.cpp's server does now and then): from then on the headers ask for a connection per request.
        self._one_connection_each = False

    @property
    def base_url(self) -> str:
        """The server's root, where LM Studio's native ``/api`` lives."""
        return self._root

    @property
    def api_url(self) -> str:
        """The OpenAI-compatible API's base (``<root>/v1``)."""
        return f"{self._root}/v1"

    @property
    def budgets(self) -> Budgets:
        return self._budgets

    def __repr__(self) -> str:
        return f"LLMClient({self._root!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        await self._http.aclose()

    async def _send(self, ctx: CallContext, body: bytes | None, budgets: Budgets) -> httpx.Response:
        """Send one request; the caller closes the response.

        Requests are built here rather than by httpx's ``build_request`` (URL merging,
        cookies and default headers do nothing this client needs). Only connecting is
        httpx's deadline; the other budgets are cancel scopes (see ``_budgets``).
        """
        url = self._urls.get(ctx.url)
        if url is None:
            url = self._urls[ctx.url] = httpx.URL(ctx.url)
        request = httpx.Request(
            ctx.method,
            url,
            headers=self._json_headers if body is not None else self._headers,
            content=body,
            extensions={"timeout": {"connect": budgets.connect, "read": None, "write": None, "pool": None}},
        )
        request.stream = RequestBody(body or b"")
        return await self._http.send(request, stream=True)

    def _ctx(self, endpoint: str, *, method: str = "POST", model: str | None = None) -> CallContext:
        return CallContext(
            server=self._root, endpoint=endpoint, method=method, model=model, inference=endpoint.startswith("/v1/")
        )

    def _transport_failure(
        self, exc: httpx.TransportError, ctx: CallContext, clock: Clock, tokens: int = 0
    ) -> LLMError:
        if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
            return timeout_error(
                "connect", clock.budgets.connect, what=ctx.describe(), details=ctx.details(), tokens=tokens
            )
        if clock.scope.cancel_called:
            return clock.timeout_error(what=ctx.describe(), details=ctx.details(), tokens=tokens)
        error = error_for_transport(exc, ctx, tokens=tokens)
        if error.details.get("reason") == "closed_unanswered" and not self._one_connection_each:
            self._one_connection_each = True
            self._headers = httpx.Headers({**self._headers, "connection": "close"})
            self._json_headers = httpx.Headers({**self._json_headers, "connection": "close"})
            log.info("%s closes kept-alive connections without saying so: one connection per request now", self._root)
        return error

    # -- the two ways of talking -------------------------------------------------------------

    async def _generate(
        self,
        ctx: CallContext,
        request: ChatRequest | CompletionRequest | ResponsesRequest,
        accumulator_type: Callable[[CallContext], _A],
        *,
        budgets: Budgets | None,
        stream: bool,
        on_progress: ProgressCallback | None,
    ) -> _A:
        """:meth:`_run`, and once more without streaming when a stream ended without a word.

        llama-cpp-python answers a prompt over the context with an empty 200
        stream, and the same request unstreamed with a 400 that says so
        (``context_length_exceeded``); LM Studio also goes silent on overflows.
        Asking again unstreamed turns the silence into the real answer or error.

        llama-cpp-python's function-calling chat formats also send an empty stream when
        the model picks a tool for a streamed request with tools ("Automatic streaming
        tool choice is not supported", raised after the 200 headers). When the unstreamed
        answer to such a request is an answer, the model is asked unstreamed at once
        from then on, for every request with tools to this server.
        """
        tools = bool(getattr(request, "tools", None))
        learnt = (ctx.endpoint, request.model)
        if stream and tools and learnt in self._unstreamed_tools:
            stream = False
        try:
            return await self._run(
                ctx,
                encode_body(request, stream=stream),
                accumulator_type(ctx),
                budgets=budgets,
                stream=stream,
                on_progress=on_progress,
            )
        except LLMResponseError as exc:
            if not stream or exc.details.get("reason") != "empty_stream":
                raise
            silence = exc
        try:
            answer = await self._run(
                ctx,
                encode_body(request, stream=False),
                accumulator_type(ctx),
                budgets=budgets,
                stream=False,
                on_progress=on_progress,
            )
        except LLMResponseError as exc:
            if type(exc) is LLMResponseError:  # nothing more specific learnt: the silence says more
                raise silence from exc
            raise
        if tools:  # silent streamed, answered unstreamed: it is the streaming of tool choice that fails
            self._unstreamed_tools.add(learnt)
        return answer

    async def _run(
        self,
        ctx: CallContext,
        body: bytes,
        accumulator: _A,
        *,
        budgets: Budgets | None,
        stream: bool,
        on_progress: ProgressCallback | None,
    ) -> _A:
        """Send one generation request and feed its answer, streamed or whole, to ``accumulator``."""
        budgets = budgets or self._budgets
        clock = Clock(budgets)
        accumulator.started = clock.started
        if stream:
            clock.wait_first_token()
        else:
            clock.wait_total()
        try:
            with clock.scope:
                response = await self._send(ctx, body, budgets)
                try:
                    if not response.is_success:
                        raw = await _read_capped(response)
                        raise error_for_status(response.status_code, response.headers, raw, ctx)
                    content_type = response.headers.get("content-type", "")
                    if not stream or "json" in content_type:
                        # Also a server that ignored ``stream: true`` and answered with one JSON body.
                        accumulator.take_whole(await response.aread())
                    else:
                        await self._pump(response, accumulator, clock, on_progress)
                finally:
                    await response.aclose()
        except httpx.TransportError as exc:
            raise self._transport_failure(exc, ctx, clock, accumulator.deltas) from exc
        if clock.scope.cancelled_caught:
            details = ctx.details()
            partial = _partial_text(accumulator)
            if partial:
                details["partial_content"] = partial  # what the model wrote before the budget ran out
            raise clock.timeout_error(what=ctx.describe(), details=details, tokens=accumulator.deltas)
        return accumulator

    @staticmethod
    async def _pump(
        response: httpx.Response,
        accumulator: StreamAccumulator,
        clock: Clock,
        on_progress: ProgressCallback | None,
    ) -> None:
        decoder = SSEDecoder()
        splitter = SSELineSplitter()
        chunks, close = _body_chunks(response)
        try:
            async for chunk in chunks:
                if accumulator.first_token_at is not None:
                    clock.wait_idle()
                for line in splitter.feed(chunk):
                    event = decoder.feed(line)
                    if event is None:
                        continue
                    produced = accumulator.feed(event)
                    if produced and on_progress is not None:
                        # The callback's own time is not the server's silence.
                        clock.wait_total()
                        await on_progress(accumulator.progress())
                        # Events that came in one chunk: a callback that cancelled the call hears no more.
                        await anyio.lowlevel.checkpoint_if_cancelled()
                    if accumulator.done:
                        break
                if accumulator.first_token_at is not None:
                    clock.wait_idle()
                if accumulator.done:
                    break
            else:
                for line in splitter.flush():
                    if (event := decoder.feed(line)) is not None:
                        accumulator.feed(event)
                if (event := decoder.flush()) is not None:
                    accumulator.feed(event)
        finally:
            await close()
        try:
            accumulator.check_complete()
        except LLMResponseError:
            _drop_connection(response)  # cut or empty: the server may be closing this connection
            raise

    async def _exchange(self, ctx: CallContext, body: bytes | None, *, budgets: Budgets | None, quick: bool) -> _Answer:
        """One plain request/response. ``quick`` answers (listings, embeddings) get the first-token budget."""
        budgets = budgets or self._budgets
        clock = Clock(budgets)
        if quick:
            clock.wait_first_token()
        else:
            clock.wait_total()
        answer: _Answer | None = None
        try:
            with clock.scope:
                response = await self._send(ctx, body, budgets)
                try:
                    answer = _Answer(response.status_code, response.headers, await response.aread())
                finally:
                    await response.aclose()
        except httpx.TransportError as exc:
            raise self._transport_failure(exc, ctx, clock) from exc
        if answer is None:
            raise clock.timeout_error(what=ctx.describe(), details=ctx.details())
        return answer

    # -- OpenAI-compatible endpoints ------------------------------------------------------------

    async def chat(
        self,
        request: ChatRequest,
        *,
        stream: bool = True,
        budgets: Budgets | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> ChatOutcome:
        """``POST /v1/chat/completions``.

        Streaming (the default) is what makes the first-token and idle budgets
        and progress reports possible; a non-streamed call is bounded by
        ``total`` only, since the server sends nothing until it is done.

        Raises:
            LLMError: a subclass saying what went wrong (see :mod:`bridge.errors`).
            BadRequestError: the server rejected the parameters (HTTP 4xx).
        """
        ctx = self._ctx("/v1/chat/completions", model=request.model)
        accumulator = await self._generate(
            ctx, request, ChatAccumulator, budgets=budgets, stream=stream, on_progress=on_progress
        )
        return accumulator.outcome()

    async def complete(
        self,
        request: CompletionRequest,
        *,
        stream: bool = False,
        budgets: Budgets | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> CompletionOutcome:
        """``POST /v1/completions`` (raw prompt, no chat template)."""
        ctx = self._ctx("/v1/completions", model=request.model)
        accumulator = await self._generate(
            ctx, request, CompletionAccumulator, budgets=budgets, stream=stream, on_progress=on_progress
        )
        return accumulator.outcome()

    async def respond(
        self,
        request: ResponsesRequest,
        *,
        stream: bool = True,
        budgets: Budgets | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> ResponsesOutcome:
        """``POST /v1/responses`` (LM Studio 0.3.29+, llama.cpp; others raise UnsupportedEndpointError)."""
        ctx = self._ctx("/v1/responses", model=request.model)
        accumulator = await self._generate(
            ctx, request, ResponsesAccumulator, budgets=budgets, stream=stream, on_progress=on_progress
        )
        return accumulator.outcome()

    async def embed(self, request: EmbeddingRequest, *, budgets: Budgets | None = None) -> EmbeddingsOutcome:
        """``POST /v1/embeddings``; vectors come back in input order."""
        ctx = self._ctx("/v1/embeddings", model=request.model)
        started = anyio.current_time()
        payload = await self._json(ctx, encode_body(request), budgets=budgets, quick=True)
        try:
            listing = msgspec.convert(payload, EmbeddingList)
        except msgspec.ValidationError as exc:
            raise bad_shape(ctx, exc) from None
        vectors = [_vector(item.embedding) for item in sorted(listing.data, key=lambda item: item.index)]
        return EmbeddingsOutcome(
            vectors=vectors,
            model=listing.model or request.model,
            usage=usage_from_wire(listing.usage),
            duration=anyio.current_time() - started,
        )

    async def list_models(self, *, budgets: Budgets | None = None) -> list[ModelInfo]:
        """``GET /v1/models`` from any server (LM Studio with JIT on lists every downloaded model)."""
        ctx = self._ctx("/v1/models", method="GET")
        payload = await self._json(ctx, None, budgets=budgets, quick=True)
        models = models_from_openai(payload)
        if models is None:
            raise bad_shape(ctx, "no 'data' or 'models' list")
        return models

    async def _json(self, ctx: CallContext, body: bytes | None, *, budgets: Budgets | None, quick: bool) -> Any:
        answer = await self._exchange(ctx, body, budgets=budgets, quick=quick)
        if not 200 <= answer.status < 300:
            raise error_for_status(answer.status, answer.headers, answer.body, ctx)
        return decode_json_body(answer.body, ctx)

    # -- LM Studio's native API -------------------------------------------------------------------

    async def props(self, *, budgets: Budgets | None = None) -> ServerProps:
        """What llama.cpp's server says in ``GET /props``: ``total_slots`` (its ``-np``) and ``vision``.

        Servers without ``/props`` (llama-cpp-python, vLLM, LiteLLM, Ollama; llama.cpp's router,
        which wants a model named) say nothing: these are hints, so only a refused key raises.
        """
        payload = await self._optional_json(self._ctx("/props", method="GET"), None, budgets)
        try:
            props = msgspec.convert(payload, LlamaProps)
        except msgspec.ValidationError:
            return ServerProps()
        slots = props.total_slots
        vision = (props.modalities or {}).get("vision")
        return ServerProps(
            total_slots=slots if isinstance(slots, int) and slots > 0 else None,
            vision=vision if isinstance(vision, bool) else None,
        )

    async def count_prompt_tokens(
        self,
        messages: list[ChatMessage] | str,
        tools: Sequence[Tool] | None = None,
        *,
        budgets: Budgets | None = None,
    ) -> int | None:
        """The prompt's tokens as llama.cpp's server counts them, or ``None`` where the server cannot say.

        A chat is rendered by the model's own template (``POST /apply-template``, tools included) and the
        text tokenized as the server tokenizes a prompt (``POST /tokenize``, special tokens added and parsed).
        Servers without those endpoints (LM Studio, llama-cpp-python, vLLM, Ollama, llama.cpp's router) give
        ``None``: the count is a refinement of an estimate, so only a refused key raises.
        """
        if isinstance(messages, str):
            prompt: object = messages
        else:
            body: dict[str, Any] = {"messages": msgspec.to_builtins(messages)}
            if tools:
                body["tools"] = msgspec.to_builtins(tools)
            rendered = await self._optional_json(self._ctx("/apply-template"), body, budgets)
            prompt = rendered.get("prompt") if isinstance(rendered, dict) else None
        if not isinstance(prompt, str):
            return None
        counted = await self._optional_json(
            self._ctx("/tokenize"), {"content": prompt, "add_special": True, "parse_special": True}, budgets
        )
        tokens = counted.get("tokens") if isinstance(counted, dict) else None
        return len(tokens) if isinstance(tokens, list) else None

    async def _optional_json(self, ctx: CallContext, body: dict[str, Any] | None, budgets: Budgets | None) -> Any:
        """The JSON answer of an endpoint a server may lack: ``None`` for any answer but a good one or a 401/403."""
        encoded = None if body is None else msgspec.json.encode(body)
        answer = await self._exchange(ctx, encoded, budgets=budgets, quick=True)
        if answer.status in (401, 403):
            raise error_for_status(answer.status, answer.headers, answer.body, ctx)
        if not 200 <= answer.status < 300:
            return None
        try:
            return msgspec.json.decode(answer.body)
        except msgspec.DecodeError:
            return None

    async def native_models(self, *, budgets: Budgets | None = None) -> list[NativeModel] | None:
        """LM Studio's model list with load state and real context lengths, or ``None`` elsewhere.

        Tries ``/api/v1/models`` (LM Studio 0.4: it also says each instance's ``parallel``), then
        ``/api/v0/models`` (LM Studio 0.3). A server that lacks
        both (404, LM Studio's 200-with-error-body, non-JSON, another shape)
        gives ``None``; authentication and server failures still raise.
        """
        for endpoint, normalize in (("/api/v1/models", models_from_v1), ("/api/v0/models", models_from_v0)):
            ctx = self._ctx(endpoint, method="GET")
            answer = await self._exchange(ctx, None, budgets=budgets, quick=True)
            if answer.status in _NOT_THERE:
                continue
            if not 200 <= answer.status < 300:
                raise error_for_status(answer.status, answer.headers, answer.body, ctx)
            try:
                payload = msgspec.json.decode(answer.body)
            except msgspec.DecodeError:
                continue
            if server_error_from_payload(payload) is not None:
                continue
            models = normalize(payload)
            if models is not None:
                return models
        return None

    async def load_model(
        self,
        model: str,
        *,
        context_length: int | None = None,
        ttl: int | None = None,
        extra: dict[str, Any] | None = None,
        budgets: Budgets | None = None,
    ) -> LoadResult:
        """Load ``model`` via ``POST /api/v1/models/load`` (LM Studio 0.4+).

        ``ttl`` (seconds) is sent for servers that honour it; LM Studio documents
        it for JIT loads and ``lms load --ttl`` only. Loading can take minutes,
        so only the total budget applies.

        Raises:
            UnsupportedEndpointError: not LM Studio 0.4 or newer.
            ModelNotFoundError: no such model is downloaded.
        """
        body: dict[str, Any] = {"model": model}
        if context_length is not None:
            body["context_length"] = context_length
        if ttl is not None:
            body["ttl"] = ttl
        body.update(extra or {})
        ctx = self._ctx("/api/v1/models/load", model=model)
        payload = await self._json(ctx, msgspec.json.encode(body), budgets=budgets, quick=False)
        try:
            loaded = msgspec.convert(payload, LoadResponse)
        except msgspec.ValidationError as exc:
            raise bad_shape(ctx, exc) from None
        return LoadResult(
            instance_id=loaded.instance_id or model,
            type=loaded.type,
            status=loaded.status,
            load_time_seconds=loaded.load_time_seconds,
            load_config=loaded.load_config,
        )

    async def unload_model(self, instance_id: str, *, budgets: Budgets | None = None) -> str:
        """Unload one loaded instance via ``POST /api/v1/models/unload``; returns its id.

        Raises:
            UnsupportedEndpointError: not LM Studio 0.4 or newer.
        """
        ctx = self._ctx("/api/v1/models/unload", model=instance_id)
        payload = await self._json(ctx, msgspec.json.encode({"instance_id": instance_id}), budgets=budgets, quick=True)
        unloaded = payload.get("instance_id") if isinstance(payload, dict) else None
        return unloaded if isinstance(unloaded, str) and unloaded else instance_id

    async def download_model(
        self, model: str, *, quantization: str | None = None, budgets: Budgets | None = None
    ) -> DownloadStatus:
        """Start downloading ``model`` via ``POST /api/v1/models/download`` (LM Studio 0.4+).

        Raises:
            UnsupportedEndpointError: not LM Studio 0.4 or newer.
        """
        body: dict[str, Any] = {"model": model}
        if quantization is not None:
            body["quantization"] = quantization
        ctx = self._ctx("/api/v1/models/download", model=model)
        return _download_status(ctx, await self._json(ctx, msgspec.json.encode(body), budgets=budgets, quick=True))

    async def download_status(self, job_id: str, *, budgets: Budgets | None = None) -> DownloadStatus:
        """``GET /api/v1/models/download/status/<job_id>``: how a download started by :meth:`download_model` goes."""
        ctx = self._ctx(f"/api/v1/models/download/status/{job_id}", method="GET")
        return _download_status(ctx, await self._json(ctx, None, budgets=budgets, quick=True))

    # -- llama.cpp's router (llama-server started without a model) ---------------------------------

    async def router_load_model(self, model: str, *, budgets: Budgets | None = None) -> None:
        """Ask llama.cpp's router to load ``model`` (``POST /models/load``).

        The router answers once it has started the model's process; the load
        goes on after that, and ``/v1/models`` reports ``loading`` until it is done.
        """
        ctx = self._ctx("/models/load", model=model)
        await self._json(ctx, msgspec.json.encode({"model": model}), budgets=budgets, quick=True)

    async def router_unload_model(self, model: str, *, budgets: Budgets | None = None) -> None:
        """Ask llama.cpp's router to unload ``model`` (``POST /models/unload``)."""
        ctx = self._ctx("/models/unload", model=model)
        await self._json(ctx, msgspec.json.encode({"model": model}), budgets=budgets, quick=True)


def _download_status(ctx: CallContext, payload: Any) -> DownloadStatus:
    try:
        return msgspec.convert(payload, DownloadStatus)
    except msgspec.ValidationError as exc:
        raise bad_shape(ctx, exc) from None


def _vector(embedding: list[float] | str) -> list[float]:
    if isinstance(embedding, list):
        return embedding
    # encoding_format="base64": little-endian float32s.
    values = array.array("f")
    values.frombytes(base64.b64decode(embedding))
    return values.tolist()


def _partial_text(accumulator: object) -> str:
    """The text generated so far by a call that is being cut off (empty if none or not text)."""
    outcome = getattr(accumulator, "outcome", None)
    if outcome is None or not getattr(accumulator, "deltas", 0):
        return ""
    try:
        result = outcome()
    except BridgeError:
        return ""
    text = getattr(result, "content", None) or getattr(result, "text", None)
    return text if isinstance(text, str) else ""
