"""What each model can take, with where each figure came from (issue 22): LM Studio's native API, llama.cpp's
/v1/models and /props, or the configuration where the server says nothing. Against the simulator in each of its
server modes, through the registry and through list_models."""

from __future__ import annotations

from typing import Literal

import pytest
from mcp import Client

from bridge.app import open_bridge
from bridge.errors import ContextOverflowError, UnsupportedEndpointError
from bridge.llm import ChatMessage
from bridge.messages import Chat, ListModels, ModelEntry
from bridge.settings import BridgeSettings, ModelLimits, ServerSettings
from bridge.sim import SimConfig, SimModel, SimServer
from tests._util import mcp_server
from tests.test_frontend import data, text

SEES = SimModel(id="sees/vl", loaded=True, vision=True, context_length=4096, max_context_length=32768)
BLIND = SimModel(id="blind/text", loaded=False, context_length=4096, max_context_length=8192)
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def _settings(url: str, **models: ModelLimits) -> BridgeSettings:
    return BridgeSettings(servers=[ServerSettings(url=url, name="sim")], models=models, listing_timeout=2.0)


async def _listed(
    api: Literal["lmstudio", "openai", "llama.cpp"], models: tuple[SimModel, ...], **limits: ModelLimits
) -> dict[str, ModelEntry]:
    async with (
        SimServer(SimConfig(models=models, api=api)) as sim,
        open_bridge(_settings(sim.url, **limits), child_servers=False) as bridge,
    ):
        listing = await bridge.registry.ask(ListModels(refresh=True), timeout=10)
    return {m.id: m for m in listing.models}


async def test_lm_studio_says_context_vision_and_tool_use() -> None:
    listed = await _listed("lmstudio", (SEES, BLIND))
    sees, blind = listed[SEES.id], listed[BLIND.id]
    assert (sees.vision, blind.vision) == (True, False)
    assert sees.sources["vision"] == "LM Studio /api/v1/models capabilities"
    assert sees.sources["tool_use"] == "LM Studio /api/v1/models capabilities"
    assert (sees.context_length, sees.sources["context_length"]) == (4096, "LM Studio /api/v1/models, loaded instance")
    assert (blind.context_length, blind.sources["context_length"]) == (
        8192,
        "LM Studio /api/v1/models, maximum: not loaded",
    )


@pytest.mark.parametrize("vision", [True, False])
async def test_llama_cpp_says_its_context_in_the_listing_and_its_vision_in_props(vision: bool) -> None:
    model = SimModel(id="one/model", loaded=True, vision=vision, context_length=2048, max_context_length=8192)
    entry = (await _listed("llama.cpp", (model,)))[model.id]
    assert (entry.context_length, entry.sources["context_length"]) == (2048, "llama.cpp /v1/models meta.n_ctx")
    assert (entry.vision, entry.sources["vision"]) == (vision, "llama.cpp /props modalities")
    assert "tool_use" not in entry.sources


async def test_a_server_that_says_nothing_takes_the_configured_context_and_it_is_enforced() -> None:
    model = SimModel(id="plain/model", loaded=True, context_length=1024)
    limits = {model.id: ModelLimits(context_length=1024)}
    async with (
        SimServer(SimConfig(models=(model,), api="openai")) as sim,
        open_bridge(_settings(sim.url, **limits), child_servers=False) as bridge,
    ):
        entry = (await bridge.registry.ask(ListModels(refresh=True), timeout=10)).models[0]
        with pytest.raises(ContextOverflowError) as caught:
            await bridge.registry.ask(Chat(model=model.id, messages=[ChatMessage(role="user", content="w " * 5000)]))
        sent = sim.requests(model.id)
    assert entry.context_length == 1024
    assert entry.sources == {"context_length": f'configuration, [models."{model.id}"] context_length'}
    assert entry.vision is None
    assert caught.value.details["context_length"] == 1024
    assert sent == []


async def test_what_the_server_reports_comes_before_the_configuration() -> None:
    entry = (await _listed("lmstudio", (SEES,), **{SEES.id: ModelLimits(context_length=999)}))[SEES.id]
    assert entry.context_length == 4096
    assert entry.sources["context_length"].startswith("LM Studio")


async def test_unknown_stays_unknown_and_says_no_source() -> None:
    entry = (await _listed("openai", (SimModel(id="plain/model", loaded=True),)))["plain/model"]
    assert (entry.context_length, entry.vision, entry.tool_use) == (None, None, None)
    assert entry.sources == {}


async def test_llama_cpp_without_a_projector_refuses_images_before_sending() -> None:
    model = SimModel(id="one/model", loaded=True, vision=False)
    async with (
        SimServer(SimConfig(models=(model,), api="llama.cpp")) as sim,
        open_bridge(_settings(sim.url), child_servers=False) as bridge,
    ):
        parts: list[dict[str, object]] = [
            {"type": "text", "text": "what is it?"},
            {"type": "image_url", "image_url": {"url": PIXEL}},
        ]
        with pytest.raises(UnsupportedEndpointError) as caught:
            await bridge.registry.ask(Chat(model=model.id, messages=[ChatMessage(role="user", content=parts)]))
        sent = sim.requests(model.id)
    assert caught.value.details["reason"] == "images"
    assert sent == []


async def test_list_models_shows_each_capability_with_where_it_came_from() -> None:
    async with (
        SimServer(SimConfig(models=(SEES, BLIND))) as sim,
        open_bridge(_settings(sim.url), child_servers=False) as bridge,
        Client(mcp_server(bridge), mode="legacy") as client,
    ):
        result = await client.call_tool("list_models", {})
    assert not result.is_error
    assert "context 4096 (LM Studio /api/v1/models, loaded instance)" in text(result)
    assert "vision (LM Studio /api/v1/models capabilities)" in text(result)
    entries = {m["id"]: m for m in data(result)["models"]}
    assert entries[SEES.id]["sources"]["vision"] == "LM Studio /api/v1/models capabilities"
