"""ModelRegistryActor: owns the model list, validates requests and routes them to workers.

The cache holds what each server lists (LM Studio's native API where it answers:
loaded state, type, context length, tool use; the OpenAI ``/v1/models`` list
elsewhere). Refreshes are single-flight and stale-while-revalidate: a warm cache
answers at once while one background listing per server runs, so a slow or dead
server never delays what the cache can answer. Only a cold cache (or a model the
cache does not know) waits for a listing, bounded by ``listing_timeout``.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from typing import Any

import anyio
import msgspec

from bridge.actors._capacity import slot_capacity
from bridge.actors.server_gate import turn_if_free
from bridge.actors.worker import LLMWorkerActor
from bridge.errors import (
    ActorUnavailableError,
    BadRequestError,
    BridgeError,
    BusyError,
    DeadlineExceededError,
    LLMConnectionError,
    LLMResponseError,
    LLMTimeoutError,
    ModelNotFoundError,
    UnsupportedEndpointError,
)
from bridge.llm import Budgets, LLMClient, ModelInfo, NativeModel, ServerProps
from bridge.messages import (
    BridgeStatus,
    Chat,
    CheckHealth,
    Complete,
    DownloadedModel,
    DownloadModel,
    Embed,
    GateStats,
    GetGateStats,
    GetStatus,
    GetWorkerStats,
    ListModels,
    LoadedModel,
    LoadModel,
    ModelEntry,
    ModelList,
    ModelServersChanged,
    RegistryMessage,
    ResolveModel,
    Respond,
    ServerGateMessage,
    ServerState,
    UnloadedModel,
    UnloadModel,
    WorkerMessage,
    WorkerStats,
)
from bridge.runtime import Actor, ActorRef, ChildSpec, Forwarded, RequestContext, RestartPolicy, SupervisorRef
from bridge.settings import BridgeSettings

__all__ = ["ModelRegistryActor", "closest_models"]

log = logging.getLogger("bridge.registry")

_DEFAULT_NAMES = frozenset({"", "default", "auto"})


def closest_models(requested: str, available: list[str], n: int = 3) -> list[str]:
    """Model ids a user probably meant: substring and prefix matches first, then fuzzy ones."""
    wanted = requested.lower().strip()
    found: list[str] = []
    for model_id in available:
        lower = model_id.lower()
        base = lower.rsplit("/", 1)[-1]
        if wanted and (wanted in lower or base.startswith(wanted.rsplit("/", 1)[-1])):
            found.append(model_id)
    by_lower = {m.lower(): m for m in available}
    by_base = {m.lower().rsplit("/", 1)[-1]: m for m in available}
    for match in difflib.get_close_matches(wanted, list(by_lower), n=n, cutoff=0.5):
        found.append(by_lower[match])
    for match in difflib.get_close_matches(wanted.rsplit("/", 1)[-1], list(by_base), n=n, cutoff=0.5):
        found.append(by_base[match])
    return list(dict.fromkeys(found))[:n]


class _Listing:
    """One server's last listing. Strictly private to the registry."""

    __slots__ = ("error", "fetched_at", "models", "native", "props", "router")

    def __init__(self) -> None:
        self.models: list[ModelEntry] = []
        self.native: bool | None = None
        self.props: bool | None = None  # llama.cpp's /props (total_slots): None until asked
        self.router = False  # llama.cpp's router: /v1/models carries each model's status
        self.fetched_at: float | None = None
        self.error: BridgeError | None = None


_DOWNLOAD_POLL = 1.0  # seconds between looks at a download's status while a caller waits for it
_ROUTER_POLL = 0.25  # seconds between looks at llama.cpp's router listing while a model loads
_LISTING_TURN_WAIT = 1.0
"""Seconds a listing waits for a turn on a server with ``max_concurrent`` (at most half of ``listing_timeout``):
long enough for a short request to end, short enough that a listing during a long generation answers at once
from the cache."""


def _no_load_control(name: str, verb: str) -> UnsupportedEndpointError:
    return UnsupportedEndpointError(
        f"server {name} can neither report nor {verb} models: the bridge {verb}s them through LM Studio's native "
        f"API or llama.cpp's router (llama-server started without a model). On this server models are loaded "
        "when it starts, or on first use where it does that",
        details={"server": name},
    )


def _reports_load_state(listing: _Listing) -> bool:
    """LM Studio's native API and llama.cpp's router say what is loaded; plain OpenAI-style servers do not."""
    return bool(listing.native) or listing.router


class ModelRegistryActor(Actor[RegistryMessage]):
    """Validates and routes every LLM request; starts a worker per model on first use.

    Args:
        settings: Servers, default model, cache TTL, listing budget, limits.
        clients: One pooled client per server, by server name, in the configured order.
        workers: The supervisor the per-model workers run under.
        gates: The server-wide limits, by server name, for servers that have one.
    """

    def __init__(
        self,
        settings: BridgeSettings,
        clients: Mapping[str, LLMClient],
        workers: SupervisorRef,
        gates: Mapping[str, ActorRef[ServerGateMessage]] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.clients = dict(clients)
        self.workers = workers
        self.gates = dict(gates or {})
        self.listings = {name: _Listing() for name in self.clients}
        self.worker_refs: dict[str, ActorRef[WorkerMessage]] = {}
        self.worker_models: dict[str, ModelEntry] = {}  # what each worker was last told of its model
        self._refresh_done: anyio.Event | None = None
        self._refreshed_at: float | None = None

    async def handle(self, message: RegistryMessage, ctx: RequestContext) -> object:
        match message:
            case ListModels():
                await self._update_listing(force=message.refresh, wait=message.refresh or self._refreshed_at is None)
                return self._model_list(message)
            case ResolveModel(model=model):
                return await self._resolve(model)
            case Chat():
                _check_chat(message)
                entry = await self._resolve(message.model)
                if entry.type == "embedding":
                    raise BadRequestError(
                        f"{entry.id} is an embedding model; use generate_embeddings with it, or pick a chat model",
                        details={"model": entry.id},
                    )
                if entry.vision is False and _has_images(message):
                    raise self._cannot_see(entry)
                return await self._route(entry, msgspec.structs.replace(message, model=entry.id), ctx)
            case Complete():
                _check_sampling(message.temperature, message.max_tokens)
                if not message.prompt.strip():
                    raise BadRequestError("the prompt is empty; pass the text to complete")
                entry = await self._resolve(message.model)
                return await self._route(entry, msgspec.structs.replace(message, model=entry.id), ctx)
            case Embed():
                if not message.input or not all(text.strip() for text in message.input):
                    raise BadRequestError("nothing to embed: pass one non-empty text or a list of them")
                entry = await self._resolve(message.model, kind="embedding")
                return await self._route(entry, msgspec.structs.replace(message, model=entry.id), ctx)
            case Respond():
                if not message.input.strip():
                    raise BadRequestError("the input is empty; pass the text to respond to")
                _check_sampling(message.temperature, message.max_output_tokens)
                entry = await self._resolve(message.model)
                return await self._route(entry, msgspec.structs.replace(message, model=entry.id), ctx)
            case LoadModel():
                return await self._load(message, ctx)
            case DownloadModel():
                return await self._download(message, ctx)
            case UnloadModel():
                return await self._unload(message)
            case GetStatus():
                return await self._status()
            case CheckHealth():
                await self._update_listing(force=True, wait=True)
                return self._model_list(ListModels())

    # --- the cache ----------------------------------------------------------------------------------
    async def _update_listing(self, *, force: bool = False, wait: bool = False) -> None:
        """Refresh when stale (single-flight, in the background); wait only if asked."""
        now = anyio.current_time()
        stale = self._refreshed_at is None or now - self._refreshed_at >= self.settings.model_cache_ttl
        if (stale or force) and self._refresh_done is None:
            done = anyio.Event()
            self._refresh_done = done
            self.start_background(lambda: self._refresh(done), name="model listing")
        if wait and self._refresh_done is not None:
            with anyio.move_on_after(self.settings.listing_timeout + 1.0):
                await self._refresh_done.wait()

    async def _refresh(self, done: anyio.Event) -> None:
        try:
            async with anyio.create_task_group() as tg:
                for name in self.clients:
                    tg.start_soon(self._list_one, name)
        finally:
            self._refreshed_at = anyio.current_time()
            self._refresh_done = None
            done.set()

    async def _list_one(self, name: str) -> None:
        """List one server's models into the cache; a failure is kept as the server's ``error``.

        On a server with ``max_concurrent`` the listing takes one of its turns: llama-cpp-python
        answers ``/v1/models`` under the lock its generations hold, so a listing sent while one
        streams cuts that stream. A listing that gets no turn within :data:`_LISTING_TURN_WAIT`
        is not sent: the cache keeps what it had (a cold cache says the server is busy), so
        list_models and health_check still answer within ``listing_timeout``.
        """
        listing = self.listings[name]
        client = self.clients[name]
        budget = self.settings.listing_timeout
        wait = min(_LISTING_TURN_WAIT, budget / 2)
        try:
            with anyio.fail_after(budget + 0.5):
                async with turn_if_free(self.gates.get(name), "model listing", wait=wait, timeout=budget + 1.0) as turn:
                    if not turn:
                        self._listing_deferred(name, wait)
                        return
                    models = await self._fetch_listing(name, listing, budget)
        except (TimeoutError, LLMTimeoutError):
            listing.error = LLMConnectionError(
                f"LLM server {name} ({client.base_url}) did not list its models within {budget:g} s; "
                "it accepts connections but does not answer. Check that it is an LLM server and not stuck, "
                "or raise listing_timeout",
                details={"server": name, "url": client.base_url},
            )
            log.warning("%s", listing.error.message)
            return
        except BridgeError as error:
            listing.error = error
            log.warning("listing models of %s failed: %s", name, error)
            return
        listing.models = models
        listing.error = None
        listing.fetched_at = anyio.current_time()

    def _listing_deferred(self, name: str, waited: float) -> None:
        """No turn came for a listing of ``name``: keep the cached listing, or say why there is none."""
        log.info("%s is running its max_concurrent generations: its models are listed at the next refresh", name)
        if self.listings[name].fetched_at is None:
            self.listings[name].error = BusyError(
                f"server {name} was running as many generations as its max_concurrent allows for {waited:g} s, "
                "and a model listing now could cut one (llama-cpp-python answers listings under its generation "
                "lock), so it was not listed; retry when a generation has finished",
                retry_after=waited,
                details={"server": name},
            )

    async def _fetch_listing(self, name: str, listing: _Listing, budget: float) -> list[ModelEntry]:
        client = self.clients[name]
        budgets = Budgets(connect=budget, first_token=budget, idle=budget, total=budget)
        native = await client.native_models(budgets=budgets) if listing.native is not False else None
        if native is not None:
            listing.native = True
            return [self._configured(_native_entry(name, m)) for m in native]
        listing.native = False
        found = await client.list_models(budgets=budgets)
        listing.router = any(m.load_state is not None for m in found)
        props = await self._props(name, listing, budgets) if not listing.router and len(found) == 1 else ServerProps()
        return [self._configured(_openai_entry(name, m, props)) for m in found]

    async def _props(self, name: str, listing: _Listing, budgets: Budgets) -> ServerProps:
        """llama.cpp's ``/props`` for a one-model server; a server without it is not asked again."""
        if listing.props is False:
            return ServerProps()
        props = await self.clients[name].props(budgets=budgets)
        listing.props = props != ServerProps()
        return props

    def _configured(self, entry: ModelEntry) -> ModelEntry:
        """``entry`` with the context length the configuration gives, where its server reports none."""
        configured = self.settings.limits_for(entry.id).context_length
        if entry.context_length is not None or configured is None:
            return entry
        sources = {**entry.sources, "context_length": f'configuration, [models."{entry.id}"] context_length'}
        return msgspec.structs.replace(entry, context_length=configured, sources=sources)

    def _entries(self) -> dict[str, ModelEntry]:
        """The merged view: each model once, with every server that lists it (configured order first)."""
        merged: dict[str, ModelEntry] = {}
        for name, listing in self.listings.items():
            for entry in listing.models:
                known = merged.get(entry.id)
                if known is None:
                    merged[entry.id] = entry
                else:
                    merged[entry.id] = msgspec.structs.replace(
                        known,
                        servers=[*known.servers, name],
                        reported_slots=known.reported_slots | entry.reported_slots,
                    )
        return merged

    def _with_capacity(self, entry: ModelEntry) -> ModelEntry:
        """``entry`` with the slots the bridge uses on each of its servers (only for what leaves the registry)."""
        return msgspec.structs.replace(entry, capacity=slot_capacity(entry, self.settings))

    def _server_states(self) -> list[ServerState]:
        now = anyio.current_time()
        states = []
        for name, listing in self.listings.items():
            reachable = None if listing.fetched_at is None and listing.error is None else listing.error is None
            states.append(
                ServerState(
                    name=name,
                    url=self.clients[name].base_url,
                    reachable=reachable,
                    lmstudio_native_api=listing.native,
                    models=len(listing.models),
                    loaded=[m.id for m in listing.models if m.loaded] if _reports_load_state(listing) else None,
                    listing_age_s=None if listing.fetched_at is None else round(now - listing.fetched_at, 3),
                    last_error=listing.error.to_info() if listing.error is not None else None,
                )
            )
        return states

    def _model_list(self, message: ListModels) -> ModelList:
        models = [
            self._with_capacity(m)
            for m in self._entries().values()
            if (message.model_type is None or m.type == message.model_type) and (not message.loaded_only or m.loaded)
        ]
        return ModelList(models=models, servers=self._server_states())

    # --- resolution -----------------------------------------------------------------------------------
    async def _resolve(self, requested: str | None, *, kind: str = "llm") -> ModelEntry:
        await self._update_listing(wait=self._refreshed_at is None)
        wanted = (requested or "").strip()
        if wanted.lower() in _DEFAULT_NAMES:
            return await self._default(kind)
        entries = self._entries()
        entry = entries.get(wanted) or _case_insensitive(entries, wanted)
        if entry is None:
            # Perhaps the model was just added: list once more before saying no.
            await self._update_listing(force=True, wait=True)
            entries = self._entries()
            entry = entries.get(wanted) or _case_insensitive(entries, wanted)
        if entry is None:
            raise self._not_found(wanted, entries)
        return self._with_capacity(entry)

    async def _default(self, kind: str) -> ModelEntry:
        configured = self.settings.default_model
        if configured and configured.lower() not in _DEFAULT_NAMES and kind == "llm":
            return await self._resolve(configured)
        found = self._pick_default(kind)
        if found is None:
            # The cache may predate a JIT load (a named call loads a model on first use):
            # list once more before saying no, as resolving a named model does.
            await self._update_listing(force=True, wait=True)
            found = self._pick_default(kind)
        if found is not None:
            return self._with_capacity(found)
        entries = self._entries()
        if not entries:
            raise self._no_models()
        of_kind = [m for m in entries.values() if m.type == kind]
        reported = any(_reports_load_state(listing) for listing in self.listings.values())
        why = "none is loaded" if reported else "the servers do not say which is loaded"
        raise BadRequestError(
            f"no default {kind} model: {why} and {len(of_kind)} are available "
            f"({', '.join(m.id for m in of_kind[:8]) or 'none'}); pass model=..., load one, "
            "or set default_model in the settings",
            details={"available": [m.id for m in of_kind]},
        )

    def _pick_default(self, kind: str) -> ModelEntry | None:
        """The loaded model of ``kind`` (the first), else the only one; ``None`` when neither exists."""
        of_kind = [m for m in self._entries().values() if m.type == kind]
        loaded = [m for m in of_kind if m.loaded]
        if loaded:
            return loaded[0]
        return of_kind[0] if len(of_kind) == 1 else None

    def _not_found(self, wanted: str, entries: dict[str, ModelEntry]) -> BridgeError:
        if not entries:
            return self._no_models()
        available = sorted(entries)
        suggestions = closest_models(wanted, available)
        hint = f" Did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        shown = ", ".join(available[:12]) + (" …" if len(available) > 12 else "")
        return ModelNotFoundError(
            f"model {wanted!r} is not available on any configured server.{hint} Available: {shown}",
            details={"model": wanted, "suggestions": suggestions, "available": available},
        )

    def _no_models(self) -> BridgeError:
        errors = {name: listing.error for name, listing in self.listings.items() if listing.error is not None}
        if errors and len(errors) == len(self.listings):
            first = next(iter(errors.values()))
            return LLMConnectionError(
                "no configured LLM server could be reached ("
                + "; ".join(f"{name}: {err.message}" for name, err in errors.items())
                + "). Start LM Studio's server (lms server start) or fix the server URL",
                retry_after=first.retry_after or 2.0,
                details={"servers": list(errors)},
            )
        return ModelNotFoundError(
            "the configured LLM servers list no models; download or load one (lms get / lms load)",
            details={"available": []},
        )

    # --- routing ----------------------------------------------------------------------------------------
    async def _worker(self, entry: ModelEntry) -> ActorRef[WorkerMessage]:
        ref = self.worker_refs.get(entry.id)
        if ref is not None and ref.state not in ("stopped", "failed"):
            await self._tell_servers(ref, entry)
            return ref
        spec: ChildSpec[WorkerMessage] = ChildSpec(
            entry.id,
            # A restarted worker starts from the newest word on its servers, not the first one.
            lambda: LLMWorkerActor(self.worker_models.get(entry.id, entry), self.clients, self.settings, self.gates),
            restart=RestartPolicy.TRANSIENT,
            mailbox_size=256,
            ask_timeout=self.settings.call_budget,
        )
        ref = await self.workers.start_child(spec, exist_ok=True)
        self.worker_refs[entry.id] = ref
        self.worker_models[entry.id] = entry
        return ref

    async def _tell_servers(self, ref: ActorRef[WorkerMessage], entry: ModelEntry) -> None:
        """A worker follows the listings: servers that started or stopped listing its model, new slot counts.

        Told before the next request is handed on, so that request already sees the change.
        """
        told = self.worker_models.get(entry.id)
        if not entry.servers or (told is not None and (told.servers, told.capacity) == (entry.servers, entry.capacity)):
            return
        try:
            await ref.ask(ModelServersChanged(model=entry), timeout=2.0)
        except BridgeError as error:
            log.info("%s did not take its new servers: %s", ref.name, error)
            return
        self.worker_models[entry.id] = entry

    def _cannot_see(self, entry: ModelEntry) -> UnsupportedEndpointError:
        """The server says this model takes no images: say so before sending, and name those that do."""
        seeing = sorted(m.id for m in self._entries().values() if m.vision)
        choice = f"vision models here: {', '.join(seeing)}" if seeing else "no model listed here takes images"
        return UnsupportedEndpointError(
            f"{entry.id} does not take images (its server says so); send them to a vision model ({choice}), "
            "or send the text alone",
            details={"model": entry.id, "reason": "images", "vision_models": seeing},
        )

    async def _route(self, entry: ModelEntry, message: WorkerMessage, ctx: RequestContext) -> Forwarded:
        """Hand the request on to the model's worker, which answers the caller directly.

        The registry never waits for a generation: a crash or restart here touches no
        request already with a worker, and the registry's own concurrency bounds only
        resolving, not generating.
        """
        for attempt in range(2):
            ref = await self._worker(entry)
            try:
                return await ctx.forward(ref, message)
            except ActorUnavailableError:
                self.worker_refs.pop(entry.id, None)  # it stopped for good; start a new one
                if attempt:
                    raise
        raise AssertionError("unreachable")

    # --- load / unload / status --------------------------------------------------------------------------
    async def _load(self, message: LoadModel, ctx: RequestContext) -> LoadedModel:
        entry = await self._resolve(message.model)
        name = entry.servers[0] if entry.servers else entry.server
        client = self.clients[name]
        if self.listings[name].router:
            return await self._router_load(entry, name, ctx)
        if self.listings[name].native is False:
            raise _no_load_control(name, "load")
        result = await client.load_model(entry.id, context_length=message.context_length, ttl=message.ttl)
        await self._update_listing(force=True, wait=True)
        return LoadedModel(
            model=entry.id, server=name, instance_id=result.instance_id, load_time_s=result.load_time_seconds
        )

    async def _download(self, message: DownloadModel, ctx: RequestContext) -> DownloadedModel:
        await self._update_listing(force=False, wait=True)
        native = [name for name, listing in self.listings.items() if listing.native]
        if not native:
            raise UnsupportedEndpointError(
                "no server here downloads models: the bridge downloads them through LM Studio's native API "
                "(0.4 or newer), and none of the configured servers is LM Studio. Download the model with the "
                "server's own tools",
                details={"servers": list(self.listings)},
            )
        name = native[0]
        client = self.clients[name]
        status = await client.download_model(message.model, quantization=message.quantization)
        while message.wait and not status.over and status.job_id and ctx.remaining() > _DOWNLOAD_POLL + 1.0:
            await anyio.sleep(_DOWNLOAD_POLL)
            status = await client.download_status(status.job_id)
        if status.status == "completed":
            await self._update_listing(force=True, wait=True)
        return DownloadedModel(
            model=message.model,
            server=name,
            status=status.status,
            job_id=status.job_id,
            total_size_bytes=status.total_size_bytes,
            downloaded_bytes=status.downloaded_bytes,
        )

    async def _unload(self, message: UnloadModel) -> UnloadedModel:
        entry = await self._resolve(message.model)
        name = entry.servers[0] if entry.servers else entry.server
        client = self.clients[name]
        if self.listings[name].router:
            if not entry.loaded:
                raise BadRequestError(
                    f"{entry.id} is not loaded on {name} (it is {entry.load_state}); nothing to unload",
                    details={"server": name, "load_state": entry.load_state},
                )
            await client.router_unload_model(entry.id)
            await self._update_listing(force=True, wait=True)
            return UnloadedModel(model=entry.id, server=name, instance_ids=[entry.id])
        native = await client.native_models()
        if native is None:
            raise _no_load_control(name, "unload")
        instances = [i for m in native if m.id == entry.id for i in (m.instance_ids or (m.id,)) if m.loaded]
        if not instances:
            raise BadRequestError(f"{entry.id} is not loaded on {name}; nothing to unload", details={"server": name})
        for instance in instances:
            await client.unload_model(instance)
        await self._update_listing(force=True, wait=True)
        return UnloadedModel(model=entry.id, server=name, instance_ids=list(instances))

    async def _router_load(self, entry: ModelEntry, name: str, ctx: RequestContext) -> LoadedModel:
        """Load on llama.cpp's router and wait, within the caller's deadline, until it reports ``loaded``.

        The router answers ``/models/load`` as soon as it has started the model's
        process, so the bridge watches the listing; a model that goes back to
        ``unloaded`` after ``loading`` failed to load (the router's log says why).
        """
        started = anyio.current_time()
        await self._list_one(name)  # the cached state may be old: do not ask to load a loaded model
        listed = next((m for m in self.listings[name].models if m.id == entry.id), entry)
        if listed.load_state not in ("loaded", "loading"):
            try:
                await self.clients[name].router_load_model(entry.id)
            except BridgeError as error:
                if "already loaded" not in error.message:  # a load that finished in between is no failure
                    raise
        seen_loading = False
        while True:
            current = next((m for m in self.listings[name].models if m.id == entry.id), None)
            state = current.load_state if current is not None else None
            if state == "loaded":
                return LoadedModel(
                    model=entry.id, server=name, instance_id=entry.id, load_time_s=anyio.current_time() - started
                )
            seen_loading = seen_loading or state == "loading"
            if seen_loading and state == "unloaded":
                raise LLMResponseError(
                    f"llama.cpp's router on {name} could not load {entry.id}: it went from loading back to "
                    "unloaded. Its log says why (a missing file, too little memory, bad arguments in its preset)",
                    retryable=False,
                    details={"server": name, "model": entry.id},
                )
            if ctx.remaining() <= _ROUTER_POLL:
                raise DeadlineExceededError(
                    f"{entry.id} is still {state or 'not listed'} on {name} after "
                    f"{anyio.current_time() - started:.1f} s; the load goes on there. Call list_models to see "
                    "when it is loaded, or just use the model: requests wait for the load",
                    retryable=True,
                    retry_after=5.0,
                    details={"server": name, "model": entry.id, "load_state": state},
                )
            await anyio.sleep(_ROUTER_POLL)  # the router has no event for "loaded": poll its listing
            await self._list_one(name)

    async def _status(self) -> BridgeStatus:
        stats: list[WorkerStats] = []

        async def ask(ref: ActorRef[WorkerMessage]) -> None:
            try:
                stats.append(await ref.ask(GetWorkerStats(), timeout=2.0))
            except BridgeError as error:
                log.info("no stats from %s: %s", ref.name, error)

        gates: dict[str, GateStats] = {}

        async def ask_gate(name: str, ref: ActorRef[ServerGateMessage]) -> None:
            try:
                gates[name] = await ref.ask(GetGateStats(), timeout=2.0)
            except BridgeError as error:
                log.info("no stats from %s: %s", ref.name, error)

        async with anyio.create_task_group() as tg:
            for ref in list(self.worker_refs.values()):
                tg.start_soon(ask, ref)
            for name, gate_ref in self.gates.items():
                tg.start_soon(ask_gate, name, gate_ref)
        stats.sort(key=lambda s: s.model)
        breakers: dict[str, str] = {}
        for worker in stats:
            for server, breaker in worker.breakers.items():
                if breaker != "closed":
                    breakers[server] = breaker
        servers: list[ServerState] = []
        for state in self._server_states():
            state = msgspec.structs.replace(state, breaker=breakers.get(state.name, "closed"))
            gate = gates.get(state.name)
            if gate is not None:
                state = msgspec.structs.replace(
                    state, max_concurrent=gate.max_concurrent, in_flight=gate.in_flight, queued=gate.queued
                )
            servers.append(state)
        return BridgeStatus(models=stats, servers=servers)


def _entry(server: str, model: NativeModel | ModelInfo, kind: str, **fields: Any) -> ModelEntry:
    """The cache's entry for a model ``server`` listed: what every listing says, then what this one adds."""
    said = {name: getattr(model, name) for name in _LISTED_BY_ALL}
    return ModelEntry(type=kind, server=server, servers=[server], **said, **fields)


_LISTED_BY_ALL = ("id", "loaded", "context_length", "max_context_length")


def _native_entry(server: str, m: NativeModel) -> ModelEntry:
    api = f"LM Studio /api/{m.api}/models"
    sources = {"tool_use": f"{api} capabilities", "vision": f"{api} " + ("type" if m.api == "v0" else "capabilities")}
    if m.context_length:
        sources["context_length"] = f"{api}, {'loaded instance' if m.loaded else 'maximum: not loaded'}"
    return _entry(
        server,
        m,
        "embedding" if m.type == "embedding" else "llm",
        tool_use=m.tool_use,
        vision=m.vision,
        publisher=m.publisher,
        quantization=m.quantization,
        reported_slots={server: m.parallel} if m.parallel else {},
        sources=sources,
    )


def _openai_entry(server: str, m: ModelInfo, props: ServerProps) -> ModelEntry:
    sources = {}
    if m.context_length:
        sources["context_length"] = "llama.cpp /v1/models meta.n_ctx"
    if props.vision is not None:
        sources["vision"] = "llama.cpp /props modalities"
    return _entry(
        server,
        m,
        "embedding" if "embed" in m.id.lower() else "llm",
        load_state=m.load_state,
        vision=props.vision,
        reported_slots={server: props.total_slots} if props.total_slots else {},
        sources=sources,
    )


def _case_insensitive(entries: dict[str, ModelEntry], wanted: str) -> ModelEntry | None:
    lower = wanted.lower()
    matches = [entry for model_id, entry in entries.items() if model_id.lower() == lower]
    return matches[0] if len(matches) == 1 else None


def _check_sampling(temperature: float | None, max_tokens: int | None) -> None:
    if temperature is not None and not 0.0 <= temperature <= 2.0:
        raise BadRequestError(
            f"temperature must be between 0 and 2, got {temperature}", details={"temperature": temperature}
        )
    if max_tokens is not None and max_tokens <= 0:
        raise BadRequestError(
            f"max_tokens must be a positive number of tokens, got {max_tokens}; omit it for the server's default",
            details={"max_tokens": max_tokens},
        )


def _has_images(message: Chat) -> bool:
    return any(
        isinstance(m.content, list) and any(part.get("type") == "image_url" for part in m.content)
        for m in message.messages
    )


def _check_chat(message: Chat) -> None:
    _check_sampling(message.temperature, message.max_tokens)
    if not message.messages:
        raise BadRequestError("no messages: pass a prompt")
    last = message.messages[-1]
    if last.role == "user" and (last.content is None or (isinstance(last.content, str) and not last.content.strip())):
        raise BadRequestError("the prompt is empty; pass the text you want the model to answer")
