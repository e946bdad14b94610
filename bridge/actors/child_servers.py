"""ChildServersActor: the configured child MCP servers, their sessions, and hot reload.

It owns the merged configuration (:mod:`bridge.children.config`) and one
:class:`~bridge.actors.mcp_session.MCPSessionActor` per enabled server, each
started under the ``sessions`` supervisor it is given (a supervisor dedicated
to it). Starting a session actor is cheap: the child process itself starts on
first use, unless the server is ``eager``.

Hot reload (when ``settings.watch``): a background task polls the config files
(:class:`~bridge.children.watch.ConfigWatcher`) and applies each change as it
is seen:

* an added server gets a session at once (callable as soon as it is routed);
* a removed server stops routing at once, and its session is stopped in the
  background: calls in flight finish first (up to the session's grace);
* a changed server gets a *new* session under a fresh actor name (``name#2``,
  ``name#3``...); new calls are routed to it from that moment, while the old
  session finishes the calls it has and is then stopped, as for a removal.
  So a change never cuts a call short;
* a file that stops parsing keeps its last good servers (the loader does
  that); the error is logged and listed in ``ListChildServers.errors``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio
import msgspec

from bridge.actors.mcp_session import MCPSessionActor, SessionPolicy
from bridge.children import (
    ApprovalRecords,
    ChildrenConfig,
    ConfigLoader,
    ConfigSource,
    ConfigUpdate,
    ConfigWatcher,
    ServerConfig,
    claude_code_records,
    default_sources,
    same_server,
)
from bridge.children.process import ProcessGroups
from bridge.errors import (
    ActorUnavailableError,
    BadRequestError,
    BridgeError,
    BusyError,
    ChildServerDownError,
    ConfigError,
    ErrorInfo,
)
from bridge.messages import (
    CallChildTool,
    CallTool,
    ChildServerInfo,
    ChildServerList,
    ChildServersMessage,
    ChildToolCatalog,
    ChildToolList,
    DescribeSession,
    GetSessionConfig,
    ListChildServers,
    ListChildTools,
    ListTools,
    Request,
    SessionMessage,
    StartChildServer,
)
from bridge.runtime import (
    Actor,
    ActorRef,
    ChildAlreadyStartedError,
    ChildSpec,
    ChildState,
    Forwarded,
    RequestContext,
    RestartPolicy,
    SupervisorRef,
)
from bridge.settings import ChildSettings

__all__ = ["ChildServersActor"]

log = logging.getLogger("bridge.actors.child_servers")

R = TypeVar("R")

_DESCRIBE_TIMEOUT: Final = 2.0  # DescribeSession answers at once; this only bounds a wedged mailbox
_ASK_MARGIN: Final = 1.0  # a session's default ask deadline beyond its own call deadline


class ChildServersActor(Actor[ChildServersMessage]):
    """Serves :data:`~bridge.messages.ChildServersMessage`: lists servers and tools, routes tool calls.

    Args:
        settings: Config files to read, deadlines, grace, and whether to watch the files.
        sessions: The supervisor to start the session actors under. It must be dedicated to
            this actor: on (re)start, this actor stops every child it finds there.
        sources: Config files to read, highest precedence first (default:
            :func:`~bridge.children.default_sources` of ``settings.config_paths``).
        environ: Variables for ``${VAR}`` expansion and the nesting check (default: ``os.environ``).
        working_dir: Where a stdio child without its own ``cwd`` runs (default: the bridge's own);
            a shared bridge gives each session's children that session's directory.
        policy: Pings and restarts of every session (see :class:`SessionPolicy`).
        watch_interval: Seconds between polls of the config files, when watching.
        groups: The bridge's registry of child process groups, handed to every session.
    """

    def __init__(
        self,
        settings: ChildSettings,
        sessions: SupervisorRef,
        *,
        sources: Sequence[ConfigSource] | None = None,
        environ: Mapping[str, str] | None = None,
        policy: SessionPolicy | None = None,
        watch_interval: float = 0.2,
        groups: ProcessGroups | None = None,
        working_dir: str | None = None,
    ) -> None:
        super().__init__()
        self._working_dir = working_dir
        self.settings = settings
        self.sessions = sessions
        self._sources = None if sources is None else list(sources)
        self._environ = environ
        self._policy = policy
        self._watch_interval = watch_interval
        self._groups = groups
        self._watcher: ConfigWatcher | None = None
        self._config = ChildrenConfig()
        self._routes: dict[str, ActorRef[SessionMessage]] = {}
        self._generations: dict[str, int] = {}
        self._start_errors: dict[str, BridgeError] = {}
        self._started: dict[str, ServerConfig] = {}  # standard servers started for a compat tool
        self._starting = anyio.Lock()  # one at a time: two calls at once for one package start one server

    @property
    def config(self) -> ChildrenConfig:
        """The configuration in force (the last good one of each file)."""
        return self._config

    # --- life -------------------------------------------------------------------------------------

    async def on_start(self) -> None:
        sources = self._sources
        if sources is None:
            environ = os.environ if self._environ is None else self._environ
            sources = default_sources(self.settings.config_paths, environ=environ)
        approvals = self._approval_records()
        if self.settings.watch:
            self._watcher = ConfigWatcher(
                sources, environ=self._environ, interval=self._watch_interval, approvals=approvals
            )
            config = self._watcher.current
        else:
            config = ConfigLoader(sources, environ=self._environ, approvals=approvals).load()
        config = self._config = self._placed(config)
        for error in config.errors:
            log.warning("MCP server configuration: %s", error)
        await self._adopt_leftover_sessions()
        for server in config.enabled().values():
            if server.name not in self._routes:
                await self._start_session(server)
        log.info(
            "child MCP servers: %d configured (%d enabled) from %s",
            len(config.servers),
            len(config.enabled()),
            ", ".join(str(path) for path in config.sources) or "no config file",
        )
        if self._watcher is not None:
            self.start_background(self._watch, name="child-servers config watcher")

    def _approval_records(self) -> ApprovalRecords:
        """The user's approvals of project servers: this bridge's list and Claude Code's records."""
        environ = os.environ if self._environ is None else self._environ
        home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
        claude_config, claude_settings = claude_code_records(environ, home)
        return ApprovalRecords(
            approved=frozenset(self.settings.approved_project_servers),
            claude_config=claude_config,
            claude_settings=claude_settings,
        )

    async def _adopt_leftover_sessions(self) -> None:
        """A previous incarnation's sessions: route to those still configured the same, stop the rest.

        A crash or restart of this actor must not touch a tool call in flight: the session
        answers its caller directly, and here it is adopted, child process and all. A session
        whose server was removed or changed meanwhile is stopped (it drains its calls first).
        """
        try:
            book = self.sessions.supervisor.address_book
        except ActorUnavailableError as exc:
            log.warning("cannot list the sessions supervisor's children: %s", exc.message)
            return
        enabled = self._config.enabled()
        matching: dict[str, list[tuple[int, ActorRef[SessionMessage]]]] = {}
        stale: list[str] = []
        for actor_name, ref in book.items():
            base, _, suffix = actor_name.partition("#")
            generation = int(suffix) if suffix.isdigit() else 1
            self._generations[base] = max(self._generations.get(base, 0), generation)
            wanted = enabled.get(base)
            session: ActorRef[SessionMessage] | None = ref if isinstance(ref, ActorRef) else None
            running = None
            if wanted is not None and session is not None and session.state is ChildState.RUNNING:
                try:
                    running = await session.ask(GetSessionConfig(), timeout=_DESCRIBE_TIMEOUT)
                except BridgeError as exc:
                    log.info("session %r did not describe itself: %s", actor_name, exc.message)
            if wanted is not None and session is not None and running is not None and same_server(running, wanted):
                matching.setdefault(base, []).append((generation, session))
            else:
                stale.append(actor_name)
        adopted: dict[str, ActorRef[SessionMessage]] = {}
        for base, candidates in matching.items():
            candidates.sort(key=lambda candidate: candidate[0])
            adopted[base] = candidates[-1][1]  # the newest; older ones were being replaced
            stale.extend(ref.name for _, ref in candidates[:-1])
        self._routes.update(adopted)
        if adopted:
            log.info("adopted %d running session(s) of a previous incarnation", len(adopted))
        for actor_name in stale:
            self.start_background(partial(self._stop_session, actor_name), name=f"stop session {actor_name}")

    async def _start_session(self, server: ServerConfig) -> bool:
        """Start a session actor for ``server`` under a fresh name and route calls to it (False if it failed).

        The route changes only once the new session is there: a call never finds the name unrouted.
        """
        name = server.name
        while True:
            generation = self._generations.get(name, 0) + 1
            self._generations[name] = generation
            actor_name = name if generation == 1 else f"{name}#{generation}"
            spec: ChildSpec[SessionMessage] = ChildSpec(
                actor_name,
                partial(MCPSessionActor, server, self.settings, policy=self._policy, groups=self._groups),
                restart=RestartPolicy.TRANSIENT,
                ask_timeout=(server.timeout or self.settings.call_timeout) + _ASK_MARGIN,
                shutdown_grace=max(server.timeout or 0.0, self.settings.call_timeout),
            )
            try:
                self._routes[name] = await self.sessions.start_child(spec)
            except ChildAlreadyStartedError:
                continue  # a session of that name is still stopping: take the next generation
            except BridgeError as exc:
                self._start_errors[name] = exc
            else:
                self._start_errors.pop(name, None)
                return True
            log.error("could not start the session of child %r: %s", name, self._start_errors[name].message)
            return False

    async def _stop_session(self, actor_name: str) -> None:
        """Stop one session actor; it drains its calls in flight first. Never raises."""
        try:
            await self.sessions.stop_child(actor_name)
        except BridgeError as exc:
            log.warning("could not stop session %r: %s", actor_name, exc.message)

    def _retire(self, name: str) -> None:
        """Stop routing to ``name``'s session now; stop the session in the background."""
        ref = self._routes.pop(name, None)
        self._start_errors.pop(name, None)
        if ref is not None:
            self.start_background(partial(self._stop_session, ref.name), name=f"stop session {ref.name}")

    def _placed(self, config: ChildrenConfig) -> ChildrenConfig:
        """A shared bridge's session: each stdio server runs in the session's directory (unless it names
        its own ``cwd``) and starts from the session's environment, not the bridge's (another session's)."""
        if self._working_dir is None:
            return config
        environ = dict(self._environ) if self._environ is not None else None
        servers = {
            name: msgspec.structs.replace(server, cwd=server.cwd or self._working_dir, inherited_env=environ)
            if server.transport == "stdio"
            else server
            for name, server in config.servers.items()
        }
        return msgspec.structs.replace(config, servers=servers)

    # --- hot reload -------------------------------------------------------------------------------

    async def _watch(self) -> None:
        assert self._watcher is not None
        async for update in self._watcher:
            await self._apply(update)

    async def _apply(self, update: ConfigUpdate) -> None:
        old, new, diff = self._config, self._placed(update.config), update.diff
        self._config = new
        for error in new.errors:
            if error not in old.errors:
                log.warning("MCP server configuration: %s", error)
        if not diff.empty:
            log.info(
                "MCP server configuration changed: added %s, removed %s, changed %s",
                list(diff.added),
                list(diff.removed),
                list(diff.changed),
            )
        for name in diff.removed:
            self._retire(name)
        for name in (*diff.added, *diff.changed):
            server = new.servers[name]
            old_ref = self._routes.get(name)
            if server.disabled or not await self._start_session(server):
                self._routes.pop(name, None)
            if old_ref is not None:
                self.start_background(partial(self._stop_session, old_ref.name), name=f"stop session {old_ref.name}")

    # --- requests ---------------------------------------------------------------------------------

    async def handle(self, message: ChildServersMessage, ctx: RequestContext) -> object:
        match message:
            case CallChildTool():
                return await self._call(message, ctx)
            case ListChildTools():
                return await self._list_tools(message, ctx)
            case ListChildServers():
                return await self._list_servers(ctx)
            case StartChildServer():
                return await self._standard_server(message)

    def _route(self, name: str) -> ActorRef[SessionMessage]:
        """The session of server ``name``, or the error that says why there is none."""
        ref = self._routes.get(name)
        if ref is not None:
            return ref
        config = self._config
        server = config.servers.get(name)
        if server is not None and server.disabled:
            raise BadRequestError(
                f'child server {name!r} is disabled in {server.source}; set "disabled": false there to use it',
                details={"server": name, "state": "disabled"},
            )
        if name in self._start_errors:
            error = self._start_errors[name]
            raise ChildServerDownError(
                f"child server {name!r} has no session: {error.message}", details={"server": name}
            ) from error
        if name in config.skipped:
            raise BadRequestError(
                f"child server {name!r} is not started: {config.skipped[name]}",
                details={"server": name, "state": "skipped"},
            )
        if name in config.needs_approval:
            raise BadRequestError(
                f"child server {name!r} is not started: {config.needs_approval[name]}",
                details={"server": name, "state": "needs_approval"},
            )
        if name in config.invalid:
            raise ConfigError(
                f"child server {name!r} cannot be used: {config.invalid[name]}",
                details={"server": name, "state": "invalid"},
            )
        known = sorted(self._routes)
        files = ", ".join(str(path) for path in config.sources) or "e.g. .mcp.json"
        listed = ", ".join(repr(known_name) for known_name in known) if known else "none are configured"
        raise BadRequestError(
            f"no child MCP server is named {name!r}; the ones available: {listed}. Check the name, or add the "
            f"server to an mcpServers config file ({files})",
            details={"server": name, "available": known},
        )

    async def _ask_session(self, name: str, message: Request[R], ctx: RequestContext) -> R:
        """Ask the session of ``name``; if it was replaced meanwhile (hot reload), ask its successor once."""
        ref = self._route(name)
        try:
            return await ref.ask(message, timeout=ctx.remaining())
        except (ActorUnavailableError, ChildServerDownError) as exc:
            successor = self._routes.get(name)
            stopping = isinstance(exc, ActorUnavailableError) or exc.details.get("reason") == "stopping"
            if successor is None or successor is ref or not stopping:
                raise
            return await successor.ask(message, timeout=ctx.remaining())

    async def _call(self, message: CallChildTool, ctx: RequestContext) -> Forwarded:
        """Hand the tool call on to the server's session, which answers the caller directly.

        This actor never waits for a tool: its crash, restart or hot reload leaves every call
        already with a session untouched. A session that was replaced just now refuses the
        post, and the call goes to its successor.
        """
        call = CallTool(tool=message.tool, arguments=message.arguments, timeout=message.timeout)
        ref = self._route(message.server)
        try:
            return await ctx.forward(ref, call)
        except ActorUnavailableError:
            successor = self._routes.get(message.server)
            if successor is None or successor is ref:
                raise
            return await ctx.forward(successor, call)

    async def _list_tools(self, message: ListChildTools, ctx: RequestContext) -> ChildToolCatalog:
        names = list(dict.fromkeys(message.servers)) or list(self._routes)
        found: dict[str, ChildToolList] = {}
        errors: dict[str, ErrorInfo] = {}

        async def list_one(name: str) -> None:
            try:
                tools = await self._ask_session(name, ListTools(), ctx)
            except BridgeError as exc:
                errors[name] = exc.to_info()
            else:
                found[name] = tools

        async with anyio.create_task_group() as task_group:
            for name in names:
                task_group.start_soon(list_one, name)
        return ChildToolCatalog(servers=[found[name] for name in names if name in found], errors=errors)

    async def _standard_server(self, wanted: StartChildServer) -> str:
        """A configured server that runs the package (and covers the roots), else one started for it."""
        async with self._starting:
            return await self._find_or_start(wanted)

    async def _find_or_start(self, wanted: StartChildServer) -> str:
        args, env = tuple(wanted.args), dict(wanted.env)
        for name, server in {**self._config.enabled(), **self._started}.items():
            same = name in self._started and (server.command, server.args, server.env) == (wanted.command, args, env)
            fits = _runs(server, wanted.package) and _covers(server, wanted.roots) and (not env or server.env == env)
            if (same or fits) and name in self._routes:
                return name
        if len(self._started) >= MAX_STARTED_SERVERS:
            raise BusyError(
                f"this session already runs {len(self._started)} standard child servers that compat tools "
                f"started (at most {MAX_STARTED_SERVERS}); reuse a working directory, or configure the server "
                "in .mcp.json",
                details={"servers": sorted(self._started)},
            )
        taken = set(self._config.servers) | set(self._started)
        name = next(n for n in (wanted.name, *(f"{wanted.name}-{i}" for i in range(2, 100))) if n not in taken)
        server = ServerConfig(
            name=name,
            transport="stdio",
            command=wanted.command,
            args=args,
            env=env,
            env_passthrough=tuple(wanted.env_passthrough),
            cwd=self._working_dir,
            inherited_env=dict(self._environ) if self._environ is not None else None,
            source=f"started by the bridge for a compat tool ({wanted.package})",
        )
        self._started[name] = server
        if not await self._start_session(server):
            del self._started[name]
            self._route(name)  # raises the start error
        log.info("started the standard child server %r: %s %s", name, wanted.command, " ".join(wanted.args))
        return name

    async def _list_servers(self, ctx: RequestContext) -> ChildServerList:
        config = self._config
        rows: dict[str, ChildServerInfo] = {}

        async def describe(name: str, server: ServerConfig, ref: ActorRef[SessionMessage]) -> None:
            try:
                rows[name] = await ref.ask(DescribeSession(), timeout=min(_DESCRIBE_TIMEOUT, ctx.remaining()))
            except BridgeError as exc:
                rows[name] = _row(server, state=_actor_state(ref), last_error=exc.message)

        async with anyio.create_task_group() as task_group:
            for name, server in {**config.servers, **self._started}.items():
                ref = self._routes.get(name)
                if server.disabled:
                    rows[name] = _row(server, state="disabled", note=f'"disabled": true in {server.source}')
                elif ref is not None:
                    task_group.start_soon(describe, name, server, ref)
                else:
                    start_error = self._start_errors.get(name)
                    last_error = None if start_error is None else start_error.message
                    rows[name] = _row(server, state="failed", last_error=last_error)
        for name, reason in config.skipped.items():
            source = config.origins.get(name, "")
            rows[name] = ChildServerInfo(name=name, transport="stdio", source=source, state="skipped", note=reason)
        for name, how in config.needs_approval.items():
            source = config.origins.get(name, "")
            rows[name] = ChildServerInfo(
                name=name, transport="unknown", source=source, state="needs_approval", note=how
            )
        for name, error in config.invalid.items():
            rows[name] = ChildServerInfo(
                name=name,
                transport="unknown",
                source=config.origins.get(name, ""),
                state="failed",
                last_error=error,
                note="invalid definition",
            )
        errors = [*config.errors, *(f"{name}: {error.message}" for name, error in self._start_errors.items())]
        return ChildServerList(servers=[rows[name] for name in sorted(rows)], errors=errors)


MAX_STARTED_SERVERS: Final = 8
"""Standard child servers one session's compat tools may start (each a process)."""


def _runs(server: ServerConfig, package: str) -> bool:
    """Whether ``server`` runs ``package`` (``npx -y @scope/pkg``, ``uvx pkg``, ``pkg`` itself, a pinned version)."""
    words = [server.command or "", *server.args]
    return any(w == package or w.startswith(package + "@") or w.endswith("/" + package) for w in words)


def _covers(server: ServerConfig, roots: Sequence[str]) -> bool:
    """Whether a filesystem server's directory arguments include every one of ``roots``."""
    if not roots:
        return True
    base = Path(server.cwd or ".")
    paths = [arg for arg in server.args if not arg.startswith(("-", "@")) and ("/" in arg or arg in (".", "~"))]
    dirs = [(base / Path(arg).expanduser()).resolve() for arg in paths]
    return all(any(Path(root).resolve().is_relative_to(d) for d in dirs) for root in roots)


def _row(
    server: ServerConfig, *, state: str, last_error: str | None = None, note: str | None = None
) -> ChildServerInfo:
    return ChildServerInfo(
        name=server.name,
        transport=server.transport,
        source=server.source,
        state=state,
        last_error=last_error,
        note=note,
    )


def _actor_state(ref: ActorRef[Any]) -> str:
    """A session's state as far as its address tells, when it cannot answer."""
    return "restarting" if ref.state.value in ("starting", "restarting") else "failed"
