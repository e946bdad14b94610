"""URL normalization, model listings (native and OpenAI-style), loading, embeddings and /v1/responses."""

from __future__ import annotations

import base64
import struct
from typing import Any

import httpx
import pytest

from bridge.errors import (
    BridgeError,
    ConfigError,
    LLMResponseError,
    ModelNotFoundError,
    ModelUnloadedError,
    UnsupportedEndpointError,
)
from bridge.llm import EmbeddingRequest, LLMClient, ModelInfo, NativeModel, ResponsesRequest, StreamProgress
from bridge.llm._models import models_from_openai
from tests.test_llm_fakes import Body, Recorder, as_json, client, event, sse


@pytest.mark.parametrize(
    ("given", "root"),
    [
        ("http://localhost:1234", "http://localhost:1234"),
        ("http://localhost:1234/", "http://localhost:1234"),
        ("http://localhost:1234/v1", "http://localhost:1234"),
        ("http://localhost:1234/v1/", "http://localhost:1234"),
        ("localhost:1234", "http://localhost:1234"),
        ("  http://127.0.0.1:11434/v1  ", "http://127.0.0.1:11434"),
        ("http://localhost:1234/v1/chat/completions", "http://localhost:1234"),
        ("https://gpu.example.org/llm/v1", "https://gpu.example.org/llm"),
        ("http://[::1]:8080/v1", "http://[::1]:8080"),
    ],
)
async def test_base_url_normalization(given: str, root: str) -> None:
    """The root and the /v1 URL both work; the client keeps the root and adds the prefixes."""
    async with LLMClient(given) as llm:
        assert llm.base_url == root
        assert llm.api_url == f"{root}/v1"


@pytest.mark.parametrize("bad", ["", "ftp://host/v1", "http://"])
def test_bad_base_url(bad: str) -> None:
    """A URL that cannot name a server is a configuration error."""
    with pytest.raises(ConfigError):
        LLMClient(bad)


async def test_requests_go_to_root_and_v1() -> None:
    """OpenAI-compatible calls go under /v1, native ones under /api, from the same root."""
    recorder = Recorder(lambda request: httpx.Response(404))
    async with client(recorder, base_url="http://lms.test:1234/v1/") as llm:
        await llm.native_models()
        with pytest.raises(UnsupportedEndpointError):
            await llm.list_models()
    assert [str(request.url) for request in recorder.requests] == [
        "http://lms.test:1234/api/v1/models",  # LM Studio 0.4: it says each instance's parallel
        "http://lms.test:1234/api/v0/models",
        "http://lms.test:1234/v1/models",
    ]


V0 = {
    "object": "list",
    "data": [
        {"id": "qwen2-vl-7b-instruct", "object": "model", "type": "vlm", "publisher": "mlx-community",
         "arch": "qwen2_vl", "compatibility_type": "mlx", "quantization": "4bit", "state": "not-loaded",
         "max_context_length": 32768},
        {"id": "meta-llama-3.1-8b-instruct", "object": "model", "type": "llm", "publisher": "lmstudio-community",
         "arch": "llama", "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "loaded",
         "max_context_length": 131072, "loaded_context_length": 4096, "capabilities": ["tool_use"]},
        {"id": "text-embedding-nomic-embed-text-v1.5", "object": "model", "type": "embeddings",
         "publisher": "nomic-ai", "arch": "nomic-bert", "compatibility_type": "gguf", "quantization": "Q4_0",
         "state": "not-loaded", "max_context_length": 2048},
    ],
}  # fmt: skip

V1 = {
    "models": [
        {"type": "llm", "publisher": "openai", "key": "openai/gpt-oss-20b", "display_name": "gpt-oss 20B",
         "architecture": "gpt-oss", "quantization": {"name": "MXFP4", "bits_per_weight": 4.25},
         "size_bytes": 12109566560, "params_string": "20B",
         "loaded_instances": [
             {"id": "openai/gpt-oss-20b", "config": {"context_length": 8192, "eval_batch_size": 512, "parallel": 4}},
             {"id": "openai/gpt-oss-20b:2", "config": {"context_length": 4096, "parallel": 2}},
         ],
         "max_context_length": 131072, "format": "gguf",
         "capabilities": {"vision": False, "trained_for_tool_use": True,
                          "reasoning": {"allowed_options": ["low", "medium", "high"], "default": "medium"}},
         "description": None},
        {"type": "embedding", "publisher": "nomic-ai", "key": "text-embedding-nomic-embed-text-v1.5",
         "display_name": "Nomic Embed", "quantization": {"name": "Q4_0", "bits_per_weight": 4},
         "loaded_instances": [], "max_context_length": 2048, "format": "gguf"},
    ]
}  # fmt: skip


def _routes(table: dict[str, httpx.Response]) -> Recorder:
    return Recorder(lambda request: table.get(request.url.path, httpx.Response(404)))


async def test_native_models_v0() -> None:
    """The v0 list is normalized: types, load state, the loaded context, tool use and vision."""
    async with client(_routes({"/api/v0/models": as_json(V0)})) as llm:
        models = await llm.native_models()
    assert models == [
        NativeModel(id="qwen2-vl-7b-instruct", type="llm", loaded=False, context_length=32768,
                    max_context_length=32768, vision=True, publisher="mlx-community", quantization="4bit",
                    architecture="qwen2_vl", format="mlx", api="v0"),
        NativeModel(id="meta-llama-3.1-8b-instruct", type="llm", loaded=True, context_length=4096,
                    max_context_length=131072, tool_use=True, publisher="lmstudio-community",
                    quantization="Q4_K_M", architecture="llama", format="gguf",
                    instance_ids=("meta-llama-3.1-8b-instruct",), api="v0"),
        NativeModel(id="text-embedding-nomic-embed-text-v1.5", type="embedding", loaded=False, context_length=2048,
                    max_context_length=2048, publisher="nomic-ai", quantization="Q4_0", architecture="nomic-bert",
                    format="gguf", api="v0"),
    ]  # fmt: skip


async def test_native_models_v1_when_v0_is_gone() -> None:
    """Without v0 (LM Studio answering 200 + error), the v1 list is used, instances included."""
    recorder = _routes(
        {
            "/api/v0/models": as_json({"error": "Unexpected endpoint or method. (GET /api/v0/models)"}),
            "/api/v1/models": as_json(V1),
        }
    )
    async with client(recorder) as llm:
        models = await llm.native_models()
    assert models is not None
    gpt, nomic = models
    assert (gpt.id, gpt.type, gpt.loaded, gpt.context_length, gpt.max_context_length) == (
        "openai/gpt-oss-20b", "llm", True, 4096, 131072,
    )  # fmt: skip
    assert (gpt.tool_use, gpt.vision, gpt.quantization, gpt.display_name, gpt.api) == (
        True, False, "MXFP4", "gpt-oss 20B", "v1",
    )  # fmt: skip
    assert gpt.instance_ids == ("openai/gpt-oss-20b", "openai/gpt-oss-20b:2")
    assert (gpt.parallel, nomic.parallel) == (6, None)  # two instances' slots add up; none loaded, none said
    assert (nomic.type, nomic.loaded, nomic.context_length, nomic.instance_ids) == ("embedding", False, 2048, ())


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(404, json={"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}),
        httpx.Response(200, json={"error": "Unexpected endpoint or method. (GET /api/v0/models)"}),
        httpx.Response(200, content=b"Ollama is running"),
        httpx.Response(200, json={"object": "list", "data": [{"id": 3}]}),
        httpx.Response(405),
    ],
    ids=["llama-cpp-404", "old-lm-studio-200-error", "not-json", "wrong-shape", "405"],
)
async def test_native_models_none_when_not_lm_studio(answer: httpx.Response) -> None:
    """Servers without LM Studio's native API give None, not an error."""
    async with client(Recorder(lambda request: answer)) as llm:
        assert await llm.native_models() is None


async def test_native_models_raises_on_auth_failure() -> None:
    """An authentication failure is not mistaken for a missing native API."""
    async with client(Recorder(lambda request: as_json({"error": "token required"}, 401))) as llm:
        with pytest.raises(LLMResponseError, match="api_key"):
            await llm.native_models()


LMS_V1_MODELS = {"data": [{"id": "openai/gpt-oss-20b", "object": "model", "owned_by": "organization_owner"}],
                 "object": "list"}  # fmt: skip
LLAMA_CPP_MODELS = {
    "models": [{"name": "smollm2-135m", "model": "smollm2-135m", "modified_at": "", "size": "", "digest": "",
                "type": "model", "description": "", "tags": [""], "capabilities": ["completion"],
                "parameters": "", "details": {"parent_model": "", "format": "gguf", "family": ""}}],
    "object": "list",
    "data": [{"id": "smollm2-135m", "object": "model", "created": 1764070000, "owned_by": "llamacpp",
              "meta": {"vocab_type": 2, "n_vocab": 49152, "n_ctx_train": 8192, "n_ctx": 4096, "n_embd": 576,
                       "n_params": 134515008, "size": 85697280}}],
}  # fmt: skip
OLLAMA_TAGS = {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 2019393189,
                           "details": {"family": "llama", "parameter_size": "3.2B"}}]}  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (LMS_V1_MODELS, [ModelInfo(id="openai/gpt-oss-20b", owned_by="organization_owner")]),
        (LLAMA_CPP_MODELS, [ModelInfo(id="smollm2-135m", owned_by="llamacpp", context_length=4096,
                                      max_context_length=8192, capabilities=("completion",))]),
        (OLLAMA_TAGS, [ModelInfo(id="llama3.2:latest", owned_by="llama")]),
        ({"object": "list", "data": []}, []),
    ],
    ids=["lm-studio", "llama-cpp", "ollama-models", "empty"],
)  # fmt: skip
async def test_list_models_shapes(payload: dict[str, Any], expected: list[ModelInfo]) -> None:
    """/v1/models from LM Studio, llama.cpp (meta.n_ctx, models[]) and Ollama-style lists normalize alike."""
    async with client(Recorder(lambda request: as_json(payload))) as llm:
        assert await llm.list_models() == expected


async def test_list_models_rejects_other_json() -> None:
    """JSON that is no model list is an error naming the problem."""
    async with client(Recorder(lambda request: as_json({"hello": "world"}))) as llm:
        with pytest.raises(LLMResponseError, match="unexpected shape"):
            await llm.list_models()


async def test_load_and_unload_model() -> None:
    """Loading sends only the given options and returns the instance; unloading returns its id."""
    recorder = _routes(
        {
            "/api/v1/models/load": as_json({"type": "llm", "instance_id": "openai/gpt-oss-20b",
                                            "load_time_seconds": 9.1, "status": "loaded"}),
            "/api/v1/models/unload": as_json({"instance_id": "openai/gpt-oss-20b"}),
        }
    )  # fmt: skip
    async with client(recorder) as llm:
        loaded = await llm.load_model("openai/gpt-oss-20b", context_length=8192, extra={"flash_attention": True})
        unloaded = await llm.unload_model(loaded.instance_id)
    assert (loaded.instance_id, loaded.status, loaded.load_time_seconds) == ("openai/gpt-oss-20b", "loaded", 9.1)
    assert unloaded == "openai/gpt-oss-20b"
    assert recorder.bodies() == [
        {"model": "openai/gpt-oss-20b", "context_length": 8192, "flash_attention": True},
        {"instance_id": "openai/gpt-oss-20b"},
    ]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(404, json={"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}),
        httpx.Response(200, json={"error": "Unexpected endpoint or method. (POST /api/v1/models/load)"}),
    ],
    ids=["llama-cpp", "lm-studio-0.3"],
)
async def test_load_model_elsewhere_is_unsupported(answer: httpx.Response) -> None:
    """Servers without LM Studio 0.4's native API raise UnsupportedEndpointError on load and unload."""
    async with client(Recorder(lambda request: answer)) as llm:
        with pytest.raises(UnsupportedEndpointError, match="native API"):
            await llm.load_model("m", ttl=60)
        with pytest.raises(UnsupportedEndpointError):
            await llm.unload_model("m")


async def test_load_unknown_model() -> None:
    """Loading a model that is not downloaded is ModelNotFoundError."""
    body = {"error": {"message": 'Model "nope" not found', "type": "invalid_request", "code": "model_not_found"}}
    async with client(Recorder(lambda request: as_json(body, 404))) as llm:
        with pytest.raises(ModelNotFoundError):
            await llm.load_model("nope")


async def test_embeddings_in_input_order() -> None:
    """Vectors come back in input order, whether sent as floats or base64."""
    packed = base64.b64encode(struct.pack("<2f", 0.5, -1.0)).decode()
    payload = {
        "object": "list",
        "data": [
            {"object": "embedding", "embedding": packed, "index": 1},
            {"object": "embedding", "embedding": [0.25, 0.75], "index": 0},
        ],
        "model": "text-embedding-nomic-embed-text-v1.5@q4_k_m",
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
    recorder = Recorder(lambda request: as_json(payload))
    async with client(recorder) as llm:
        outcome = await llm.embed(EmbeddingRequest(model="nomic", input=["a", "b"]))
    assert outcome.vectors == [[0.25, 0.75], [0.5, -1.0]]
    assert outcome.model == "text-embedding-nomic-embed-text-v1.5@q4_k_m"
    assert outcome.usage is not None
    assert outcome.usage.prompt_tokens == 0
    assert recorder.bodies() == [{"model": "nomic", "input": ["a", "b"]}]


RESPONSE = {
    "id": "resp_abc",
    "object": "response",
    "created_at": 1730000000,
    "status": "completed",
    "model": "openai/gpt-oss-20b",
    "output": [
        {"id": "rs_1", "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "Hmm."}]},
        {"id": "msg_1", "type": "message", "status": "completed",
         "content": [{"type": "output_text", "text": "Hello", "annotations": []}]},
        {"type": "function_call", "call_id": "call_9", "name": "get_time", "arguments": "{\"tz\":\"UTC\"}"},
    ],
    "usage": {"input_tokens": 10, "output_tokens": 6, "total_tokens": 16},
}  # fmt: skip


async def test_responses_non_streamed() -> None:
    """A whole /v1/responses answer gives content, reasoning, function calls and usage."""
    recorder = Recorder(lambda request: as_json(RESPONSE))
    request = ResponsesRequest(model="openai/gpt-oss-20b", input="hi", reasoning_effort="low",
                               tools=[{"type": "function", "name": "get_time", "parameters": {}}])  # fmt: skip
    async with client(recorder) as llm:
        outcome = await llm.respond(request, stream=False)
    assert (outcome.id, outcome.content, outcome.reasoning, outcome.status) == (
        "resp_abc", "Hello", "Hmm.", "completed",
    )  # fmt: skip
    assert [(call.id, call.name, call.arguments) for call in outcome.tool_calls] == [
        ("call_9", "get_time", '{"tz":"UTC"}')
    ]
    assert outcome.usage is not None
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens, outcome.tokens) == (10, 6, 6)
    assert recorder.bodies()[0] == {
        "model": "openai/gpt-oss-20b",
        "input": "hi",
        "tools": [{"type": "function", "name": "get_time", "parameters": {}}],
        "reasoning": {"effort": "low"},
        "stream": False,
    }


async def test_responses_streamed() -> None:
    """Streamed /v1/responses events drive progress; the completed event gives the outcome."""
    body = Body(
        event({"type": "response.created", "response": {"id": "resp_abc", "status": "in_progress"}},
              name="response.created"),
        event({"type": "response.reasoning_text.delta", "delta": "Hmm."}, name="response.reasoning_text.delta"),
        event({"type": "response.output_text.delta", "delta": "Hel"}, name="response.output_text.delta"),
        event({"type": "response.output_text.delta", "delta": "lo"}, name="response.output_text.delta"),
        event({"type": "response.completed", "response": RESPONSE}, name="response.completed"),
    )  # fmt: skip
    seen: list[StreamProgress] = []

    async def on_progress(progress: StreamProgress) -> None:
        seen.append(progress)

    async with client(Recorder(lambda request: sse(body))) as llm:
        outcome = await llm.respond(ResponsesRequest(model="m", input="hi"), on_progress=on_progress)
    assert [progress.tokens for progress in seen] == [1, 2, 3]
    assert (outcome.content, outcome.reasoning, outcome.streamed, outcome.time_to_first_token is not None) == (
        "Hello", "Hmm.", True, True,
    )  # fmt: skip
    assert body.closed


async def test_responses_stream_failure() -> None:
    """A ``response.failed`` event raises the server's error."""
    failed = {
        "type": "response.failed",
        "response": {"id": "r", "status": "failed", "error": {"message": "Model unloaded", "code": "x"}},
    }
    body = Body(event(failed, name="response.failed"))
    async with client(Recorder(lambda request: sse(body))) as llm:
        with pytest.raises(ModelUnloadedError, match="Model unloaded"):
            await llm.respond(ResponsesRequest(model="m", input="hi"))


def test_llama_cpp_router_status_is_read_as_the_load_state() -> None:
    """llama.cpp's router sends {"value": ...}; some builds a bare string; plain servers nothing."""
    payload = {
        "data": [
            {"id": "a", "status": {"value": "loaded", "args": ["-m", "a.gguf"]}},
            {"id": "b", "status": {"value": "Loading"}},
            {"id": "c", "status": "unloaded"},
            {"id": "d"},
        ]
    }
    models = {m.id: m for m in models_from_openai(payload) or []}
    assert [(m.load_state, m.loaded) for m in models.values()] == [
        ("loaded", True),
        ("loading", False),
        ("unloaded", False),
        (None, None),
    ]


@pytest.mark.parametrize(
    ("answer", "slots"),
    [
        (httpx.Response(200, json={"total_slots": 3, "default_generation_settings": {"n_ctx": 512}}), 3),
        (httpx.Response(404), None),
        (httpx.Response(400, json={"error": {"message": "model name is missing from the request"}}), None),
        (httpx.Response(200, json={"total_slots": 0}), None),
        (httpx.Response(200, content=b"<html>"), None),
    ],
    ids=["llama.cpp", "no-props", "llama.cpp-router", "zero", "not-json"],
)
async def test_total_slots_from_llama_cpp_props(answer: httpx.Response, slots: int | None) -> None:
    """llama.cpp's /props says how many requests it runs at once; other servers give None, not an error."""
    recorder = Recorder(lambda request: answer)
    async with client(recorder) as llm:
        assert (await llm.props()).total_slots == slots
    assert [request.url.path for request in recorder.requests] == ["/props"]


@pytest.mark.parametrize(
    ("modalities", "vision"),
    [({"vision": True, "audio": False}, True), ({"vision": False}, False), (None, None), ({"vision": "yes"}, None)],
)
async def test_vision_from_llama_cpp_props(modalities: dict[str, Any] | None, vision: bool | None) -> None:
    """llama.cpp's /props says whether its model takes images (a projector is loaded: ``modalities.vision``)."""
    body: dict[str, Any] = {"total_slots": 1} | ({"modalities": modalities} if modalities is not None else {})
    async with client(Recorder(lambda request: httpx.Response(200, json=body))) as llm:
        assert (await llm.props()).vision is vision


async def test_total_slots_with_a_refused_key_raises() -> None:
    """A refused key is not 'the server does not say': it is the error it is."""
    async with client(Recorder(lambda request: httpx.Response(401, json={"error": "bad key"}))) as llm:
        with pytest.raises(BridgeError) as caught:
            await llm.props()
    assert caught.value.code == "backend_error"
    assert not caught.value.retryable
    assert "401" in caught.value.message
