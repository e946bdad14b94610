"""The runtime's contract under failure: fail fast, the right error, no proxying.

Each test here failed on the code before its fix (issue 15, items 1-7), on both backends.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from bridge.actors.child_servers import ChildServersActor
from bridge.actors.registry import ModelRegistryActor
from bridge.actors.worker import LLMWorkerActor
from bridge.app import open_bridge
from bridge.errors import (
    ActorCrashedError,
    BadRequestError,
    CircuitOpenError,
    LLMConnectionError,
    ModelUnloadedError,
)
from bridge.llm import Budgets
from bridge.messages import (
    BridgeStatus,
    Chat,
    ChatResult,
    ChildToolResult,
    GetStatus,
    ListChildServers,
    ModelEntry,
    Progress,
    Reply,
    Request,
    ResolveModel,
    WorkerStats,
)
from bridge.runtime import Actor, ActorRef, ChildSpec, RequestContext, open_supervisor
from bridge.settings import BreakerSettings, BridgeSettings, ModelLimits, RetrySettings, ServerSettings
from bridge.sim import Fault, FaultKind, SimModel, SimServer
from tests._util import free_port
from tests.test_child_servers import GATE_SERVER, child_servers
from tests.test_frontend import connected, data
from tests.test_llm_path import GEMMA, QWEN, running, settings_for, sim_config, user

# --- 1. an open breaker answers at once ------------------------------------------------------------


async def test_open_breaker_answers_at_once_instead_of_waiting_out_its_cooldown() -> None:
    """While the breaker is open a call is not retried after the cooldown: it gets ``backend_unavailable`` now.

    Before: the breaker's error carried the remaining cooldown as ``retry_after``, and the retry
    loop slept through it and tried the dead server again (4.8-6.0 s a call).
    """
    port = free_port()
    settings = settings_for(
        f"http://127.0.0.1:{port}",
        breaker=BreakerSettings(failures=1, cooldown=3.0),
        retry=RetrySettings(attempts=3, wait_initial=0.01, wait_max=10.0),
        budgets=Budgets(connect=1.0),
        model_cache_ttl=600.0,
    )
    async with open_bridge(settings, child_servers=False) as bridge:
        async with SimServer(sim_config(port=port)):
            await bridge.registry.ask(ResolveModel(model=QWEN))  # the cache knows the model; then the server dies
        with pytest.raises(LLMConnectionError):
            await bridge.registry.ask(Chat(model=QWEN, messages=user("x")))  # refused: the breaker opens
        before = await _worker_stats(bridge, QWEN)
        assert before is not None
        progress: list[Progress] = []

        async def sink(report: Progress) -> None:
            progress.append(report)

        with pytest.raises(CircuitOpenError) as info:
            await bridge.registry.ask(Chat(model=QWEN, messages=user("x")), progress=sink)
        after = await _worker_stats(bridge, QWEN)
        assert after is not None
    error = info.value
    assert error.code == "backend_unavailable"
    assert error.retryable
    assert error.retry_after is not None
    assert 0.0 < error.retry_after <= 3.0
    assert error.details["breaker"] == "open"
    assert after.retries == before.retries, "an open breaker must not be waited out and retried"
    assert not [p for p in progress if p.stage in ("retry", "queued")], progress


# --- 2. the default model right after a JIT load -----------------------------------------------------


async def test_default_model_is_found_right_after_a_jit_load() -> None:
    """Two models, neither loaded; a named call loads one; a call without a model then uses it."""
    config = sim_config(models=(SimModel(id=QWEN, reply_tokens=4), SimModel(id=GEMMA, reply_tokens=4)))
    async with running(config, model_cache_ttl=600.0) as (_, bridge):
        with pytest.raises(BadRequestError, match="no default"):
            await bridge.registry.ask(Chat(messages=user("which one?")))
        first = await bridge.registry.ask(Chat(model=GEMMA, messages=user("hello")))
        assert first.content
        default = await bridge.registry.ask(Chat(messages=user("and again")))
    assert default.model == GEMMA


# --- 3 and 4. what counts as a crash ----------------------------------------------------------------


class Echo(Reply, frozen=True):
    text: str


class FailInGroup(Request[Echo], frozen=True, tag="fail_in_group"):
    """Fail with typed errors raised inside the handler's own task group."""

    errors: int = 1


class Wait(Request[Echo], frozen=True, tag="wait"):
    """Wait until the test releases it."""


class CrashInBackground(Request[Echo], frozen=True, tag="crash_in_background"):
    """Make the actor's background task raise."""


GroupMessage = FailInGroup | Wait | CrashInBackground


class GroupActor(Actor[GroupMessage]):
    def __init__(self, entered: anyio.Event, release: anyio.Event) -> None:
        super().__init__()
        self.entered = entered
        self.release = release
        self.crash_now = anyio.Event()

    async def on_start(self) -> None:
        self.start_background(self._watch, name="watch")

    async def _watch(self) -> None:
        await self.crash_now.wait()
        raise RuntimeError("the background task broke")

    async def handle(self, message: GroupMessage, ctx: RequestContext) -> object:
        match message:
            case FailInGroup(errors=errors):

                async def fail(i: int) -> None:
                    raise BadRequestError(f"item {i} is wrong")

                async with anyio.create_task_group() as tg:
                    for i in range(errors):
                        tg.start_soon(fail, i)
                return Echo(text="unreachable")
            case Wait():
                self.entered.set()
                await self.release.wait()
                return Echo(text="released")
            case CrashInBackground():
                self.crash_now.set()
                await anyio.sleep_forever()
        raise AssertionError(message)


@asynccontextmanager
async def group_actor() -> AsyncIterator[tuple[ActorRef[GroupMessage], anyio.Event, anyio.Event]]:
    """A running GroupActor; the events a ``Wait`` sets when it has entered and waits on to finish."""
    entered, release = anyio.Event(), anyio.Event()
    async with open_supervisor("t") as sup:
        yield await sup.start_child(ChildSpec("group", lambda: GroupActor(entered, release))), entered, release


@pytest.mark.parametrize("errors", [1, 3])
async def test_typed_errors_from_a_handlers_task_group_are_an_answer_not_a_crash(errors: int) -> None:
    """The asker gets the ``BridgeError``; the actor's other requests and its restart count are untouched."""
    async with group_actor() as (ref, entered, release):
        async with anyio.create_task_group() as tg:
            waited: list[Echo] = []

            async def wait() -> None:
                waited.append(await ref.ask(Wait()))

            tg.start_soon(wait)
            await entered.wait()
            with pytest.raises(BadRequestError, match="is wrong") as info:
                await ref.ask(FailInGroup(errors=errors))
            release.set()
        assert waited == [Echo(text="released")]
        assert ref.restarts == 0
    if errors > 1:
        assert len(info.value.details["other_errors"]) == errors - 1


async def test_a_crashed_background_task_fails_requests_in_flight_as_actor_crashed() -> None:
    """Background failures take the crash path: ``actor_crashed`` (retryable), not "shutdown grace ran out"."""
    async with group_actor() as (ref, entered, _):
        async with anyio.create_task_group() as tg:
            failures: list[BaseException] = []

            async def wait() -> None:
                try:
                    await ref.ask(Wait())
                except ActorCrashedError as exc:
                    failures.append(exc)

            tg.start_soon(wait)
            await entered.wait()
            with pytest.raises(ActorCrashedError):
                await ref.ask(CrashInBackground())
        assert len(failures) == 1
        assert failures[0].retryable  # type: ignore[attr-defined]
        assert "background" in str(failures[0])


# --- 5. the registry and the child-servers actor hand requests on ----------------------------------


async def test_a_registry_crash_does_not_touch_a_generation_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker answers the caller directly, so the registry can crash and restart mid-generation."""
    config = sim_config(models=(SimModel(id=QWEN, loaded=True, reply_tokens=6),))
    async with running(config) as (sim, bridge):
        sim.script(QWEN, [Fault(kind=FaultKind.STALL, seconds=1.0, after_tokens=2)])
        first_token = anyio.Event()

        async def sink(report: Progress) -> None:
            if report.stage == "first_token":
                first_token.set()

        results: list[ChatResult] = []
        async with anyio.create_task_group() as tg:

            async def chat() -> None:
                results.append(await bridge.registry.ask(Chat(model=QWEN, messages=user("long")), progress=sink))

            tg.start_soon(chat)
            await first_token.wait()  # generating: the stream is stalled after two tokens

            async def crash(self: ModelRegistryActor) -> object:
                raise RuntimeError("a bug in a registry handler")

            monkeypatch.setattr(ModelRegistryActor, "_status", crash)
            with pytest.raises(ActorCrashedError):
                await bridge.registry.ask(GetStatus())
            monkeypatch.undo()
        assert bridge.registry.restarts == 1
        assert len(results) == 1
        assert results[0].content
        assert results[0].finish_reason == "stop"


# --- 6. a request ends only its own load turn -------------------------------------------------------


class _Context:
    """A request context for driving a worker's request path directly."""

    def __init__(self) -> None:
        self.deadline = anyio.current_time() + 30.0

    @property
    def wants_progress(self) -> bool:
        return False

    @property
    def caller(self) -> str:
        return ""

    def remaining(self) -> float:
        return self.deadline - anyio.current_time()

    async def report_progress(self, progress: Progress) -> None:
        del progress

    async def forward(self, to: Any, message: Any) -> Any:
        raise AssertionError("not used")


async def test_a_late_loader_does_not_end_the_load_turn_of_the_next_loader() -> None:
    """Unloaded mid-flight, the model gets a new load turn; the first loader finishing must not end it.

    Before: a loader ended whichever turn was current, so a third request started a second load
    beside the one under way.
    """
    settings = BridgeSettings(
        servers=[ServerSettings(url="http://127.0.0.1:9", name="sim")],
        retry=RetrySettings(attempts=1),
        default_limits=ModelLimits(slots=8, queue=8),
    )
    worker = LLMWorkerActor(
        ModelEntry(id="m", loaded=False, server="sim", servers=["sim"]),
        {"sim": object()},  # type: ignore[dict-item]  # the attempts below never touch the client
        settings,
    )
    loading = 0
    most_loading = 0
    a_generating, a_release, c_loading, c_release = (anyio.Event() for _ in range(4))

    def loads(step: Callable[[Callable[[Any], Awaitable[None]]], Awaitable[str]]) -> Any:
        async def attempt(client: object, budgets: Budgets, progress: Callable[[Any], Awaitable[None]]) -> str:
            nonlocal loading, most_loading
            cold = not worker.warm  # this attempt loads the model until its first token
            loading += cold
            most_loading = max(most_loading, loading)

            async def first_token(report: Any) -> None:
                nonlocal loading, cold
                loading -= cold
                cold = False
                await progress(report)

            try:
                return await step(first_token)
            finally:
                loading -= cold

        return attempt

    class _First:
        time_to_first_token = 0.01
        tokens = 1

    async def a(progress: Callable[[Any], Awaitable[None]]) -> str:
        await progress(_First())  # first token: the model is warm, A's turn ends
        a_generating.set()
        await a_release.wait()
        return "a"

    async def b(progress: Callable[[Any], Awaitable[None]]) -> str:
        raise ModelUnloadedError("Model unloaded.")  # evicted while A generates

    async def c(progress: Callable[[Any], Awaitable[None]]) -> str:
        c_loading.set()
        await c_release.wait()
        return "c"

    async def d(progress: Callable[[Any], Awaitable[None]]) -> str:
        return "d"

    results: dict[str, object] = {}

    async def run(name: str, step: Callable[[Callable[[Any], Awaitable[None]]], Awaitable[str]]) -> None:
        try:
            results[name], _ = await worker._run(_Context(), loads(step))
        except ModelUnloadedError as exc:
            results[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "a", a)
        await a_generating.wait()
        await run("b", b)
        assert worker.warm is False
        tg.start_soon(run, "c", c)
        await c_loading.wait()  # C loads the model again, alone
        a_release.set()  # A finishes: it must not end C's turn
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(run, "d", d)
        await anyio.wait_all_tasks_blocked()
        assert "d" not in results, "D ran while C was loading the model"
        c_release.set()
    assert most_loading == 1
    assert (results["a"], results["c"], results["d"]) == ("a", "c", "d")


# --- 7. batches wait for a slot in the worker -----------------------------------------------------


async def test_concurrent_batches_on_a_model_with_no_queue_are_never_refused_as_busy() -> None:
    """Two batches at once on a model with ``queue = 0``: every item waits its turn and succeeds.

    Before: each batch guessed the model's capacity in the front end (``slots + queue // 2``),
    so two batches together, or any model with no queue, overflowed into ``busy``.
    """
    limits = {QWEN: ModelLimits(slots=2, queue=0)}
    async with connected(models=limits) as (client, _):
        results: list[dict[str, Any]] = []

        async def batch(tag: str) -> None:
            reply = await client.call_tool(
                "batch_chat", {"prompts": [f"{tag}{i}" for i in range(12)], "models": [QWEN], "max_tokens": 4}
            )
            results.append(data(reply))

        async with anyio.create_task_group() as tg:
            tg.start_soon(batch, "a")
            tg.start_soon(batch, "b")
    assert [(r["succeeded"], r["failed"]) for r in results] == [(12, 0), (12, 0)], results


async def test_a_single_chat_beside_a_waiting_batch_still_gets_busy_past_the_queue() -> None:
    """Patient batch items do not count against the queue bound, nor do they lift it for others."""
    config = sim_config(models=(SimModel(id=QWEN, loaded=True, reply_tokens=4, tokens_per_s=50),))
    async with running(config, models={QWEN: ModelLimits(slots=1, queue=1)}) as (_, bridge):
        results: list[object] = []
        async with anyio.create_task_group() as tg:

            async def patient(i: int) -> None:
                results.append(await bridge.registry.ask(Chat(model=QWEN, messages=user(f"{i}"), wait_for_slot=True)))

            for i in range(4):
                tg.start_soon(patient, i)
            await _queued(bridge, QWEN, 3)  # one generating, three patient items waiting
            impatient = await bridge.registry.ask(Chat(model=QWEN, messages=user("me")))
            assert impatient.content
    assert len(results) == 4


async def _worker_stats(bridge: Any, model: str) -> WorkerStats | None:
    status: BridgeStatus = await bridge.registry.ask(GetStatus())
    found = [worker for worker in status.models if worker.model == model]
    return found[0] if found else None


async def _queued(bridge: Any, model: str, want: int) -> None:
    """Wait until the worker reports ``want`` queued requests (a bound on a wait, not a timing check)."""
    with anyio.fail_after(10):
        while (stats := await _worker_stats(bridge, model)) is None or stats.queued < want:
            await anyio.sleep(0.001)


async def test_a_child_servers_actor_crash_does_not_touch_a_tool_call_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session answers the caller directly, and the restarted actor adopts it, child process and all."""
    script = tmp_path / "gate_server.py"
    script.write_text(GATE_SERVER)
    gate = tmp_path / "open-the-gate"
    entry = {"command": sys.executable, "args": [str(script)]}
    async with child_servers(tmp_path, {"gated": entry}) as harness:
        assert (await harness.call("gated", "env", name="X")).text == ""
        (before,) = (await harness.servers()).values()
        results: list[ChildToolResult] = []
        async with anyio.create_task_group() as tg:

            async def held_call() -> None:
                results.append(await harness.call("gated", "gate", path=str(gate)))

            tg.start_soon(held_call)
            with anyio.fail_after(30):
                while harness.sessions.which_children()[0].in_flight != 1:
                    await anyio.sleep(0.01)

            async def crash(self: ChildServersActor, ctx: RequestContext) -> object:
                raise RuntimeError("a bug in a child-servers handler")

            monkeypatch.setattr(ChildServersActor, "_list_servers", crash)
            with pytest.raises(ActorCrashedError):
                await harness.actor.ask(ListChildServers())
            monkeypatch.undo()
            (after,) = (await harness.servers()).values()  # the new incarnation answers
            gate.touch()
        assert harness.actor.restarts == 1
        assert [r.text for r in results] == ["opened"]
        assert after.pid == before.pid, "the restarted actor must adopt the running session, not restart it"


# --- 11. what a client shows -------------------------------------------------------------------------


async def test_tool_descriptions_carry_no_source_indentation() -> None:
    """Every tool description is what a client should show: no indented lines, no wraps mid-sentence."""
    async with connected() as (client, _):
        tools = (await client.list_tools()).tools
    assert len(tools) >= 10
    for tool in tools:
        description = tool.description or ""
        assert description, tool.name
        assert "\n " not in description, (tool.name, description)
        assert not description.startswith(" "), (tool.name, description)
        for paragraph in description.split("\n\n"):
            assert "\n" not in paragraph, (tool.name, paragraph)
        assert len(description.encode()) < 2048, tool.name
