"""``task_count`` on both backends, and the task count in ``bridge_status``."""

from __future__ import annotations

import anyio
from mcp import Client

from bridge._diagnostics import task_count
from bridge.app import open_bridge
from bridge.frontend._format import status_output
from bridge.messages import BridgeStatus, ServerState
from bridge.settings import BridgeSettings, ServerSettings
from bridge.sim import SimConfig, SimModel, SimServer
from tests._util import eventually, mcp_server


async def test_task_count_follows_the_tasks_of_a_task_group() -> None:
    before = task_count()
    assert before >= 1
    k = 5
    started = 0

    async def sleeper() -> None:
        nonlocal started
        started += 1
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        for _ in range(k):
            tg.start_soon(sleeper)
        await eventually(lambda: started == k)
        during = task_count()
        tg.cancel_scope.cancel()
    assert during == before + k
    assert task_count() == before


def test_status_output_shows_the_task_count_only_when_given() -> None:
    reply = BridgeStatus(models=[], servers=[ServerState(name="sim", url="http://127.0.0.1:1")])
    with_tasks = status_output(reply, tasks=42)
    assert with_tasks.structured["process"] == {"tasks": 42}
    assert "Process: 42 tasks" in with_tasks.text
    without = status_output(reply)
    assert "process" not in without.structured
    assert "Process:" not in without.text


async def test_bridge_status_reports_the_live_task_count() -> None:
    config = SimConfig(models=(SimModel(id="diag/model", loaded=True, reply_tokens=2),))
    async with SimServer(config) as sim:
        settings = BridgeSettings(servers=[ServerSettings(url=sim.url, name="sim")], call_budget=30.0)
        async with (
            open_bridge(settings, child_servers=False) as bridge,
            Client(mcp_server(bridge), mode="legacy") as client,
        ):
            with anyio.fail_after(30):
                result = await client.call_tool("bridge_status", {})
    assert not result.is_error
    assert result.structured_content is not None
    tasks = result.structured_content["process"]["tasks"]
    assert isinstance(tasks, int)
    assert tasks > 0
