"""Shared mode as Claude Code meets it: ``serve --shared`` relays, started as real processes through the MCP
SDK's stdio client, attached to one shared bridge (a real detached ``daemon`` process) in a private runtime
directory of the test's own, against the simulator in another process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from bridge.errors import ConfigError
from bridge.shared import shared_paths
from bridge.sim.testing import SimProcess
from tests import _stdio
from tests._stdio import INITIALIZED, call, clean_env, data, drain, initialize, send, sim_fixture, stdio_session
from tests._stdio import sim_stats as stats_of
from tests._util import eventually, eventually_async
from tests.test_frontend_stdio import LONG_CALL, QWEN, SLOW

JIT = "jit/model"
FAIR = "one/slot"

SIM_CONFIG = {
    "models": [
        {"id": QWEN, "loaded": True, "reply_tokens": 6},
        {"id": SLOW, "loaded": True, "ttft": 0.05, "tokens_per_s": 40, "reply_tokens": 2000},
        {"id": JIT, "loaded": False, "reply_tokens": 20, "tokens_per_s": 200, "jit_load_delay": 0.3},
        {"id": FAIR, "loaded": True, "reply_tokens": 10, "tokens_per_s": 100},
    ],
    "auto_evict": False,
    "duplicate_jit_loads": True,
}


sim = sim_fixture(SIM_CONFIG)


class SharedHome:
    """A user of the test's own: home, config and runtime directory (short: socket paths are limited)."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lb-", dir="/tmp"))
        self.env = clean_env(tmp_path)
        self.env["XDG_RUNTIME_DIR"] = str(self.root)
        self.env.pop("TMPDIR", None)
        self.errlog = open(tmp_path / "relay-stderr.log", "w", encoding="utf-8")  # noqa: SIM115

    @property
    def runtime(self) -> Path:
        return self.root / "lmstudio-bridge"

    def sockets(self) -> list[Path]:
        return sorted(self.runtime.glob("*.sock")) if self.runtime.exists() else []

    def args(self, url: str, *extra: str) -> list[str]:
        """The relay, on the test's event loop: the bridge it starts runs on the same one."""
        return _stdio.serve_args(url, "--shared", *extra)

    @asynccontextmanager
    async def session(self, url: str, *extra: str, cwd: Path | None = None) -> AsyncIterator[ClientSession]:
        params = StdioServerParameters(
            command=sys.executable, args=self.args(url, *extra), env=self.env, cwd=str(cwd) if cwd else None
        )
        async with (
            stdio_client(params, errlog=self.errlog) as (read, write),
            ClientSession(read, write, read_timeout_seconds=60) as session,
        ):
            with anyio.fail_after(60):
                await session.initialize()
            yield session

    def daemon(self, url: str, action: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridge", "daemon", action, "--base-url", url, "--json", *extra],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def status(self, url: str, *extra: str) -> dict[str, Any] | None:
        done = self.daemon(url, "status", *extra)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def pids(self) -> list[int]:
        """The pids of every shared bridge in this runtime directory, asked over each socket."""
        import socket as _socket

        pids = []
        for path in self.sockets():
            with _socket.socket(_socket.AF_UNIX) as s:
                try:
                    s.settimeout(10)
                    s.connect(str(path))
                    s.sendall(b'{"kind":"status"}\n')
                    pids.append(json.loads(s.makefile("rb").readline())["pid"])
                except OSError:
                    continue
        return pids

    def cleanup(self) -> list[int]:
        """Stop every bridge still running (by pid); the pids that had to be stopped."""
        left = self.pids()
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.errlog.close()
        shutil.rmtree(self.root, ignore_errors=True)
        return left


@pytest.fixture
def home(tmp_path: Path) -> Iterator[SharedHome]:
    shared = SharedHome(tmp_path)
    yield shared
    logs = "\n".join(p.read_text() for p in shared.runtime.glob("*.log")) if shared.runtime.exists() else ""
    left = shared.cleanup()
    assert left == [], f"a shared bridge was still running after the test; its log:\n{logs}"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def stop_daemon(home: SharedHome, url: str, *extra: str) -> None:
    """``daemon stop``, then wait for the process to be gone: nothing left behind."""
    status = home.status(url, *extra)
    assert status is not None
    assert home.daemon(url, "stop", *extra).returncode == 0
    await eventually(lambda: not alive(status["pid"]), within=15)


# --------------------------------------------------------------------------- one bridge, many sessions


async def test_ten_relays_started_at_once_share_one_bridge(sim: SimProcess, home: SharedHome) -> None:
    """Ten sessions start at the same instant with no bridge running: exactly one shared bridge starts, and all
    ten are its sessions."""
    replies = []
    statuses: list[dict[str, Any] | None] = []
    all_called = anyio.Event()

    async def one_session() -> None:
        # Each session opens, calls, and stays attached until all ten have called.
        async with home.session(sim.url) as session:
            replies.append(await call(session, "chat_completion", {"prompt": "hi", "model": QWEN}))
            if len(replies) == 10:
                statuses.append(home.status(sim.url))
                all_called.set()
            await all_called.wait()

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(one_session)
    assert [r.is_error for r in replies] == [False] * 10
    assert len(home.sockets()) == 1
    status = statuses[0]
    assert status is not None
    assert len(status["sessions"]) == 10
    assert len({s["pid"] for s in status["sessions"]}) == 10
    log = next(home.runtime.glob("*.log")).read_text()
    assert log.count("serving on") == 1
    await stop_daemon(home, sim.url)


async def test_a_job_outlives_its_session_and_any_session_of_the_user_fetches_it(
    sim: SimProcess, home: SharedHome
) -> None:
    """Issue 21: jobs belong to the shared bridge, not to the session that started them."""
    async with home.session(sim.url) as first:
        quick = data(await call(first, "chat_completion", {"prompt": "hi", "model": QWEN, "background": True}))
        slow = data(await call(first, "chat_completion", {"prompt": "long", "model": SLOW, "background": True}))
    async with home.session(sim.url) as second:
        done = await call(second, "job_result", {"job_id": quick["job_id"], "wait_s": 20})
        running = data(await call(second, "job_status", {"job_id": slow["job_id"]}))
        listing = data(await call(second, "list_jobs", {}))
        cancelled = data(await call(second, "cancel_job", {"job_id": slow["job_id"]}))
    assert not done.is_error
    assert data(done)["content"]
    assert data(done)["model"] == QWEN
    assert running["state"] in ("queued", "running")
    assert {quick["job_id"], slow["job_id"]} <= {j["job_id"] for j in listing["jobs"]}
    assert cancelled["state"] == "cancelled"
    await stop_daemon(home, sim.url)


async def test_sessions_share_the_models_slots_and_its_single_jit_load(sim: SimProcess, home: SharedHome) -> None:
    """Three sessions send 8 calls each at a 4-slot model that is not loaded: the simulator never has a request
    waiting in its own queue (the shared bridge sends at most 4) and loads the model once, although it would load
    duplicates for concurrent first requests."""
    async with AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(home.session(sim.url)) for _ in range(3)]
        results = []
        async with anyio.create_task_group() as tg:
            for session in sessions:
                for n in range(8):

                    async def ask(session: ClientSession = session, n: int = n) -> None:
                        results.append(await call(session, "chat_completion", {"prompt": f"p{n}", "model": JIT}))

                    tg.start_soon(ask)
        assert [r.is_error for r in results] == [False] * 24
        model = (await stats_of(sim))["models"][JIT]
        assert model["max_queued"] == 0
        assert model["max_generating"] == 4
        assert model["loads"] == 1
    await stop_daemon(home, sim.url)


async def test_different_settings_get_different_bridges(sim: SimProcess, home: SharedHome) -> None:
    """A relay whose settings differ (here the call budget) never shares a bridge with other settings."""
    async with home.session(sim.url) as first, home.session(sim.url, "--call-budget", "40") as second:
        assert not (await call(first, "chat_completion", {"prompt": "a", "model": QWEN})).is_error
        assert not (await call(second, "chat_completion", {"prompt": "b", "model": QWEN})).is_error
        assert len(home.sockets()) == 2
        one, other = home.status(sim.url), home.status(sim.url, "--call-budget", "40")
        assert one is not None
        assert other is not None
        assert one["pid"] != other["pid"]
        assert one["name"] != other["name"]
    await stop_daemon(home, sim.url)
    await stop_daemon(home, sim.url, "--call-budget", "40")


async def test_the_shared_bridge_exits_when_idle(sim: SimProcess, home: SharedHome) -> None:
    """With no session left for ``--idle-exit`` seconds, the bridge exits and removes its socket."""
    async with home.session(sim.url, "--idle-exit", "0.5") as session:
        assert not (await call(session, "chat_completion", {"prompt": "a", "model": QWEN})).is_error
        status = home.status(sim.url, "--idle-exit", "0.5")
        assert status is not None
    await eventually(lambda: not alive(status["pid"]), within=20)
    assert home.sockets() == []


async def test_an_idle_shared_bridge_waits_for_the_jobs_a_session_left_running(
    sim: SimProcess, home: SharedHome
) -> None:
    """The only session ends with a background job streaming: the bridge stays past idle_exit until the job
    has finished (the stream completes, nothing is cut), then exits."""
    async with home.session(sim.url, "--idle-exit", "0.2") as session:
        ticket = await call(
            session, "chat_completion", {"prompt": "a", "model": SLOW, "max_tokens": 80, "background": True}
        )
        assert not ticket.is_error
        status = home.status(sim.url, "--idle-exit", "0.2")
        assert status is not None

    async def finished() -> bool:
        model = (await stats_of(sim))["models"][SLOW]
        return bool(model["completed"] + model["errors"] + model["disconnects"])

    await eventually_async(finished, within=60)
    model = (await stats_of(sim))["models"][SLOW]
    await eventually(lambda: not alive(status["pid"]), within=30)
    assert (model["completed"], model["disconnects"]) == (1, 0)


async def test_daemon_status_and_stop(sim: SimProcess, home: SharedHome) -> None:
    """``daemon status`` says when none runs (exit 1); ``daemon run`` by hand serves relays; ``stop`` ends it."""
    assert home.daemon(sim.url, "status").returncode == 1
    process = await anyio.open_process(
        [sys.executable, "-m", "bridge", "daemon", "--base-url", sim.url],
        env=home.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    async with process:
        await eventually(lambda: len(home.sockets()) == 1, within=30)
        async with home.session(sim.url) as session:
            assert not (await call(session, "chat_completion", {"prompt": "a", "model": QWEN})).is_error
            status = home.status(sim.url)
            assert status is not None
            assert status["pid"] == process.pid
            assert len(status["sessions"]) == 1
            assert status["models"] == [QWEN]
        assert home.daemon(sim.url, "stop").returncode == 0
        with anyio.fail_after(15):
            assert await process.wait() == 0
    assert home.sockets() == []


async def test_a_sessions_single_call_is_not_starved_by_anothers_batch(
    sim: SimProcess, home: SharedHome, tmp_path: Path
) -> None:
    """Session A floods a one-slot model with a 12-item batch; session B's single chat then waits at most one
    service time behind A's (first come, first served would answer it after the ten queued before it)."""
    config = tmp_path / "bridge.toml"
    config.write_text(f'[models."{FAIR}"]\nslots = 1\n')
    async with home.session(sim.url, "--config", str(config)) as a, home.session(sim.url, "--config", str(config)) as b:
        done_at_b: list[int] = []
        async with anyio.create_task_group() as tg:
            batch: list[Any] = []

            async def flood() -> None:
                prompts = [f"item {n}" for n in range(12)]
                batch.append(await call(a, "batch_chat", {"prompts": prompts, "models": [FAIR]}))

            tg.start_soon(flood)

            async def a_queued() -> bool:
                sessions = data(await call(b, "bridge_status", {})).get("sessions", {})
                return any(load["queued"] >= 10 for load in sessions.values())

            with anyio.fail_after(30):
                while not await a_queued():
                    await anyio.sleep(0.02)
            single = await call(b, "chat_completion", {"prompt": "mine", "model": FAIR})
            done_at_b.append((await stats_of(sim))["models"][FAIR]["completed"])
            assert not single.is_error
        [result] = batch
        assert not result.is_error
    # When B asked, at most 2 of A's 12 requests were done and 10 waited. Served in turn, B is answered after the
    # one holding the slot and at most one more of A's (a few more may finish while B's call travels): about 5
    # done, B's own included. First come, first served would answer B after all of A's: 13.
    assert done_at_b[0] <= 8, f"B was answered when the model had done {done_at_b[0]} requests"
    await stop_daemon(home, sim.url, "--config", str(config))


# --------------------------------------------------------------------------- the relay behaves like serve


async def test_progress_and_cancellation_through_the_relay(sim: SimProcess, home: SharedHome) -> None:
    """Progress notifications come through the relay, and a cancelled call closes the LLM stream in the bridge."""
    async with home.session(sim.url) as session:
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        async with anyio.create_task_group() as tg:

            async def long_call() -> None:
                await session.call_tool(
                    "chat_completion", {"prompt": "long", "model": SLOW}, progress_callback=on_progress
                )

            tg.start_soon(long_call)
            await eventually(lambda: len(progress) >= 2, within=30)
            tg.cancel_scope.cancel()

        async def stream_closed() -> bool:
            model = (await stats_of(sim))["models"][SLOW]
            return bool(model["disconnects"] == 1 and model["in_progress"] == 0)

        with anyio.fail_after(30):
            while not await stream_closed():
                await anyio.sleep(0.02)
        status = data(await call(session, "bridge_status", {}))
        worker = next(m for m in status["models"] if m["model"] == SLOW)
        assert worker["in_flight"] == 0
    await stop_daemon(home, sim.url)


async def test_stdin_eof_ends_the_relay_and_its_session(sim: SimProcess, home: SharedHome) -> None:
    """Closing the relay's stdin mid-call: the relay exits 0, the bridge closes the call's LLM stream and forgets
    the session, and keeps running for others."""
    process = await anyio.open_process(
        [sys.executable, *home.args(sim.url)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=home.env
    )
    async with process:
        buffer = bytearray()
        await initialize(process, buffer)
        await send(process, INITIALIZED, LONG_CALL)

        async def generating() -> bool:
            return bool((await stats_of(sim))["models"][SLOW]["generating"] == 1)

        with anyio.fail_after(30):
            while not await generating():
                await anyio.sleep(0.02)
        assert process.stdin is not None
        await process.stdin.aclose()
        with anyio.fail_after(10):
            await drain(process.stdout)
            assert await process.wait() == 0
    model = (await stats_of(sim))["models"][SLOW]
    assert model["disconnects"] == 1
    status = home.status(sim.url)
    assert status is not None
    assert status["sessions"] == []
    await stop_daemon(home, sim.url)


async def test_each_session_sees_its_own_child_servers(sim: SimProcess, home: SharedHome, tmp_path: Path) -> None:
    """Two sessions in two project directories: each lists the child servers of its own ``./.mcp.json``."""
    projects = []
    for name in ("alpha", "beta"):
        project = tmp_path / name
        project.mkdir()
        server = {"command": sys.executable, "args": ["-c", "pass"]}
        (project / ".mcp.json").write_text(json.dumps({"mcpServers": {f"{name}-tools": server}}))
        projects.append(project)
    home_args = [a for a in home.args(sim.url) if a != "--no-child-servers"]
    assert "--no-child-servers" not in home_args
    listed = []
    for project in projects:
        params = StdioServerParameters(command=sys.executable, args=home_args, env=home.env, cwd=str(project))
        async with stdio_session(params, home.errlog) as session:
            listing = data(await call(session, "list_available_mcps", {}))
            listed.append(sorted(s["name"] for s in listing["servers"]))
    assert listed == [["alpha-tools"], ["beta-tools"]]
    await stop_daemon(home, sim.url)


async def test_each_session_has_its_own_tool_profile_on_one_shared_bridge(sim: SimProcess, home: SharedHome) -> None:
    """--tools is the session's: a compat session and a default one attach to the same shared bridge, and each
    sees its own tools."""
    async with home.session(sim.url) as lean, home.session(sim.url, "--tools", "compat") as compat:
        lean_tools = {t.name for t in (await lean.list_tools()).tools}
        compat_tools = {t.name for t in (await compat.list_tools()).tools}
        loaded = await call(compat, "lms_list_loaded_models", {})
    assert len(home.pids()) == 1
    assert "lms_list_loaded_models" not in lean_tools
    assert compat_tools - lean_tools >= {"lms_list_loaded_models", "vision_analyze", "autonomous_filesystem_full"}
    assert not loaded.is_error
    await stop_daemon(home, sim.url)


# --------------------------------------------------------------------------- the private directory


def test_a_runtime_directory_open_to_others_is_refused(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    (runtime / "lmstudio-bridge").mkdir(parents=True)
    (runtime / "lmstudio-bridge").chmod(0o755)
    with pytest.raises(ConfigError, match="not a private directory"):
        shared_paths("bridge-x", {"XDG_RUNTIME_DIR": str(runtime)})


def test_the_runtime_directory_is_created_private(home: SharedHome) -> None:
    paths = shared_paths("bridge-x", {"XDG_RUNTIME_DIR": str(home.root)})
    assert paths.socket.parent == home.root / "lmstudio-bridge"
    assert (paths.socket.parent.stat().st_mode & 0o777) == 0o700


def test_without_xdg_runtime_dir_a_directory_named_for_the_uid_is_used(home: SharedHome) -> None:
    paths = shared_paths("bridge-x", {"TMPDIR": str(home.root)})
    assert paths.directory == home.root / f"lmstudio-bridge-{os.getuid()}"


def test_a_socket_path_too_long_for_unix_sockets_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90)
    with pytest.raises(ConfigError, match="shorter directory"):
        shared_paths("bridge-x", {"XDG_RUNTIME_DIR": str(deep)})


# --------------------------------------------------------------------------- a bridge that dies


async def test_a_killed_bridge_is_replaced_without_a_new_handshake(sim: SimProcess, home: SharedHome) -> None:
    """SIGKILL the shared bridge mid-call: the call in flight gets ``bridge_restarted`` (retryable), a new bridge
    starts, and the same client session goes on working: the relay replays the handshake itself."""
    async with home.session(sim.url) as session:
        assert not (await call(session, "chat_completion", {"prompt": "a", "model": QWEN})).is_error
        first = home.status(sim.url)
        assert first is not None
        results = []
        async with anyio.create_task_group() as tg:

            async def long_call() -> None:
                results.append(await call(session, "chat_completion", {"prompt": "long", "model": SLOW}))

            tg.start_soon(long_call)

            async def generating() -> bool:
                return bool((await stats_of(sim))["models"][SLOW]["generating"] == 1)

            with anyio.fail_after(30):
                while not await generating():
                    await anyio.sleep(0.02)
            os.kill(first["pid"], signal.SIGKILL)
        [killed] = results
        assert killed.is_error
        assert data(killed)["code"] == "bridge_restarted"
        assert data(killed)["retryable"] is True
        after = await call(session, "chat_completion", {"prompt": "b", "model": QWEN})
        assert not after.is_error, after
        second = home.status(sim.url)
        assert second is not None
        assert second["pid"] != first["pid"]
        assert len(second["sessions"]) == 1
    await stop_daemon(home, sim.url)


def test_the_relay_answers_calls_in_flight_and_replays_the_handshake() -> None:
    """The relay's bookkeeping alone: what is in flight, what a new bridge is told, what the client gets."""
    from bridge.errors import BridgeRestartedError
    from bridge.shared._relay import Conversation

    conversation = Conversation()
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
    for message in (
        init,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "chat_completion"}},
        {"jsonrpc": "2.0", "id": "two", "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "x"}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}},
    ):
        conversation.upstream(json.dumps(message).encode() + b"\n")
    assert conversation.downstream(b'{"jsonrpc":"2.0","id":0,"result":{}}\n')
    assert sorted(map(str, conversation.in_flight)) == ["1", "two"]
    replayed = [json.loads(line) for line in conversation.replay()]
    assert replayed[0]["method"] == "initialize"
    assert replayed[0]["params"] == init["params"]
    assert replayed[1] == {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert not conversation.downstream(json.dumps({"jsonrpc": "2.0", "id": replayed[0]["id"], "result": {}}).encode())
    answers = {a["id"]: a for a in map(json.loads, conversation.abandon(BridgeRestartedError("gone")))}
    assert answers[1]["result"]["isError"] is True
    assert answers[1]["result"]["structuredContent"]["code"] == "bridge_restarted"
    assert answers["two"]["error"]["data"]["code"] == "bridge_restarted"
    assert conversation.in_flight == {}


async def test_a_sessions_children_run_in_its_directory_with_its_environment(
    sim: SimProcess, home: SharedHome, tmp_path: Path
) -> None:
    """Two sessions of one shared bridge, with different environments: each session's child server starts in
    that session's directory from that session's environment, not from the bridge's (the first session's).
    A child inherits only the variables it names, so the probe passes SESSION_MARK through."""
    probe = "import os; open('seen.txt', 'w').write(os.environ.get('SESSION_MARK', '-'))"
    args = [a for a in home.args(sim.url) if a != "--no-child-servers"]
    approved = {str(tmp_path / name): {"enabledMcpjsonServers": ["probe"]} for name in ("alpha", "beta")}
    (Path(home.env["HOME"]) / ".claude.json").write_text(
        json.dumps({"projects": approved})
    )  # as Claude Code records it
    for name in ("alpha", "beta"):
        project = tmp_path / name
        project.mkdir()
        server = {"command": sys.executable, "args": ["-c", probe], "eager": True, "env_passthrough": ["SESSION_MARK"]}
        (project / ".mcp.json").write_text(json.dumps({"mcpServers": {"probe": server}}))
        env = {**home.env, "SESSION_MARK": name}
        params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(project))
        async with stdio_session(params, home.errlog):
            await eventually(lambda project=project: (project / "seen.txt").exists(), within=30)
    assert (tmp_path / "alpha" / "seen.txt").read_text() == "alpha"
    assert (tmp_path / "beta" / "seen.txt").read_text() == "beta"
    await stop_daemon(home, sim.url)
