"""OTP-style supervision on anyio task groups.

A :class:`Supervisor` runs children — actors, or other supervisors — each in
its own slot. A slot owns the child's mailbox and address, so an address stays
valid while the child restarts. The strategy is one_for_one: a crashed child is
restarted alone, with fresh state, according to its restart policy:

=============  ==========================================================
``permanent``  always restarted (it should never stop by itself)
``transient``  restarted only after a crash; a normal exit removes it
``temporary``  never restarted; it is removed when it exits either way
=============  ==========================================================

Restart intensity bounds the damage: more than ``intensity`` restarts within
``period`` seconds and the supervisor gives up — it stops all its children and
fails with :class:`RestartIntensityError`, which its own supervisor sees as a
crash of one child. Shutdown is orderly: children stop in reverse start order,
each with a grace period to finish in-flight work, then cancellation.

Usage::

    async with open_supervisor("root", children=[ChildSpec("registry", ModelRegistryActor)]) as sup:
        registry = sup.lookup("registry")
        workers = await sup.start_child(SupervisorSpec("workers", intensity=10, period=1.0))
        await workers.start_child(ChildSpec("qwen", lambda: LLMWorkerActor(...)))
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar, final, overload

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from bridge.runtime._actor import Actor
from bridge.runtime._message import Message
from bridge.runtime._ref import ActorRef, ChildState, Mailbox
from bridge.runtime.errors import ActorUnavailableError, single_cause

__all__ = [
    "ChildAlreadyStartedError",
    "ChildInfo",
    "ChildSpec",
    "RestartIntensityError",
    "RestartPolicy",
    "Supervisor",
    "SupervisorRef",
    "SupervisorSpec",
    "open_supervisor",
]

log = logging.getLogger("bridge.runtime.supervisor")

M = TypeVar("M", bound=Message)


class RestartPolicy(enum.StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


@final
@dataclass(frozen=True, slots=True)
class ChildSpec(Generic[M]):
    """How to run one actor.

    Args:
        name: Unique among the supervisor's children; the key in its address book.
        start: Builds a fresh incarnation; called again for every restart.
        restart: When the child is restarted (see the module docstring).
        mailbox_size: Messages that may wait before senders are made to wait.
        ask_timeout: Default deadline, in seconds, of ``ask`` on this child's address.
        shutdown_grace: Seconds in-flight work gets on an orderly stop (``None``: the actor's own).
    """

    name: str
    start: Callable[[], Actor[M]]
    restart: RestartPolicy = RestartPolicy.PERMANENT
    mailbox_size: int = 64
    ask_timeout: float = 30.0
    shutdown_grace: float | None = None


@final
@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    """How to run a nested supervisor; ``children`` are started in order on every (re)start."""

    name: str
    children: Sequence[ChildSpec[Any] | SupervisorSpec] = ()
    intensity: int = 3
    period: float = 5.0
    restart: RestartPolicy = RestartPolicy.PERMANENT
    shutdown_grace: float = 10.0


class RestartIntensityError(ActorUnavailableError):
    """A supervisor restarted its children too often and gave up."""


class ChildAlreadyStartedError(RuntimeError):
    """``start_child`` was given a name the supervisor already has."""


class ChildInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One row of :meth:`Supervisor.which_children`."""

    name: str
    kind: str
    state: str
    restart: str
    restarts: int
    queued: int = 0
    in_flight: int = 0


Ref: TypeAlias = "ActorRef[Any] | SupervisorRef"


class _Slot:
    """One child's place in a supervisor: spec, mailbox, address, current incarnation.

    Strictly private.
    """

    __slots__ = ("current", "done", "mailbox", "ref", "restarts", "scope", "spec", "state", "stopping")

    def __init__(self, spec: ChildSpec[Any] | SupervisorSpec) -> None:
        self.spec = spec
        self.current: Actor[Any] | Supervisor | None = None
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self.stopping = False
        self.restarts = 0
        self.state = ChildState.STARTING
        self.mailbox: Mailbox[Any] | None
        self.ref: Ref
        if isinstance(spec, ChildSpec):
            self.mailbox = Mailbox(spec.name, spec.mailbox_size)
            self.ref = ActorRef(self.mailbox, default_timeout=spec.ask_timeout)
        else:
            self.mailbox = None
            self.ref = SupervisorRef(self)

    def set_state(self, state: ChildState) -> None:
        self.state = state
        if self.mailbox is not None:
            self.mailbox.state = state
            self.mailbox.restarts = self.restarts

    def info(self) -> ChildInfo:
        current = self.current
        return ChildInfo(
            name=self.spec.name,
            kind="actor" if self.mailbox is not None else "supervisor",
            state=self.state.value,
            restart=self.spec.restart.value,
            restarts=self.restarts,
            queued=self.mailbox.queued() if self.mailbox is not None else 0,
            in_flight=current.in_flight if isinstance(current, Actor) else 0,
        )


class _StartedRelay:
    """Passes the first ``started()`` of a slot's first incarnation on to ``start_child``."""

    __slots__ = ("_outer", "_slot", "fired", "is_first")

    def __init__(self, slot: _Slot, outer: TaskStatus[Any] | None) -> None:
        self._slot = slot
        self._outer = outer
        self.is_first = outer is not None
        self.fired = False

    def started(self, value: object = None) -> None:
        self.fired = True
        self._slot.set_state(ChildState.RUNNING)
        if self._outer is not None:
            outer, self._outer = self._outer, None
            outer.started(self._slot.ref)


@final
class SupervisorRef:
    """A stable address of a nested supervisor; valid across its restarts.

    Caution: created by the supervisor; do not instantiate directly.
    """

    __slots__ = ("_slot",)

    def __init__(self, slot: _Slot) -> None:
        self._slot = slot

    @property
    def name(self) -> str:
        return self._slot.spec.name

    def _current(self) -> Supervisor:
        current = self._slot.current
        if not isinstance(current, Supervisor) or self._slot.state is not ChildState.RUNNING:
            raise ActorUnavailableError(
                f"supervisor {self.name!r} is {self._slot.state.value}; retry shortly",
                retryable=self._slot.state in (ChildState.STARTING, ChildState.RESTARTING),
                retry_after=0.01,
                details={"supervisor": self.name, "state": self._slot.state.value},
            )
        return current

    @property
    def supervisor(self) -> Supervisor:
        """The running incarnation (raises ``ActorUnavailableError`` while restarting)."""
        return self._current()

    @overload
    async def start_child(self, spec: ChildSpec[M], *, exist_ok: bool = False) -> ActorRef[M]: ...
    @overload
    async def start_child(self, spec: SupervisorSpec, *, exist_ok: bool = False) -> SupervisorRef: ...
    async def start_child(self, spec: ChildSpec[Any] | SupervisorSpec, *, exist_ok: bool = False) -> Ref:
        return await self._current().start_child(spec, exist_ok=exist_ok)

    async def stop_child(self, name: str) -> None:
        await self._current().stop_child(name)

    def lookup(self, path: str) -> Ref | None:
        try:
            return self._current().lookup(path)
        except ActorUnavailableError:
            return None

    def which_children(self) -> list[ChildInfo]:
        return self._current().which_children()


_R = TypeVar("_R", ActorRef[Any], SupervisorRef)


class Supervisor:
    """A one_for_one supervisor. Run it with :func:`open_supervisor` or as a child via :class:`SupervisorSpec`.

    Args:
        name: For logs and errors.
        children: Started in order when the supervisor starts (and restarts).
        intensity: Restarts allowed within ``period`` seconds; one more and the supervisor fails.
        period: The window, in seconds, for ``intensity``.
        shutdown_grace: Default grace for children that do not set their own.
    """

    def __init__(
        self,
        name: str = "root",
        *,
        children: Sequence[ChildSpec[Any] | SupervisorSpec] = (),
        intensity: int = 3,
        period: float = 5.0,
        shutdown_grace: float = 10.0,
    ) -> None:
        if intensity < 0 or period <= 0:
            raise ValueError(f"need intensity >= 0 and period > 0, got intensity={intensity}, period={period}")
        self.name = name
        self.intensity = intensity
        self.period = period
        self.shutdown_grace = shutdown_grace
        self._initial = list(children)
        self._slots: dict[str, _Slot] = {}
        self._order: list[str] = []
        self._restart_times: deque[float] = deque()
        self._task_group: TaskGroup | None = None
        self._stop = anyio.Event()
        self._failure: RestartIntensityError | None = None
        self._running = False

    @classmethod
    def from_spec(cls, spec: SupervisorSpec) -> Supervisor:
        return cls(
            spec.name,
            children=spec.children,
            intensity=spec.intensity,
            period=spec.period,
            shutdown_grace=spec.shutdown_grace,
        )

    # --- the address book ----------------------------------------------------
    @property
    def address_book(self) -> dict[str, Ref]:
        """A snapshot of name -> address of the direct children."""
        return {name: slot.ref for name, slot in self._slots.items()}

    def lookup(self, path: str) -> Ref | None:
        """The address of a child, or of a descendant by ``"child/grandchild"`` path."""
        head, _, rest = path.partition("/")
        slot = self._slots.get(head)
        if slot is None:
            return None
        if not rest:
            return slot.ref
        if isinstance(slot.ref, SupervisorRef):
            return slot.ref.lookup(rest)
        return None

    def actor(self, path: str) -> ActorRef[Any]:
        """The address of the actor at ``path``; ``ActorUnavailableError`` if there is none."""
        return self._lookup_as(path, ActorRef, "actor")

    def child_supervisor(self, path: str) -> SupervisorRef:
        """The address of the nested supervisor at ``path``; ``ActorUnavailableError`` if there is none."""
        return self._lookup_as(path, SupervisorRef, "nested supervisor")

    def _lookup_as(self, path: str, kind: type[_R], what: str) -> _R:
        ref = self.lookup(path)
        if not isinstance(ref, kind):
            raise ActorUnavailableError(
                f"supervisor {self.name!r} has no {what} at {path!r}; children: {sorted(self._slots)}",
                details={"supervisor": self.name, "path": path},
            )
        return ref

    def which_children(self) -> list[ChildInfo]:
        return [self._slots[name].info() for name in self._order if name in self._slots]

    # --- running ---------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the initial children, serve until stopped, then stop them in reverse order."""
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            try:
                for spec in self._initial:
                    await self.start_child(spec)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._stop_all()
                raise
            self._running = True
            task_status.started()
            try:
                await self._stop.wait()
            finally:
                self._running = False
                with anyio.CancelScope(shield=True):
                    await self._stop_all()
        if self._failure is not None:
            raise self._failure

    def request_stop(self) -> None:
        """Begin an orderly shutdown."""
        self._stop.set()

    @overload
    async def start_child(self, spec: ChildSpec[M], *, exist_ok: bool = False) -> ActorRef[M]: ...
    @overload
    async def start_child(self, spec: SupervisorSpec, *, exist_ok: bool = False) -> SupervisorRef: ...
    async def start_child(self, spec: ChildSpec[Any] | SupervisorSpec, *, exist_ok: bool = False) -> Ref:
        """Start a child and return its address once it has started.

        Raises:
            ChildAlreadyStartedError: the name is taken (unless ``exist_ok``, which returns that address).
            Exception: whatever the child's start raised; it is not restarted then.
        """
        if self._task_group is None or self._stop.is_set():
            raise ActorUnavailableError(
                f"supervisor {self.name!r} is not running, so it cannot start {spec.name!r}",
                details={"supervisor": self.name},
            )
        existing = self._slots.get(spec.name)
        if existing is not None:
            if exist_ok:
                return existing.ref
            raise ChildAlreadyStartedError(
                f"supervisor {self.name!r} already has a child named {spec.name!r}; "
                "stop it first or pass exist_ok=True to get its address"
            )
        slot = _Slot(spec)
        self._slots[spec.name] = slot
        self._order.append(spec.name)
        ref: Ref = await self._task_group.start(self._run_slot, slot, name=f"{self.name}/{spec.name}")
        return ref

    async def stop_child(self, name: str) -> None:
        """Stop a child in order (grace, then cancellation) and remove it; no-op if absent."""
        slot = self._slots.get(name)
        if slot is not None:
            await self._stop_slot(slot)

    async def _run_slot(self, slot: _Slot, *, task_status: TaskStatus[Ref]) -> None:
        first = _StartedRelay(slot, task_status)
        try:
            with slot.scope:
                relay = first
                while True:
                    crash = await self._run_incarnation(slot, relay)
                    if slot.stopping or not self._should_restart(slot, crash) or not self._note_restart(slot):
                        break
                    slot.restarts += 1
                    slot.set_state(ChildState.RESTARTING)
                    log.warning("%s/%s: restart %d", self.name, slot.spec.name, slot.restarts)
                    relay = _StartedRelay(slot, None)
        finally:
            self._remove(slot)
        if not first.fired:
            # Stopped before it ever started: start_child still gets an address, now closed.
            task_status.started(slot.ref)

    async def _run_incarnation(self, slot: _Slot, relay: _StartedRelay) -> Exception | None:
        spec = slot.spec
        try:
            if isinstance(spec, ChildSpec):
                actor = spec.start()
                if spec.shutdown_grace is not None:
                    actor.shutdown_grace = spec.shutdown_grace
                slot.current = actor
                if slot.stopping:
                    actor.request_stop()
                assert slot.mailbox is not None
                assert isinstance(slot.ref, ActorRef)
                await actor.serve(slot.ref, slot.mailbox.inbox, task_status=relay)
            else:
                child = Supervisor.from_spec(spec)
                slot.current = child
                if slot.stopping:
                    child.request_stop()
                await child.run(task_status=relay)
        except Exception as exc:
            if not relay.fired and relay.is_first:
                # The first start failed: start_child's caller gets the error itself, not task-group wrapping.
                cause = single_cause(exc)
                if cause is exc:
                    raise
                raise cause from exc
            log.exception("%s/%s crashed", self.name, spec.name, exc_info=exc)
            return exc
        finally:
            slot.current = None
        return None

    def _should_restart(self, slot: _Slot, crash: Exception | None) -> bool:
        policy = slot.spec.restart
        if policy is RestartPolicy.PERMANENT:
            return True
        if policy is RestartPolicy.TRANSIENT:
            return crash is not None
        return False

    def _note_restart(self, slot: _Slot) -> bool:
        """Record a restart; False (and the supervisor fails) when intensity is exceeded."""
        now = anyio.current_time()
        times = self._restart_times
        while times and times[0] <= now - self.period:
            times.popleft()
        if len(times) >= self.intensity:
            self._failure = RestartIntensityError(
                f"supervisor {self.name!r} gave up: more than {self.intensity} restarts within {self.period:g} s "
                f"(last: {slot.spec.name!r}); it stopped its children and escalates to its own supervisor",
                details={"supervisor": self.name, "child": slot.spec.name},
            )
            log.error("%s", self._failure.message)
            slot.set_state(ChildState.FAILED)
            self._stop.set()
            return False
        times.append(now)
        return True

    def _remove(self, slot: _Slot) -> None:
        if slot.state is not ChildState.FAILED:
            slot.set_state(ChildState.STOPPED)
        if self._slots.get(slot.spec.name) is slot:
            del self._slots[slot.spec.name]
            self._order.remove(slot.spec.name)
        if slot.mailbox is not None:
            slot.mailbox.close()
        slot.done.set()

    async def _stop_slot(self, slot: _Slot) -> None:
        spec = slot.spec
        grace = spec.shutdown_grace if spec.shutdown_grace is not None else self.shutdown_grace
        slot.stopping = True
        if slot.state is not ChildState.FAILED:
            slot.set_state(ChildState.STOPPING)
        if slot.current is not None:
            slot.current.request_stop()
        with anyio.move_on_after(grace):
            await slot.done.wait()
        if not slot.done.is_set():
            log.warning("%s/%s did not stop within %g s; cancelling it", self.name, spec.name, grace)
            slot.scope.cancel()
            await slot.done.wait()

    async def _stop_all(self) -> None:
        for name in reversed(list(self._order)):
            slot = self._slots.get(name)
            if slot is not None:
                await self._stop_slot(slot)


@asynccontextmanager
async def open_supervisor(
    name: str = "root",
    *,
    children: Sequence[ChildSpec[Any] | SupervisorSpec] = (),
    intensity: int = 3,
    period: float = 5.0,
    shutdown_grace: float = 10.0,
) -> AsyncIterator[Supervisor]:
    """Run a root supervisor for the body of the ``async with``; shut it down in order on exit.

    If the supervisor gives up (restart intensity exceeded) the body is cancelled and
    :class:`RestartIntensityError` is raised from the ``async with``.
    """
    supervisor = Supervisor(name, children=children, intensity=intensity, period=period, shutdown_grace=shutdown_grace)
    try:
        async with anyio.create_task_group() as task_group:
            await task_group.start(supervisor.run)
            try:
                yield supervisor
            finally:
                supervisor.request_stop()
    except BaseExceptionGroup as group:
        cause = single_cause(group)
        if cause is not group and isinstance(cause, Exception):
            raise cause from None
        raise
