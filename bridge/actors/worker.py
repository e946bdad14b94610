"""LLMWorkerActor: one per model — its slots, its queue, its retries, its breakers, its figures.

Every inference on a model goes through that model's worker, so the worker is
the one place that knows how busy the model is. It waits for a slot (bounded
queue, ``busy`` past it), lets a not-yet-loaded model load once (the first
request goes alone, the rest wait, so concurrent first requests never make the
server load duplicate copies), streams from the server so it can report first
token and tokens so far, retries only what is worth retrying, and keeps a
circuit breaker per server so a dead LM Studio fails fast.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import msgspec

from bridge.actors._breaker import CircuitBreaker
from bridge.actors._capacity import slot_capacity
from bridge.actors._context import TokenCounter, fitted_max_tokens
from bridge.actors._slots import SlotQueue
from bridge.actors.server_gate import SERVER_TURN
from bridge.errors import (
    BridgeError,
    BusyError,
    DeadlineExceededError,
    LLMConnectionError,
    LLMTimeoutError,
    ModelUnloadedError,
    StreamingRefusedError,
)
from bridge.llm import (
    Budgets,
    ChatOutcome,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    Generation,
    LLMClient,
    ResponsesRequest,
    RetryNotice,
    StreamProgress,
    call_with_retries,
)
from bridge.messages import (
    CallerLoad,
    Chat,
    ChatResult,
    Complete,
    CompletionResult,
    Embed,
    EmbeddingResult,
    GetWorkerStats,
    HoldServerTurn,
    ModelEntry,
    ModelServersChanged,
    Progress,
    Respond,
    ResponseResult,
    ServerGateMessage,
    WorkerMessage,
    WorkerStats,
)
from bridge.runtime import Actor, ActorRef, RequestContext
from bridge.settings import BridgeSettings

__all__ = ["LLMWorkerActor"]

log = logging.getLogger("bridge.worker")

T = TypeVar("T")

_WINDOW = 512
_PATIENT_ROOM = 1024  # one full batch_chat at once; more waits in the mailbox (backpressure)
_PROGRESS_EVERY = 0.5


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _CallTrace:
    """What one request learned on its way through the worker."""

    __slots__ = ("failed_on", "holds_slot", "queued_s", "retries", "server")

    def __init__(self) -> None:
        self.queued_s = 0.0
        self.retries = 0
        self.server = ""  # the server of the slot this request holds, and of its current attempt
        self.failed_on: set[str] = set()
        self.holds_slot = False


_W = TypeVar("_W", ChatRequest, CompletionRequest, EmbeddingRequest, ResponsesRequest)


def _llm_request(message: Chat | Complete | Embed | Respond, kind: type[_W], **fields: Any) -> _W:
    """The LLM client's request for a message: the fields they share, by name, then ``fields``.

    The message says what the caller wants; the request is that, for one model on the wire.
    """
    shared = {name: getattr(message, name) for name in kind.__struct_fields__ if hasattr(message, name)}
    return kind(**(shared | fields))


class LLMWorkerActor(Actor[WorkerMessage]):
    """Serves one model. Built by the registry on the model's first use.

    Args:
        model: The model as the registry knows it (id, servers, loaded state).
        clients: The pooled HTTP clients, by server name (shared, owned by the app).
        settings: Limits, budgets, retry and breaker settings.
        gates: The server-wide limits, by server name, for servers that have one.
    """

    def __init__(
        self,
        model: ModelEntry,
        clients: Mapping[str, LLMClient],
        settings: BridgeSettings,
        gates: Mapping[str, ActorRef[ServerGateMessage]] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.settings = settings
        self.gates = dict(gates or {})
        limits = settings.limits_for(model.id)
        self._client = dict(clients)  # every server's: a call keeps its server if that one stops listing the model
        # A pool of slots on each server that serves the model: two servers, twice the requests at once.
        self.capacity = [c for c in (model.capacity or slot_capacity(model, settings)) if c.server in self._client]
        self.slots = SlotQueue({c.server: c.slots for c in self.capacity} or limits.slots, limits.queue)
        self.in_flight_by_caller: Counter[str] = Counter()
        # Room for patient requests (batch items) beyond the queue: they wait in the slot queue, not
        # the mailbox, so the worker keeps answering others (busy, stats) while a batch waits.
        self.max_concurrent_requests = self.slots.slots + limits.queue + _PATIENT_ROOM + 16
        self.breakers = {
            name: CircuitBreaker(name, failures=settings.breaker.failures, cooldown=settings.breaker.cooldown)
            for name, _ in self.clients
        }
        self.warm = model.loaded is not False
        self._loading: anyio.Event | None = None
        self.latencies: deque[float] = deque(maxlen=_WINDOW)
        self.ttfts: deque[float] = deque(maxlen=_WINDOW)
        self.rates: deque[float] = deque(maxlen=_WINDOW)
        self.completed = 0
        self.failed = 0
        self.busy_rejections = 0
        self.retries = 0
        # Servers that refused a streamed request with tools (llama-cpp-python): asked without streaming from then on.
        self.unstreamed_tools: set[str] = set()
        self.token_counter = TokenCounter()

    @property
    def clients(self) -> list[tuple[str, LLMClient]]:
        """The servers the model is on now, in listing order, with their clients."""
        return [(c.server, self._client[c.server]) for c in self.capacity]

    async def handle(self, message: WorkerMessage, ctx: RequestContext) -> object:
        match message:
            case Chat():
                return await self._chat(message, ctx)
            case Complete():
                return await self._complete(message, ctx)
            case Embed():
                return await self._embed(message, ctx)
            case Respond():
                return await self._respond(message, ctx)
            case GetWorkerStats():
                return self._stats()
            case ModelServersChanged():
                self._follow(message.model)
                return None

    def _follow(self, model: ModelEntry) -> None:
        """Use the servers that list the model now, with their slots; stop sending where it is gone.

        Requests running on a server that left keep their slot there until they end.
        """
        capacity = [c for c in (model.capacity or slot_capacity(model, self.settings)) if c.server in self._client]
        if not capacity:
            return  # listed nowhere the bridge can reach: keep what we had; the registry reports the rest
        self.model, self.capacity = model, capacity
        breaker = self.settings.breaker
        self.breakers = {
            c.server: self.breakers.get(c.server)
            or CircuitBreaker(c.server, failures=breaker.failures, cooldown=breaker.cooldown)
            for c in capacity
        }
        self.slots.resize({c.server: c.slots for c in capacity})
        log.info("%s now on %s", model.id, ", ".join(f"{c.server} ({c.slots} slots, {c.source})" for c in capacity))

    # --- the request path ----------------------------------------------------------------
    async def _run(
        self,
        ctx: RequestContext,
        attempt: Callable[[LLMClient, Budgets, Callable[[StreamProgress], Awaitable[None]]], Awaitable[T]],
        *,
        patient: bool = False,
        call: _CallTrace | None = None,
    ) -> tuple[T, _CallTrace]:
        """Queue for a slot, take the load turn if needed, then call with retries and breakers.

        A ``patient`` request waits for its turn however long the queue is, instead of ``busy``.
        ``call`` is filled in as the call goes (its ``server`` names the server of the current attempt).
        """
        call = call or _CallTrace()
        if self.breakers and not any(breaker.allows() for breaker in self.breakers.values()):
            self.failed += 1
            raise self._all_open()  # before queueing: a call that cannot be sent waits for nothing
        if not patient and self.slots.full():
            self.busy_rejections += 1
            raise BusyError(
                f"model {self.model.id} has {self.slots.slots} slots busy and {self.slots.queued} requests "
                f"queued (the limit); retry in about {self._wait_estimate():.1f} s, or raise "
                f"models.{self.model.id!r}.queue in the settings",
                retry_after=self._wait_estimate(),
                details={"model": self.model.id, "queued": self.slots.queued, "slots": self.slots.slots},
            )
        started = anyio.current_time()
        position = self._position_reporter(ctx) if ctx.wants_progress else None
        call.server = await self.slots.acquire(position, patient=patient, caller=ctx.caller, allowed=self._allows)
        call.holds_slot = True
        call.queued_s = anyio.current_time() - started
        self.in_flight_by_caller[ctx.caller] += 1
        try:
            if ctx.wants_progress:  # inside the try: a cancelled report must not keep the slot
                await ctx.report_progress(
                    Progress(stage="started", model=self.model.id, message=f"{self.model.id} on {call.server}")
                )
            turn = await self._take_load_turn(ctx)
            try:
                result = await self._call_with_retries(ctx, call, attempt, turn)
            finally:
                if turn is not None:
                    self._end_load_turn(turn)
        except BridgeError:
            self.failed += 1
            raise
        finally:
            if call.holds_slot:
                self.slots.release(call.server)
                call.holds_slot = False
            self.in_flight_by_caller[ctx.caller] -= 1
            if not self.in_flight_by_caller[ctx.caller]:
                del self.in_flight_by_caller[ctx.caller]
        self.completed += 1
        self.latencies.append(anyio.current_time() - started)
        return result, call

    def _position_reporter(self, ctx: RequestContext) -> Callable[[int], Awaitable[None]]:
        model = self.model.id

        async def report(position: int) -> None:
            await ctx.report_progress(
                Progress(stage="queued", position=position, message=f"queued for {model}: position {position}")
            )

        return report

    async def _take_load_turn(self, ctx: RequestContext) -> anyio.Event | None:
        """This request's load turn if it must load the model (it goes alone), else ``None``.

        Waits while another request loads it. The turn is an event of its own, so a request
        ends only its own turn: after the model was unloaded and a new turn began, a late
        finisher of an old turn cannot let a second load start beside the first.
        """
        while not self.warm:
            if self._loading is None:
                turn = self._loading = anyio.Event()
                if ctx.wants_progress:
                    await ctx.report_progress(Progress(stage="loading", message=f"loading {self.model.id}"))
                return turn
            await self._loading.wait()
        return None

    def _end_load_turn(self, turn: anyio.Event) -> None:
        if self._loading is turn:
            self._loading = None
        turn.set()

    async def _call_with_retries(
        self,
        ctx: RequestContext,
        call: _CallTrace,
        attempt: Callable[[LLMClient, Budgets, Callable[[StreamProgress], Awaitable[None]]], Awaitable[T]],
        turn: anyio.Event | None,
    ) -> T:
        first_token_seen = False
        last_report = 0.0

        async def on_progress(progress: StreamProgress) -> None:
            nonlocal first_token_seen, last_report
            if not first_token_seen and progress.time_to_first_token is not None:
                first_token_seen = True
                if turn is not None:
                    self.warm = True
                    self._end_load_turn(turn)
                if ctx.wants_progress:
                    await ctx.report_progress(
                        Progress(stage="first_token", tokens=progress.tokens, text=progress.text or None)
                    )
                last_report = anyio.current_time()
            elif ctx.wants_progress and anyio.current_time() - last_report >= _PROGRESS_EVERY:
                last_report = anyio.current_time()
                await ctx.report_progress(
                    Progress(
                        stage="generating",
                        tokens=progress.tokens,
                        progress=float(progress.tokens),
                        message=f"{progress.tokens} tokens from {self.model.id}",
                        text=progress.text,
                    )
                )

        async def one_attempt() -> T:
            name, client = await self._server_for(ctx, call)
            breaker = self.breakers[name]
            breaker.before_call()
            try:
                result = await self._in_server_turn(name, ctx, lambda: attempt(client, self._budgets(ctx), on_progress))
            except LLMTimeoutError as exc:
                if exc.details.get("budget") == "total" and self._cut_by_caller(exc):
                    breaker.record_neutral()
                    raise self._out_of_call_time(exc) from exc
                if exc.details.get("budget") == "connect":
                    breaker.record_failure()
                else:
                    breaker.record_neutral()
                raise
            except LLMConnectionError as exc:
                if exc.details.get("reason") == "closed_unanswered":
                    breaker.record_neutral()  # it answers on a new connection: not a server that is down
                else:
                    breaker.record_failure()
                raise
            except ModelUnloadedError:
                breaker.record_success()
                self.warm = False
                raise
            except BaseException:
                breaker.record_neutral()
                raise
            breaker.record_success()
            if turn is not None and self._loading is turn:
                self.warm = True  # loaded without a first token seen (embeddings); a stale turn says nothing
            return result

        async def on_retry(notice: RetryNotice) -> None:
            # Failover: the next attempt takes a slot on a server this request has not failed on, if the
            # model has one (waiting in line for it); with one server, the same one again.
            failed = call.server
            call.failed_on.add(failed)
            if len(self.clients) > 1:  # with one server the request keeps its slot for the retry
                await self._slot_elsewhere(ctx, call, frozenset(call.failed_on))
            if call.server != failed:
                log.info("%s: retrying on %s after %s on %s", self.model.id, call.server, notice.error, failed)
            call.retries += 1
            self.retries += 1
            log.info("%s: retry %d after %s", self.model.id, notice.attempt, notice.error)
            if ctx.wants_progress:
                await ctx.report_progress(
                    Progress(stage="retry", message=f"retry {notice.attempt} on {self.model.id}: {notice.error}")
                )

        retry = self.settings.retry
        return await call_with_retries(
            one_attempt,
            attempts=retry.attempts,
            wait_initial=retry.wait_initial,
            wait_max=retry.wait_max,
            on_retry=on_retry,
            timeout=max(0.0, ctx.remaining()),
        )

    async def _in_server_turn(self, server: str, ctx: RequestContext, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` holding one of ``server``'s turns, when the server has a server-wide limit.

        The turn is held by an open ``HoldServerTurn`` ask in a task of this request's own;
        leaving the task group ends the ask, and with it the turn, however ``fn`` ended.
        """
        gate = self.gates.get(server)
        if gate is None:
            return await fn()
        granted = anyio.Event()
        lost: BridgeError | None = None
        failed: Exception | None = None
        outcome: list[T] = []

        async def on_gate_progress(progress: Progress) -> None:
            if progress.stage == SERVER_TURN:
                granted.set()
            elif ctx.wants_progress:
                await ctx.report_progress(progress)

        async def hold(scope: anyio.CancelScope) -> None:
            nonlocal lost
            try:
                await gate.ask(
                    HoldServerTurn(model=self.model.id), timeout=max(0.0, ctx.remaining()), progress=on_gate_progress
                )
            except BridgeError as error:
                lost = error
            scope.cancel()  # the turn is over (or never came): so is the attempt

        remaining = ctx.remaining()
        # Give up waiting a little before the asker's deadline, so that is what the caller hears.
        wait_budget = max(0.0, remaining - min(0.5, remaining * 0.05))
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold, tg.cancel_scope)
            with anyio.move_on_after(wait_budget):
                await granted.wait()
            if granted.is_set():
                try:
                    outcome.append(await fn())
                except Exception as exc:  # kept out of the task group, so it is not wrapped in a group
                    failed = exc
            tg.cancel_scope.cancel()
        if failed is not None:
            raise failed
        if outcome:
            return outcome[0]
        if lost is not None and not isinstance(lost, DeadlineExceededError):
            raise lost
        raise DeadlineExceededError(
            f"no time left for {self.model.id}: the call's budget ran out while it waited for a turn on "
            f"server {server}, which was running its max_concurrent requests (servers.max_concurrent); retry "
            "later, or raise max_concurrent if the server can run more at once",
            retryable=True,
            details={"model": self.model.id, "server": server, "budget": "call"},
        )

    def _allows(self, server: str) -> bool:
        breaker = self.breakers.get(server)
        return breaker is None or breaker.allows()

    async def _slot_elsewhere(self, ctx: RequestContext, call: _CallTrace, avoid: frozenset[str]) -> None:
        """Trade the slot held on ``call.server`` for one on a server not in ``avoid``, waiting in line for it
        (with one server, or when every one is avoided, any slot). While in line the request holds none."""
        call.holds_slot = False
        self.slots.release(call.server)
        call.server = await self.slots.acquire(caller=ctx.caller, allowed=self._allows, avoid=avoid)
        call.holds_slot = True

    async def _server_for(self, ctx: RequestContext, call: _CallTrace) -> tuple[str, LLMClient]:
        """The server of the slot this request holds; if its breaker is open, a slot on another server whose
        breaker lets calls through (waiting in line for it). Fails fast when no breaker does."""
        if not self._allows(call.server):
            if not any(map(self._allows, self.breakers)):
                raise self._all_open()
            closed = frozenset(name for name in self.breakers if self._allows(name))
            await self._slot_elsewhere(ctx, call, frozenset(self.breakers) - closed)
        if call.server not in self._client:  # a worker built for no reachable server (cannot be asked)
            raise self._all_open()
        return call.server, self._client[call.server]

    def _all_open(self) -> BridgeError:
        """``backend_unavailable`` at once, with the wait until the soonest breaker lets a probe through."""
        soonest = min(self.breakers.values(), key=lambda breaker: breaker.remaining_cooldown())
        error = soonest.open_error()
        if len(self.breakers) > 1:
            error.details["servers"] = sorted(self.breakers)
        error.details["model"] = self.model.id
        return error

    def _budgets(self, ctx: RequestContext) -> Budgets:
        remaining = ctx.remaining()
        if remaining <= 0:
            raise DeadlineExceededError(
                f"no time left for {self.model.id}: the call's budget ran out while it was queued; "
                "retry with a longer time budget or fewer concurrent calls",
                details={"model": self.model.id, "budget": "call"},
            )
        budgets = self.settings.budgets
        # End the LLM call a little before the asker's deadline, so the client's own timeout (which
        # keeps the text generated so far) wins the race against the ask's deadline.
        remaining = max(remaining - min(0.5, remaining * 0.05), remaining / 2)
        total = remaining if budgets.total is None else min(budgets.total, remaining)
        return Budgets(connect=budgets.connect, first_token=budgets.first_token, idle=budgets.idle, total=total)

    def _cut_by_caller(self, exc: LLMTimeoutError) -> bool:
        """Whether the call's ``total`` budget was the caller's deadline rather than the configured one."""
        configured = self.settings.budgets.total
        total = exc.details.get("seconds")
        return configured is None or (isinstance(total, int | float) and total < configured)

    def _out_of_call_time(self, exc: LLMTimeoutError) -> DeadlineExceededError:
        """The caller's time ran out mid-generation: a typed timeout that keeps what was generated."""
        return DeadlineExceededError(
            f"{self.model.id} was still generating when the call's time ran out, so the bridge stopped it "
            f"({exc.details.get('tokens', 0)} tokens so far; the text so far is in partial_content). Ask for "
            "less output (max_tokens), or give the call a longer time budget",
            retryable=True,
            details={**exc.details, "actor": self.name, "model": self.model.id, "budget": "total"},
        )

    def _wait_estimate(self) -> float:
        typical = _percentile(self.latencies, 0.5) or 1.0
        return round(max(0.1, typical * (self.slots.queued + 1) / self.slots.slots), 2)

    def _served(self, call: _CallTrace, outcome: Generation) -> dict[str, Any]:
        """The fields every generation's result has: which model and server, how fast, after how many retries."""
        return {
            "model": outcome.model or self.model.id,
            "usage": outcome.usage,
            "server": call.server,
            "time_to_first_token_s": outcome.time_to_first_token,
            "duration_s": outcome.duration,
            "retries": call.retries,
        }

    def _record_generation(self, call: _CallTrace, outcome: Generation) -> dict[str, Any]:
        """Add one generation to the latency and rate windows; return the fields chat and completion results share."""
        rate = self._record(outcome.time_to_first_token, outcome.tokens, outcome.duration)
        return self._served(call, outcome) | {
            "queued_s": call.queued_s,
            "tokens": outcome.tokens,
            "tokens_per_second": rate,
        }

    def _record(self, ttft: float | None, tokens: int, duration: float) -> float | None:
        if ttft is not None:
            self.ttfts.append(ttft)
        generating = duration - (ttft or 0.0)
        rate = tokens / generating if tokens > 1 and generating > 0 else None
        if rate is not None:
            self.rates.append(rate)
        return rate

    # --- the four kinds of work ------------------------------------------------------------------
    async def _chat(self, message: Chat, ctx: RequestContext) -> ChatResult:
        if self.model.context_length:  # else nothing to fit to: no estimate on the way
            size = await self.token_counter.size(
                message.messages, message.tools, self.model.context_length, self.clients, ctx.deadline
            )
            fitted = fitted_max_tokens(size, message.max_tokens, self.model.context_length, self.model.id)
            message = msgspec.structs.replace(message, max_tokens=fitted)
        request = _llm_request(
            message,
            ChatRequest,
            model=self.model.id,
            # "auto" is the default of the OpenAI API, but llama-cpp-python's function-calling formats put
            # the tools in the prompt only when tool_choice is given: say it whenever there are tools.
            tool_choice=message.tool_choice or ("auto" if message.tools else None),
        )
        call = _CallTrace()

        async def attempt(
            client: LLMClient, budgets: Budgets, progress: Callable[[StreamProgress], Awaitable[None]]
        ) -> ChatOutcome:
            server = call.server
            if request.tools and server in self.unstreamed_tools:
                return await client.chat(request, stream=False, budgets=budgets, on_progress=progress)
            try:
                return await client.chat(request, budgets=budgets, on_progress=progress)
            except StreamingRefusedError:
                if not request.tools:
                    raise
                log.info("%s: %s refuses streamed tool choice; asking without streaming", self.model.id, server)
                self.unstreamed_tools.add(server)
                return await client.chat(request, stream=False, budgets=budgets, on_progress=progress)

        outcome, _ = await self._run(ctx, attempt, patient=message.wait_for_slot, call=call)
        return ChatResult(
            content=outcome.content,
            reasoning=outcome.reasoning if message.include_reasoning else None,
            tool_calls=outcome.tool_calls,
            finish_reason=outcome.finish_reason,
            **self._record_generation(call, outcome),
        )

    async def _complete(self, message: Complete, ctx: RequestContext) -> CompletionResult:
        if self.model.context_length:
            size = await self.token_counter.size(
                message.prompt, None, self.model.context_length, self.clients, ctx.deadline
            )
            fitted = fitted_max_tokens(size, message.max_tokens, self.model.context_length, self.model.id)
            message = msgspec.structs.replace(message, max_tokens=fitted)
        request = _llm_request(message, CompletionRequest, model=self.model.id)
        outcome, call = await self._run(
            ctx,
            lambda client, budgets, progress: client.complete(
                request, stream=True, budgets=budgets, on_progress=progress
            ),
        )
        return CompletionResult(
            text=outcome.text, finish_reason=outcome.finish_reason, **self._record_generation(call, outcome)
        )

    async def _embed(self, message: Embed, ctx: RequestContext) -> EmbeddingResult:
        request = _llm_request(message, EmbeddingRequest, model=self.model.id)
        outcome, call = await self._run(ctx, lambda client, budgets, _: client.embed(request, budgets=budgets))
        return EmbeddingResult(
            model=outcome.model or self.model.id,
            vectors=outcome.vectors,
            dimensions=len(outcome.vectors[0]) if outcome.vectors else 0,
            usage=outcome.usage,
            server=call.server,
            duration_s=outcome.duration,
        )

    async def _respond(self, message: Respond, ctx: RequestContext) -> ResponseResult:
        request = _llm_request(message, ResponsesRequest, model=self.model.id)
        outcome, call = await self._run(
            ctx, lambda client, budgets, progress: client.respond(request, budgets=budgets, on_progress=progress)
        )
        self._record(outcome.time_to_first_token, outcome.tokens, outcome.duration)
        return ResponseResult(
            id=outcome.id,
            content=outcome.content,
            reasoning=outcome.reasoning if message.include_reasoning else None,
            tool_calls=outcome.tool_calls,
            status=outcome.status,
            **self._served(call, outcome),
        )

    def _stats(self) -> WorkerStats:
        return WorkerStats(
            model=self.model.id,
            servers=[name for name, _ in self.clients],
            slots=self.slots.slots,
            queue_limit=self.slots.queue_limit,
            queued=self.slots.queued,
            in_flight=self.slots.in_use,
            completed=self.completed,
            failed=self.failed,
            busy_rejections=self.busy_rejections,
            retries=self.retries,
            latency_p50_s=_percentile(self.latencies, 0.5),
            latency_p90_s=_percentile(self.latencies, 0.9),
            latency_p99_s=_percentile(self.latencies, 0.99),
            ttft_p50_s=_percentile(self.ttfts, 0.5),
            tokens_per_second_p50=_percentile(self.rates, 0.5),
            breakers={name: breaker.state.value for name, breaker in self.breakers.items()},
            restarts=self.ref.restarts,
            callers=self._callers(),
            capacity=self.capacity,
        )

    def _callers(self) -> dict[str, CallerLoad]:
        queued = self.slots.queued_by_caller()
        return {
            caller: CallerLoad(in_flight=self.in_flight_by_caller.get(caller, 0), queued=queued.get(caller, 0))
            for caller in sorted({*self.in_flight_by_caller, *queued})
        }
