"""The LLM path through the actors against a real llama.cpp server (xllamacpp + SmolLM2-135M).

llama.cpp has no LM Studio native API, so these also show the bridge degrading cleanly: the model list
comes from /v1/models and the single listed model is the default.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from bridge.app import open_bridge
from bridge.errors import ModelNotFoundError
from bridge.llm import ChatMessage
from bridge.messages import Chat, Complete, Embed, ListModels, Progress, ResolveModel, Respond
from bridge.settings import BridgeSettings, ServerSettings


def settings(server: Any) -> BridgeSettings:
    return BridgeSettings(servers=[ServerSettings(url=server.base_url, name="llama")], listing_timeout=10.0)


async def test_real_server_lists_and_defaults_to_its_model(llama_server: Any) -> None:
    """Without a native API, /v1/models is used and its one model is the default."""
    async with open_bridge(settings(llama_server), child_servers=False) as bridge:
        listed = await bridge.registry.ask(ListModels())
        assert llama_server.model in {m.id for m in listed.models}
        assert listed.servers[0].lmstudio_native_api is False
        assert listed.servers[0].reachable is True
        default = await bridge.registry.ask(ResolveModel(model=None))
        assert default.id == llama_server.model
        with pytest.raises(ModelNotFoundError):
            await bridge.registry.ask(ResolveModel(model="no-such-model"))


async def test_real_server_chat_completion_embeddings_and_responses(llama_server: Any) -> None:
    """Every kind of work reaches the real server through the actors and comes back typed."""
    async with open_bridge(settings(llama_server), child_servers=False) as bridge:
        seen: list[str] = []

        async def on_progress(progress: Progress) -> None:
            seen.append(progress.stage)

        chat = await bridge.registry.ask(
            Chat(messages=[ChatMessage(role="user", content="Say hi.")], max_tokens=12, temperature=0, seed=1),
            progress=on_progress,
        )
        assert chat.model
        assert chat.tokens > 0
        assert chat.time_to_first_token_s is not None
        assert "first_token" in seen
        completion = await bridge.registry.ask(Complete(prompt="The sky is", max_tokens=8, temperature=0))
        assert completion.text
        embedded = await bridge.registry.ask(Embed(model=llama_server.model, input=["a cat", "a dog"]))
        assert len(embedded.vectors) == 2
        assert embedded.dimensions > 0
        response = await bridge.registry.ask(Respond(input="Say hi.", max_output_tokens=12))
        assert response.content


async def test_real_server_cancellation_returns_promptly(llama_server: Any) -> None:
    """A cancelled long generation on the real server ends the call and leaves the bridge serving."""
    async with open_bridge(settings(llama_server), child_servers=False) as bridge:
        first = anyio.Event()

        async def on_progress(progress: Progress) -> None:
            if progress.stage == "first_token":
                first.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: bridge.registry.ask(
                    Chat(messages=[ChatMessage(role="user", content="Write a long story.")], max_tokens=2000),
                    progress=on_progress,
                )
            )
            await first.wait()
            tg.cancel_scope.cancel()
        again = await bridge.registry.ask(Chat(messages=[ChatMessage(role="user", content="hi")], max_tokens=4))
        assert again.tokens > 0
