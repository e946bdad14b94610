"""Model state: loaded instances, their slots and FIFO queues, JIT loading and auto-evict.

This is the part of LM Studio that decides when a request may start:

* an instance has ``parallel`` slots; requests beyond them wait in a FIFO queue;
* a request for a model with no instance JIT-loads one (after ``jit_load_delay``);
  concurrent first requests share one load, unless ``duplicate_jit_loads`` mimics
  LM Studio's race and each loads its own ``key:N`` instance;
* with ``auto_evict`` a JIT load unloads every other JIT-loaded instance, even
  mid-generation: their generations are cancelled and their queued requests
  fail, both as "Model unloaded". Manually loaded instances are never evicted;
* a request that JIT-loads a model may give it an idle ``ttl`` (seconds): the
  instance unloads once it has been idle that long.

Loads run in the server's task group, not the requester's, so a client that
leaves does not abort a load others are waiting for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from bridge.sim._config import SimConfig, SimModel
from bridge.sim._stats import SimStats

__all__ = ["Instance", "ModelNotLoaded", "ModelRegistry", "ModelUnloaded", "UnknownModel"]


class UnknownModel(Exception):
    """No downloaded model (or loaded instance) has this identifier."""

    def __init__(self, identifier: str, available: list[str]) -> None:
        super().__init__(identifier)
        self.identifier = identifier
        self.available = available


class ModelNotLoaded(Exception):
    """JIT is off and nothing is loaded."""


class ModelUnloaded(Exception):
    """The instance serving (or about to serve) the request was unloaded."""


class _Waiter:
    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False


class Slots:
    """A FIFO semaphore: ``parallel`` holders, then a queue served in arrival order.

    Releasing hands the slot straight to the oldest waiter, so a newcomer can
    never overtake the queue. Strictly private.
    """

    __slots__ = ("_free", "_waiters", "closed")

    def __init__(self, parallel: int) -> None:
        self._free = parallel
        self._waiters: deque[_Waiter] = deque()
        self.closed = False

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def free(self) -> int:
        return self._free

    def try_acquire(self) -> bool:
        if self.closed:
            raise ModelUnloaded
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Queue until a slot is handed over; raises :class:`ModelUnloaded` if the instance goes first."""
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self.release()  # handed a slot while being cancelled: pass it on
            elif waiter in self._waiters:  # not already dropped by close()
                self._waiters.remove(waiter)
            raise
        if not waiter.granted:
            raise ModelUnloaded

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not self.closed:
                waiter.granted = True
                waiter.event.set()
                return
        self._free += 1

    def close(self) -> None:
        """Fail every queued request (the instance is gone)."""
        self.closed = True
        while self._waiters:
            self._waiters.popleft().event.set()


@dataclass(eq=False, slots=True)
class Instance:
    """One loaded copy of a model (``key`` or ``key:N``)."""

    id: str
    spec: SimModel
    context_length: int
    jit: bool
    slots: Slots
    loaded_at: float
    ttl: float | None = None
    last_used: float = 0.0
    active: set[anyio.CancelScope] = field(default_factory=set)
    unloaded: bool = False

    @property
    def busy(self) -> int:
        return self.spec.parallel - self.slots.free + self.slots.queued


@dataclass(slots=True)
class _Load:
    instance_id: str
    done: anyio.Event = field(default_factory=anyio.Event)


class ServerTurns:
    """The whole server's generation turns (``SimConfig.server_parallel``), and who holds them, oldest first.

    Each generation holding one is known by its model and the event that interrupts it
    (``SimConfig.interrupt_requests``); a listing holding one (``SimConfig.listing_takes_turn``) cannot be cut.
    """

    __slots__ = ("holders", "interrupting", "slots")

    def __init__(self, parallel: int, *, interrupting: bool) -> None:
        self.slots = Slots(parallel)
        self.holders: list[tuple[str, anyio.Event]] = []
        self.interrupting = interrupting


class ModelRegistry:
    """Downloaded models and their loaded instances. Strictly private: the server owns one."""

    def __init__(self, config: SimConfig, stats: SimStats, task_group: TaskGroup) -> None:
        self._config = config
        self._stats = stats
        self._tg = task_group
        self.server_turns = (
            ServerTurns(config.server_parallel, interrupting=config.interrupt_requests)
            if config.server_parallel is not None
            else None
        )
        self.specs: dict[str, SimModel] = {m.id: m for m in config.models}
        self._instances: dict[str, list[Instance]] = {m.id: [] for m in config.models}
        self._loads: dict[str, list[_Load]] = {m.id: [] for m in config.models}
        for spec in config.models:
            if spec.loaded:
                self._add(spec, self._next_instance_id(spec.id), spec.context_length, jit=False)

    # --- lookup -----------------------------------------------------------------
    def resolve(self, identifier: str) -> tuple[SimModel, str | None]:
        """The model an identifier names, and the instance id if it names one (``key:2``).

        ``@quant`` suffixes are accepted and ignored.
        """
        name = identifier.split("@", 1)[0]
        spec = self.specs.get(name)
        if spec is not None:
            return spec, None
        key, sep, _ = name.rpartition(":")
        if sep and key in self.specs and any(i.id == name for i in self._instances[key]):
            return self.specs[key], name
        raise UnknownModel(identifier, self.listed_ids())

    def listed_ids(self) -> list[str]:
        """What ``/v1/models`` lists: every model with JIT on, only loaded instances with it off."""
        ids: list[str] = []
        for spec in self.specs.values():
            loaded = [i.id for i in self._instances[spec.id]]
            if self._config.jit:
                ids.append(spec.id)
                ids.extend(i for i in loaded if i != spec.id)
            else:
                ids.extend(loaded)
        return ids

    def loading(self, model_id: str) -> bool:
        """Whether a load of this model is under way."""
        return bool(self._loads.get(model_id))

    def start_load(self, spec: SimModel) -> None:
        """Begin a manual load and return at once (llama.cpp's router answers before the load ends)."""
        self._start_load(spec, spec.context_length, jit=False)

    def instances(self, model_id: str) -> list[Instance]:
        return list(self._instances.get(model_id, ()))

    def all_instances(self) -> Iterator[Instance]:
        for instances in self._instances.values():
            yield from instances

    def find_instance(self, instance_id: str) -> Instance | None:
        return next((i for i in self.all_instances() if i.id == instance_id), None)

    def first_loaded(self, type_: str = "llm") -> SimModel | None:
        return next((i.spec for i in self.all_instances() if i.spec.type == type_), None)

    # --- getting an instance for a request -------------------------------------------
    async def instance_for(self, spec: SimModel, instance_id: str | None, ttl: float | None = None) -> Instance:
        """A loaded instance of ``spec`` (JIT-loading one if needed and allowed, with idle ``ttl`` seconds)."""
        while True:
            if instance_id is not None:
                found = self.find_instance(instance_id)
                if found is None:
                    raise ModelUnloaded
                return found
            loaded = self._instances[spec.id]
            if loaded:
                return min(loaded, key=lambda i: i.busy)
            if not self._config.jit:
                raise ModelNotLoaded
            pending = self._loads[spec.id]
            if pending and not self._config.duplicate_jit_loads:
                await pending[0].done.wait()
                continue  # loaded now (or evicted already: load again)
            load = self._start_load(spec, spec.context_length, jit=True, ttl=ttl)
            await load.done.wait()
            found = self.find_instance(load.instance_id)
            if found is not None:
                return found

    @contextmanager
    def generating(self, instance: Instance) -> Iterator[anyio.CancelScope]:
        """A scope that an unload of ``instance`` cancels; check ``instance.unloaded`` after it."""
        if instance.unloaded:
            raise ModelUnloaded
        with anyio.CancelScope() as scope:
            instance.active.add(scope)
            try:
                yield scope
            finally:
                instance.active.discard(scope)

    # --- loading and unloading ---------------------------------------------------
    async def load(self, spec: SimModel, context_length: int | None = None) -> Instance:
        """A manual load (``/api/v1/models/load``): always a new instance, never auto-evicted."""
        load = self._start_load(spec, context_length or spec.context_length, jit=False)
        await load.done.wait()
        instance = self.find_instance(load.instance_id)
        if instance is None:
            raise ModelUnloaded
        return instance

    def unload(self, instance: Instance, *, evicted: bool) -> None:
        """Unload now: cancel its generations and fail its queue."""
        if instance.unloaded:
            return
        instance.unloaded = True
        self._instances[instance.spec.id].remove(instance)
        instance.slots.close()
        for scope in list(instance.active):
            scope.cancel()
        self._stats.unloaded(instance.spec.id, evicted=evicted)

    def _start_load(self, spec: SimModel, context_length: int, *, jit: bool, ttl: float | None = None) -> _Load:
        load = _Load(self._next_instance_id(spec.id))
        self._loads[spec.id].append(load)
        if jit and self._config.auto_evict:
            for other in list(self.all_instances()):
                if other.jit and other.spec.id != spec.id:
                    self.unload(other, evicted=True)
        self._tg.start_soon(self._run_load, spec, load, context_length, jit, ttl)
        return load

    async def _run_load(self, spec: SimModel, load: _Load, context_length: int, jit: bool, ttl: float | None) -> None:
        try:
            await anyio.sleep(spec.jit_load_delay)
            instance = self._add(spec, load.instance_id, context_length, jit=jit)
        finally:
            self._loads[spec.id].remove(load)
            load.done.set()
        if ttl is not None:
            instance.ttl = ttl
            await self._expire_when_idle(instance, ttl)

    async def _expire_when_idle(self, instance: Instance, ttl: float) -> None:
        """Unload ``instance`` once it has had no request for ``ttl`` seconds (LM Studio's idle TTL)."""
        while not instance.unloaded:
            now = anyio.current_time()
            due = instance.last_used + ttl
            if now >= due:
                if instance.busy == 0:
                    self.unload(instance, evicted=False)
                    return
                due = now + ttl
            await anyio.sleep(due - now)

    def _add(self, spec: SimModel, instance_id: str, context_length: int, *, jit: bool) -> Instance:
        instance = Instance(
            id=instance_id,
            spec=spec,
            context_length=context_length,
            jit=jit,
            slots=Slots(spec.parallel),
            loaded_at=anyio.current_time(),
            last_used=anyio.current_time(),
        )
        instances = self._instances[spec.id]
        instances.append(instance)
        instances.sort(key=lambda i: int(i.id.rpartition(":")[2]) if i.id != spec.id else 1)  # key, key:2, key:3 …
        self._stats.loaded(spec.id)
        return instance

    def _next_instance_id(self, key: str) -> str:
        taken = {i.id for i in self._instances[key]} | {load.instance_id for load in self._loads[key]}
        n = 1
        while (key if n == 1 else f"{key}:{n}") in taken:
            n += 1
        return key if n == 1 else f"{key}:{n}"
