"""Context length against the real llama.cpp server started with a 512-token context (issue 22): an oversized
prompt is refused before anything is sent; one that fits, with max_tokens omitted, is given the room left and
completes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.app import open_bridge
from bridge.errors import ContextOverflowError
from bridge.llm import ChatMessage
from bridge.messages import Chat, ListModels
from bridge.settings import BridgeSettings, ServerSettings
from tests.peers import LlamaServer, running_llama_server


@pytest.fixture(scope="module")
def small_llama(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    with running_llama_server(
        smollm2_gguf, tmp_path_factory.mktemp("llama-512"), n_ctx=512, n_parallel=1, embeddings=False
    ) as server:
        yield server


async def test_the_context_length_is_llamas_and_an_oversized_prompt_is_refused_before_sending(
    small_llama: LlamaServer,
) -> None:
    settings = BridgeSettings(servers=[ServerSettings(url=small_llama.base_url, name="llama")])
    async with open_bridge(settings, child_servers=False) as bridge:
        listing = await bridge.registry.ask(ListModels(refresh=True), timeout=30)
        context = {m.id: m.context_length for m in listing.models}
        sources = {m.id: m.sources for m in listing.models}
        seeing = {m.id: m.vision for m in listing.models}
        with pytest.raises(ContextOverflowError) as caught:
            await bridge.registry.ask(
                Chat(model=small_llama.model, messages=[ChatMessage(role="user", content="story " * 1000)]),
                timeout=60,
            )
        fits = await bridge.registry.ask(
            Chat(model=small_llama.model, messages=[ChatMessage(role="user", content="Say hello.")], temperature=0),
            timeout=120,
        )
    assert context[small_llama.model] == 512
    assert sources[small_llama.model] == {
        "context_length": "llama.cpp /v1/models meta.n_ctx",
        "vision": "llama.cpp /props modalities",  # SmolLM2 runs without a projector: not a vision model
    }
    assert seeing[small_llama.model] is False
    assert caught.value.details["sent"] is False
    assert caught.value.details["context_length"] == 512
    assert fits.finish_reason in ("stop", "length")
    assert fits.content


async def test_a_prompt_the_estimate_lets_through_is_counted_by_llamas_tokenizer_and_refused_before_sending(
    small_llama: LlamaServer,
) -> None:
    """2,400 digits are at least 400 tokens by the estimate, so it lets them through; SmolLM2's tokenizer makes
    each digit a token, so llama.cpp's own count refuses them before anything is sent."""
    settings = BridgeSettings(servers=[ServerSettings(url=small_llama.base_url, name="llama")])
    digits = "".join(str(i % 10) for i in range(2400))
    async with open_bridge(settings, child_servers=False) as bridge:
        with pytest.raises(ContextOverflowError) as caught:
            await bridge.registry.ask(
                Chat(model=small_llama.model, messages=[ChatMessage(role="user", content=digits)], max_tokens=8),
                timeout=60,
            )
    assert caught.value.details["sent"] is False
    assert caught.value.details["counted_by_server"] is True
    assert caught.value.details["estimated_prompt_tokens"] > 2400
