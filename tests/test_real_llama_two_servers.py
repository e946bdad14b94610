"""The same GGUF on two real llama.cpp servers (xllamacpp) with different ``-np``: the bridge learns each
server's slots from its ``/props`` and sends the model's calls to both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from bridge.app import open_bridge
from bridge.llm import ChatMessage
from bridge.messages import Chat, ChatResult, GetStatus, ListModels
from bridge.settings import BridgeSettings, ServerSettings
from tests.peers import LlamaServer, running_llama_server


@pytest.fixture(scope="module")
def second_llama_server(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A second llama.cpp server with the session server's model and alias, but three slots (``-np 3``)."""
    with running_llama_server(
        smollm2_gguf, tmp_path_factory.mktemp("llama-second"), n_parallel=3, n_ctx=3 * 1024, embeddings=False
    ) as server:
        yield server


async def test_slots_learnt_from_props_and_calls_on_both(
    llama_server: LlamaServer, second_llama_server: LlamaServer
) -> None:
    assert llama_server.model == second_llama_server.model
    settings = BridgeSettings(
        servers=[
            ServerSettings(url=llama_server.base_url, name="np2"),
            ServerSettings(url=second_llama_server.base_url, name="np3"),
        ],
        listing_timeout=10.0,
    )
    results: list[ChatResult] = []

    async def one(n: int) -> None:
        chat = Chat(model=llama_server.model, messages=[ChatMessage(role="user", content=f"Say {n}.")], max_tokens=4)
        results.append(await bridge.registry.ask(chat, timeout=120.0))

    async with open_bridge(settings, child_servers=False) as bridge:
        listed = await bridge.registry.ask(ListModels(refresh=True))
        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(one, n)
        status = await bridge.registry.ask(GetStatus())
    [entry] = [m for m in listed.models if m.id == llama_server.model]
    assert [(c.server, c.slots, c.source) for c in entry.capacity] == [("np2", 2, "server"), ("np3", 3, "server")]
    assert len(results) == 10
    assert {r.server for r in results} == {"np2", "np3"}
    [worker] = [w for w in status.models if w.model == llama_server.model]
    assert worker.slots == 5
