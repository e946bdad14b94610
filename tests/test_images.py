"""Images to vision models (issue 22): paths under the allowed roots, URLs only to public addresses unless
configured, base64 and data URIs, every image capped and checked; a model that cannot see is told before
anything is sent. Through the MCP client, against the simulator's vision model, on both backends."""

from __future__ import annotations

import base64
import json
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketStream
from mcp import Client
from mcp.types import CallToolResult

from bridge.app import open_bridge
from bridge.frontend._images import load_image
from bridge.settings import BridgeSettings, ChildSettings, ImageSettings, ServerSettings
from bridge.sim import SimServer, default_config
from tests._util import mcp_server
from tests.test_frontend import data

NOTES = [sys.executable, str(Path(__file__).parent / "_children" / "annotated_server.py")]
VL = "qwen/qwen2.5-vl-7b"
QWEN = "qwen/qwen3-coder-30b"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@asynccontextmanager
async def connected(root: Path, *, notes: bool = False, **images: Any) -> AsyncIterator[tuple[Client, SimServer]]:
    """A client of a bridge on the simulator's default models; with ``notes``, the notes child server too."""
    async with SimServer(default_config()) as sim:
        children = ChildSettings()
        if notes:
            path = root / "mcp.json"
            path.write_text(json.dumps({"mcpServers": {"notes": {"command": NOTES[0], "args": NOTES[1:]}}}))
            children = ChildSettings(config_paths=[str(path)], discover=False, watch=False)
        settings = BridgeSettings(
            servers=[ServerSettings(url=sim.url, name="sim")],
            images=ImageSettings(allowed_roots=[str(root)], **images),
            children=children,
        )
        async with (
            open_bridge(settings, child_servers=notes) as bridge,
            Client(mcp_server(bridge), mode="legacy") as client,
        ):
            yield client, sim


def sent_parts(sim: SimServer, model: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = sim.requests(model)[-1].messages[-1]["content"]
    return parts


async def test_a_file_under_the_root_reaches_the_vision_model_as_an_image_part(tmp_path: Path) -> None:
    (tmp_path / "pixel.png").write_bytes(PNG)
    async with connected(tmp_path) as (client, sim):
        result = await client.call_tool(
            "chat_completion", {"prompt": "what is it?", "model": VL, "images": [str(tmp_path / "pixel.png")]}
        )
        parts = sent_parts(sim, VL)
        images = sim.stats.model(VL).images
    assert not result.is_error, result
    assert parts[0] == {"type": "text", "text": "what is it?"}
    assert parts[1]["type"] == "image_url"
    assert parts[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert images == 1


async def test_relative_paths_base64_and_data_uris(tmp_path: Path) -> None:
    (tmp_path / "pixel.png").write_bytes(PNG)
    encoded = base64.b64encode(PNG * 20).decode()  # long enough to be told from a path
    images = ["pixel.png", encoded, "data:image/png;base64," + base64.b64encode(PNG).decode()]
    async with connected(tmp_path) as (client, sim):
        result = await client.call_tool("chat_completion", {"prompt": "three", "model": VL, "images": images})
        seen = sim.stats.model(VL).images
    assert not result.is_error, result
    assert seen == 3


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda root, other: str(other / "outside.png"), "outside the directories"),
        (lambda root, other: "link.png", "outside the directories"),
        (lambda root, other: "missing.png", "no such file"),
        (lambda root, other: "notes.txt", "not an image"),
        (lambda root, other: "data:image/png;base64,%%%", "base64"),
        (lambda root, other: "", "empty"),
    ],
    ids=["outside", "symlink-out", "missing", "not-an-image", "bad-data-uri", "empty"],
)
async def test_images_that_cannot_be_read_are_bad_requests_and_nothing_is_sent(
    tmp_path: Path, make: Any, fragment: str
) -> None:
    root, other = tmp_path / "root", tmp_path / "other"
    root.mkdir()
    other.mkdir()
    (other / "outside.png").write_bytes(PNG)
    (root / "link.png").symlink_to(other / "outside.png")
    (root / "notes.txt").write_text("not a picture")
    async with connected(root) as (client, sim):
        result = await client.call_tool("chat_completion", {"prompt": "x", "model": VL, "images": [make(root, other)]})
        sent = sim.requests(VL)
    assert result.is_error
    assert data(result)["code"] == "bad_request"
    assert fragment in data(result)["message"]
    assert sent == []


async def test_an_image_over_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    (tmp_path / "big.png").write_bytes(PNG + b"\0" * 5000)
    async with connected(tmp_path, max_bytes=1000) as (client, sim):
        result = await client.call_tool("chat_completion", {"prompt": "x", "model": VL, "images": ["big.png"]})
        sent = sim.requests(VL)
    assert data(result)["code"] == "bad_request"
    assert "images.max_bytes" in data(result)["message"]
    assert data(result)["details"]["bytes"] == len(PNG) + 5000
    assert sent == []


@asynccontextmanager
async def image_server(content_type: str, body: bytes) -> AsyncIterator[str]:
    """A one-route HTTP server on loopback that answers every request with ``body``."""

    async def serve(stream: SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            await stream.send(head.encode() + b"Connection: close\r\n\r\n" + body)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield f"http://127.0.0.1:{port}/pixel.png"
        tg.cancel_scope.cancel()


async def test_a_loopback_url_is_refused_unless_private_urls_are_allowed(tmp_path: Path) -> None:
    async with image_server("image/png", PNG) as url:
        async with connected(tmp_path) as (client, sim):
            refused = await client.call_tool("chat_completion", {"prompt": "x", "model": VL, "images": [url]})
            assert sim.requests(VL) == []
        async with connected(tmp_path, allow_private_urls=True) as (client, sim):
            fetched = await client.call_tool("chat_completion", {"prompt": "x", "model": VL, "images": [url]})
            images = sim.stats.model(VL).images
    assert data(refused)["code"] == "bad_request"
    assert "127.0.0.1" in data(refused)["message"]
    assert "allow_private_urls" in data(refused)["message"]
    assert not fetched.is_error, fetched
    assert images == 1


async def test_a_url_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    async with (
        image_server("text/html", b"<html></html>") as url,
        connected(tmp_path, allow_private_urls=True) as (client, sim),
    ):
        result = await client.call_tool("chat_completion", {"prompt": "x", "model": VL, "images": [url]})
        sent = sim.requests(VL)
    assert data(result)["code"] == "bad_request"
    assert "text/html" in data(result)["message"]
    assert sent == []


async def test_a_model_that_cannot_see_is_told_before_sending_with_the_vision_models(tmp_path: Path) -> None:
    (tmp_path / "pixel.png").write_bytes(PNG)
    async with connected(tmp_path) as (client, sim):
        result = await client.call_tool("chat_completion", {"prompt": "x", "model": QWEN, "images": ["pixel.png"]})
        sent = sim.requests(QWEN)
    assert result.is_error
    assert data(result)["code"] == "unsupported"
    assert VL in data(result)["message"]
    assert data(result)["details"]["vision_models"] == [VL]
    assert sent == []


async def test_batch_items_take_images(tmp_path: Path) -> None:
    (tmp_path / "pixel.png").write_bytes(PNG)
    items = [
        {"prompt": "with", "model": VL, "images": ["pixel.png"]},
        {"prompt": "without", "model": VL},
    ]
    async with connected(tmp_path) as (client, sim):
        result = await client.call_tool("batch_chat", {"items": items})
        seen = sim.stats.model(VL).images
    assert not result.is_error, result
    assert data(result)["succeeded"] == 2
    assert seen == 1


@pytest.mark.parametrize(
    ("tool", "where"),
    [
        ("autonomous_with_mcp", {"mcp_name": "notes"}),
        ("autonomous_with_multiple_mcps", {"mcp_names": ["notes"]}),
        ("autonomous_discover_and_execute", {}),
    ],
)
async def test_autonomous_runs_take_images_with_their_task(tmp_path: Path, tool: str, where: dict[str, Any]) -> None:
    """The images go with the task, in every round the model is asked; the run's answer comes back."""
    (tmp_path / "pixel.png").write_bytes(PNG)
    arguments = {**where, "task": "describe it", "model": VL, "images": ["pixel.png"]}
    async with connected(tmp_path, notes=True) as (client, sim):
        result = await client.call_tool(tool, arguments)
        parts = [r.messages[-1]["content"] for r in sim.requests(VL)]
        images = sim.stats.model(VL).images
    assert not result.is_error, result
    assert data(result)["stop_reason"] == "final_answer"
    assert parts
    assert all(p[0] == {"type": "text", "text": "describe it"} and p[1]["type"] == "image_url" for p in parts)
    assert images == len(parts)


async def autonomous_run_with_an_image(tmp_path: Path, model: str, image: str) -> tuple[CallToolResult, list[Any]]:
    """``autonomous_with_mcp`` on ``model`` with one image: its result, and the requests ``model`` got."""
    arguments = {"mcp_name": "notes", "task": "describe it", "model": model, "images": [image]}
    async with connected(tmp_path, notes=True) as (client, sim):
        result = await client.call_tool("autonomous_with_mcp", arguments)
        sent = sim.requests(model)
    return result, sent


async def test_an_autonomous_run_with_images_on_a_model_that_cannot_see_is_told_before_sending(
    tmp_path: Path,
) -> None:
    (tmp_path / "pixel.png").write_bytes(PNG)
    result, sent = await autonomous_run_with_an_image(tmp_path, QWEN, "pixel.png")
    assert result.is_error
    assert data(result)["code"] == "unsupported"
    assert sent == []


async def test_an_autonomous_run_with_an_unreadable_image_starts_nothing(tmp_path: Path) -> None:
    result, sent = await autonomous_run_with_an_image(tmp_path, VL, "missing.png")
    assert result.is_error
    assert data(result)["code"] == "bad_request"
    assert sent == []


async def test_a_url_is_fetched_from_the_address_that_was_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The name is resolved once, and the fetch goes to the checked address with the name as Host and as the TLS
    server name: a name that resolves to a private address a moment later (DNS rebinding) is never asked."""
    lookups: list[str] = []
    fetched: list[httpx.Request] = []

    async def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        lookups.append(host)
        address = "93.184.216.34" if len(lookups) == 1 else "127.0.0.1"  # the second answer would rebind
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    def answer(request: httpx.Request) -> httpx.Response:
        fetched.append(request)
        return httpx.Response(200, headers={"content-type": "image/png"}, content=PNG)

    real_client = httpx.AsyncClient

    def pinned_client(**kwargs: Any) -> httpx.AsyncClient:
        return real_client(transport=httpx.MockTransport(answer), **kwargs)

    monkeypatch.setattr(anyio, "getaddrinfo", resolve)
    monkeypatch.setattr(httpx, "AsyncClient", pinned_client)
    uri = await load_image("https://images.example:8443/p.png?size=1", roots=[], settings=ImageSettings())
    assert uri == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert lookups == ["images.example"]
    (request,) = fetched
    assert request.url.host == "93.184.216.34"
    assert request.url.port == 8443
    assert request.url.query == b"size=1"
    assert request.headers["host"] == "images.example:8443"
    assert request.extensions["sni_hostname"] == "images.example"
