"""llama.cpp's router (``llama-server`` started without a model), as the simulator's ``api="llama.cpp-router"``.

Its ``/v1/models`` says which models are loaded, loading or unloaded, and its
``/models/load`` and ``/models/unload`` back ``load_model`` and ``unload_model``.
A plain OpenAI-style server says nothing of load state: the bridge reports
"unknown" there, never "0 loaded".
"""

from __future__ import annotations

import httpx

from bridge.sim import SimConfig, SimModel, SimServer
from tests.test_frontend import GEMMA, QWEN, assert_error, connected, data, text

ROUTER_MODELS = (
    SimModel(id=QWEN, loaded=False, reply_tokens=4, jit_load_delay=0.05),
    SimModel(id=GEMMA, loaded=True, reply_tokens=4),
)


def router_config(**overrides: object) -> SimConfig:
    return SimConfig(models=ROUTER_MODELS, api="llama.cpp-router", auto_evict=False, **overrides)  # type: ignore[arg-type]


async def _router_states(sim: SimServer) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        listed = (await http.get("/v1/models")).json()
    return {m["id"]: m["status"]["value"] for m in listed["data"]}


def _by_id(listing: dict[str, object]) -> dict[str, dict[str, object]]:
    models = listing["models"]
    assert isinstance(models, list)
    return {m["id"]: m for m in models}


async def test_the_simulated_router_speaks_llama_cpps_routes() -> None:
    async with SimServer(router_config()) as sim, httpx.AsyncClient(base_url=sim.url) as http:
        listed = (await http.get("/v1/models")).json()
        native = await http.get("/api/v0/models")
        loaded_twice = await http.post("/models/load", json={"model": GEMMA})
    assert {m["id"]: m["status"]["value"] for m in listed["data"]} == {QWEN: "unloaded", GEMMA: "loaded"}
    assert native.status_code == 404
    assert loaded_twice.status_code == 400
    assert loaded_twice.json()["error"]["message"] == "model is already loaded"


async def test_load_state_comes_from_the_routers_listing() -> None:
    async with connected(router_config()) as (client, _sim):
        listing = await client.call_tool("list_models", {})
    models = _by_id(data(listing))
    assert (models[GEMMA]["loaded"], models[QWEN]["loaded"]) == (True, False)
    (server,) = data(listing)["servers"]
    assert server["loaded"] == [GEMMA]
    assert "1 loaded" in text(listing)


async def test_a_model_loaded_on_first_use_reads_as_loaded_and_becomes_the_default() -> None:
    """Regression: after a model served requests the bridge said "loaded: null", "0 loaded", "none is loaded"."""
    models = (ROUTER_MODELS[0], SimModel(id=GEMMA, loaded=False, reply_tokens=4))
    async with connected(SimConfig(models=models, api="llama.cpp-router", auto_evict=False)) as (client, _sim):
        first = await client.call_tool("chat_completion", {"prompt": "hi", "model": QWEN, "max_tokens": 4})
        listing = await client.call_tool("list_models", {"refresh": True})
        current = await client.call_tool("get_current_model", {})
        default = await client.call_tool("chat_completion", {"prompt": "hi", "max_tokens": 4})
    assert not first.is_error, text(first)
    assert (_by_id(data(listing))[QWEN]["loaded"], _by_id(data(listing))[GEMMA]["loaded"]) == (True, False)
    assert data(listing)["servers"][0]["loaded"] == [QWEN]
    assert data(current)["model"] == QWEN
    assert not default.is_error, text(default)


async def test_load_and_unload_go_through_the_router() -> None:
    async with connected(router_config()) as (client, sim):
        loaded = await client.call_tool("load_model", {"model": QWEN})
        after_load = await _router_states(sim)
        unloaded = await client.call_tool("unload_model", {"model": GEMMA})
        after_unload = await _router_states(sim)
        again = await client.call_tool("unload_model", {"model": GEMMA})
    assert not loaded.is_error, text(loaded)
    assert data(loaded)["model"] == QWEN
    assert after_load == {QWEN: "loaded", GEMMA: "loaded"}
    assert not unloaded.is_error, text(unloaded)
    assert after_unload == {QWEN: "loaded", GEMMA: "unloaded"}
    assert_error(again, "bad_request")
    assert "not loaded" in text(again)


async def test_a_server_that_does_not_report_load_state_says_unknown_not_zero() -> None:
    """llama.cpp with one model, vLLM, llama-cpp-python: /v1/models has no load state (the sim's api="openai")."""
    async with connected(_plain_openai_config()) as (client, _sim):
        listing = await client.call_tool("list_models", {})
        loading = await client.call_tool("load_model", {"model": QWEN})
    (server,) = data(listing)["servers"]
    assert server.get("loaded") is None
    assert "load state unknown" in text(listing)
    assert "0 loaded" not in text(listing)
    assert_error(loading, "unsupported")


def _plain_openai_config() -> SimConfig:
    return SimConfig(models=ROUTER_MODELS, api="openai", auto_evict=False)


async def test_a_load_that_outlasts_the_call_says_it_goes_on() -> None:
    slow = (SimModel(id=QWEN, loaded=False, jit_load_delay=60.0), ROUTER_MODELS[1])
    config = SimConfig(models=slow, api="llama.cpp-router", auto_evict=False)
    async with connected(config, call_budget=1.0) as (client, _sim):
        loading = await client.call_tool("load_model", {"model": QWEN})
        listing = await client.call_tool("list_models", {"refresh": True})
    fields = assert_error(loading, "timeout")
    assert fields["retryable"] is True
    assert "still loading" in text(loading)
    assert _by_id(data(listing))[QWEN]["load_state"] == "loading"
    assert "loading" in text(listing)
