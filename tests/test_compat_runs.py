"""The compat profile's autonomous tools (issue 23) through real stdio: each runs a simulated model on a real
standard child server: the one the user configured for the package, else the package started the way the older
bridge started it (``npx -y @modelcontextprotocol/server-*``; ``mcp-server-fetch`` with this interpreter where
uv is not installed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

import httpx
import msgspec
import pytest

from bridge.sim import CallTools, Say, ToolCallSpec
from bridge.sim.testing import SimProcess
from tests._stdio import call, data, sim_fixture, text
from tests.test_compat import serving

AGENT = "sim/agent"


sim = sim_fixture({"models": [{"id": AGENT, "loaded": True, "context_length": 32768}]})


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with no configuration, kept for the module (one per xdist worker): ``npx -y`` installs each
    standard server into its ``~/.npm`` once, not once per test in a fresh home (~4.7 s of CPU each time)."""
    return tmp_path_factory.mktemp("home")


async def script(sim: SimProcess, *turns: Any) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as client:
        body = {"model": AGENT, "turns": [msgspec.to_builtins(t) for t in turns]}
        (await client.post("/__sim/script", json=body)).raise_for_status()


async def tool_results(sim: SimProcess) -> list[str]:
    """What the model was told its tool calls returned, in the last request it got."""
    async with httpx.AsyncClient(base_url=sim.url) as client:
        requests = (await client.get("/__sim/requests", params={"model": AGENT})).json()
    return [str(m.get("content")) for m in requests[-1]["messages"] if m.get("role") == "tool"]


def compat_args(sim: SimProcess) -> list[str]:
    return ["--base-url", sim.url, "--default-model", AGENT, "--tools", "compat"]


async def test_filesystem_full_runs_on_the_standard_server_in_the_working_directory(
    sim: SimProcess, tmp_path: Path, errlog: TextIO, home: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("the answer is 42\n")
    await script(
        sim,
        CallTools([ToolCallSpec("read_text_file", {"path": str(project / "notes.txt")})]),
        Say("The notes say the answer is 42."),
    )
    async with serving(tmp_path, errlog, *compat_args(sim), home=home) as session:
        result = await call(
            session, "autonomous_filesystem_full", {"task": "What do the notes say?", "working_directory": "project"}
        )
        servers = await call(session, "list_available_mcps", {})
    assert not result.is_error, text(result)
    run = data(result)
    assert run["stop_reason"] == "final_answer"
    assert run["answer"] == "The notes say the answer is 42."
    (record,) = run["tool_calls"]
    assert (record["server"], record["tool"], record["ok"]) == ("filesystem", "read_text_file", True)
    listed = {s["name"]: s for s in data(servers)["servers"]}
    assert "compat tool" in listed["filesystem"]["source"]
    assert "write_file" in " ".join(run.get("withheld_tools", []))  # destructive: withheld unless allowed


async def test_root_and_missing_directories_are_refused_before_anything_starts(
    sim: SimProcess, tmp_path: Path, errlog: TextIO
) -> None:
    async with serving(tmp_path, errlog, *compat_args(sim)) as session:
        root = await call(session, "autonomous_filesystem_full", {"task": "look", "working_directory": "/"})
        missing = await call(session, "autonomous_filesystem_full", {"task": "look", "working_directory": "nope"})
        servers = await call(session, "list_available_mcps", {})
    assert root.is_error
    assert "root" in data(root)["message"]
    assert missing.is_error
    assert data(missing)["code"] == "bad_request"
    assert data(servers)["servers"] == []


async def test_working_dir_is_the_default_directory(
    sim: SimProcess, tmp_path: Path, errlog: TextIO, home: Path
) -> None:
    """WORKING_DIR, as the older bridge read it, is where the filesystem server works when a call names none."""
    work = tmp_path / "work"
    work.mkdir()
    await script(sim, CallTools([ToolCallSpec("list_allowed_directories", {})]), Say("done"))
    async with serving(tmp_path, errlog, *compat_args(sim), home=home, env={"WORKING_DIR": str(work)}) as session:
        result = await call(session, "autonomous_filesystem_full", {"task": "Where may you work?"})
        told = await tool_results(sim)
    assert not result.is_error, text(result)
    (record,) = data(result)["tool_calls"]
    assert record["ok"] is True
    assert str(work) in told[-1]


@pytest.mark.parametrize(
    ("tool", "arguments", "server", "first_call"),
    [
        ("autonomous_memory_full", {}, "memory", ToolCallSpec("read_graph", {})),
        ("autonomous_fetch_full", {}, "fetch", None),  # no network here: the server starts and offers fetch
        ("autonomous_github_full", {"github_token": "ghp_not_a_real_token"}, "github", None),
    ],
)
async def test_each_standard_server_runs_a_task(
    sim: SimProcess,
    tmp_path: Path,
    errlog: TextIO,
    home: Path,
    tool: str,
    arguments: dict[str, Any],
    server: str,
    first_call: ToolCallSpec | None,
) -> None:
    turns: list[Any] = [CallTools([first_call])] if first_call is not None else []
    await script(sim, *turns, Say("finished"))
    async with serving(tmp_path, errlog, *compat_args(sim), home=home) as session:
        result = await call(session, tool, {"task": "Do the thing.", "max_rounds": 10_000, **arguments})
        servers = await call(session, "list_available_mcps", {})
    assert not result.is_error, text(result)
    run = data(result)
    assert run["stop_reason"] == "final_answer"
    assert run["servers"] == [server]
    assert [c["ok"] for c in run["tool_calls"]] == ([True] if first_call is not None else [])
    listed = {s["name"]: s for s in data(servers)["servers"]}
    assert listed[server]["state"] == "ready"
    assert listed[server]["tool_count"] > 0


async def test_a_configured_server_for_the_package_is_used_instead_of_a_new_one(
    sim: SimProcess, tmp_path: Path, errlog: TextIO
) -> None:
    mcp = {"mcpServers": {"my-memory": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"]}}}
    (tmp_path / ".mcp.json").write_text(json.dumps(mcp))
    await script(sim, CallTools([ToolCallSpec("read_graph", {})]), Say("finished"))
    async with serving(tmp_path, errlog, *compat_args(sim)) as session:
        result = await call(session, "autonomous_memory_full", {"task": "What do you remember?"})
        servers = await call(session, "list_available_mcps", {})
    assert not result.is_error, text(result)
    assert data(result)["servers"] == ["my-memory"]
    assert [s["name"] for s in data(servers)["servers"]] == ["my-memory"]


async def test_a_persistent_session_runs_its_tasks_in_order_and_reports_each(
    sim: SimProcess, tmp_path: Path, errlog: TextIO, home: Path
) -> None:
    """Two tasks in order, the second in a subdirectory that the first task's server covers (no second server
    starts); a task naming a directory that does not exist is refused before its series starts."""
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "sub" / "a.txt").write_text("alpha")
    await script(
        sim,
        CallTools([ToolCallSpec("list_directory", {"path": str(project)})]),
        Say("first done"),
        CallTools([ToolCallSpec("read_text_file", {"path": str(project / "sub" / "a.txt")})]),
        Say("second done"),
    )
    tasks = ["List the project.", {"task": "Read a.txt.", "working_directory": "project/sub"}]
    async with serving(tmp_path, errlog, *compat_args(sim), home=home) as session:
        result = await call(session, "autonomous_persistent_session", {"tasks": tasks, "initial_directory": "project"})
        refused = await call(
            session,
            "autonomous_persistent_session",
            {"tasks": [{"task": "x", "working_directory": "missing"}], "initial_directory": "project"},
        )
        servers = await call(session, "list_available_mcps", {})
    assert not result.is_error, text(result)
    results = data(result)["results"]
    assert [r["answer"] for r in results] == ["first done", "second done"]
    assert [r["ok"] for r in results] == [True, True]
    assert "## task 1: List the project." in text(result)
    assert refused.is_error
    assert [s["name"] for s in data(servers)["servers"]] == ["filesystem"]
