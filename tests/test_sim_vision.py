"""The simulator's vision models (issue 22, item 4): image parts are taken by a vision model, counted, and refused
by the others the way LM Studio refuses them; the bridge lists the capability and types the refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bridge.app import open_bridge
from bridge.errors import UnsupportedEndpointError
from bridge.llm import ChatMessage
from bridge.messages import Chat, ListModels
from bridge.settings import BridgeSettings, ServerSettings
from bridge.sim import SimServer, default_config

VL = "qwen/qwen2.5-vl-7b"
QWEN = "qwen/qwen3-coder-30b"
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def with_image(text: str) -> list[dict[str, object]]:
    return [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": PIXEL}}]


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(default_config()) as server:
        yield server


async def test_the_default_models_include_a_vision_model_listed_as_lm_studio_lists_it(sim: SimServer) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as client:
        v0 = {m["id"]: m for m in (await client.get("/api/v0/models")).json()["data"]}
        v1 = {m["key"]: m for m in (await client.get("/api/v1/models")).json()["models"]}
    assert v0[VL]["type"] == "vlm"
    assert v0[QWEN]["type"] == "llm"
    assert v1[VL]["capabilities"]["vision"] is True
    assert v1[QWEN]["capabilities"]["vision"] is False


async def test_a_vision_model_takes_image_parts_and_counts_them(sim: SimServer) -> None:
    body = {"model": VL, "messages": [{"role": "user", "content": with_image("what is this?")}]}
    async with httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
    assert sim.stats.model(VL).images == 1
    assert sim.stats.total.images == 1


async def test_a_model_without_vision_refuses_images_as_lm_studio_does(sim: SimServer) -> None:
    body = {"model": QWEN, "messages": [{"role": "user", "content": with_image("what is this?")}]}
    async with httpx.AsyncClient(base_url=sim.url) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": "Model does not support images. Please use a model that does."}
    assert sim.stats.model(QWEN).images == 0
    assert sim.stats.model(QWEN).errors == 1


async def test_the_bridge_lists_vision_and_types_the_refusal_as_unsupported(sim: SimServer) -> None:
    settings = BridgeSettings(servers=[ServerSettings(url=sim.url, name="sim")])
    async with open_bridge(settings, child_servers=False) as bridge:
        listing = await bridge.registry.ask(ListModels(), timeout=20)
        vision = {m.id: m.vision for m in listing.models}
        message = [ChatMessage(role="user", content=with_image("what is this?"))]
        seen = await bridge.registry.ask(Chat(model=VL, messages=message), timeout=30)
        with pytest.raises(UnsupportedEndpointError) as refused:
            await bridge.registry.ask(Chat(model=QWEN, messages=message), timeout=30)
    assert vision[VL] is True
    assert vision[QWEN] is False
    assert seen.content
    assert refused.value.code == "unsupported"
    assert refused.value.retryable is False
    assert "vision" in refused.value.message
    assert refused.value.details["reason"] == "images"
