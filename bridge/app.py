"""Assembling the running bridge: its LLM clients, its supervision tree, and their addresses.

``open_bridge(settings)`` opens one pooled client per server, starts the tree
that :mod:`bridge.supervisor` describes, and closes all in reverse order; the
HTTP clients close last.

Every child MCP server's process group is registered in one
:class:`~bridge.children.process.ProcessGroups` (``Bridge.groups``), so a
signal can stop them all whatever the actors are doing; what is left when the
bridge has stopped is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import anyio

from bridge.children.process import ProcessGroups
from bridge.errors import BridgeError
from bridge.llm import LLMClient
from bridge.messages import AwaitSessionJobs, ChildServersMessage, JobsMessage, PlannerMessage, RegistryMessage
from bridge.runtime import ActorRef, Supervisor, open_supervisor
from bridge.settings import BridgeSettings, ChildSettings
from bridge.supervisor import server_name, start_bridge_actors, start_session_actors

__all__ = ["Bridge", "open_bridge", "open_session", "server_name"]


class Bridge:
    """The addresses of a running bridge. Caution: built by :func:`open_bridge` and :func:`open_session` only.

    ``caller``: the session these addresses serve (a shared bridge's session; ``""`` for ``serve``), named
    in every request so that each model's slots go to the sessions in turn. ``jobs`` are the bridge's,
    shared by its sessions; ``planner_route`` is where under ``supervisor`` this session's planner is;
    ``working_dir`` is the session's (where relative image paths are taken from) and ``environ`` its
    environment (a shared bridge's session: its relay's; else this process's).
    """

    def __init__(
        self,
        settings: BridgeSettings,
        supervisor: Supervisor,
        registry: ActorRef[RegistryMessage],
        children: ActorRef[ChildServersMessage] | None,
        clients: dict[str, LLMClient],
        planner: ActorRef[PlannerMessage] | None = None,
        groups: ProcessGroups | None = None,
        caller: str = "",
        jobs: ActorRef[JobsMessage] | None = None,
        working_dir: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.caller = caller
        self.working_dir = working_dir or os.getcwd()
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.jobs = jobs
        self.planner_route = f"{caller}/planner" if caller else "planner"
        self.clients = clients
        self.supervisor = supervisor
        self.registry = registry
        self.children = children
        self.planner = planner
        self.groups = groups if groups is not None else ProcessGroups()


@asynccontextmanager
async def open_bridge(
    settings: BridgeSettings, *, child_servers: bool = True, groups: ProcessGroups | None = None
) -> AsyncIterator[Bridge]:
    """Run the bridge for the body of the ``async with``; no network is touched until a request needs it.

    ``groups``: the registry of child process groups, when the caller must reach the children
    before the bridge is up or after it is gone (``serve_stdio``'s signal handling); else its own.
    """
    groups = groups if groups is not None else ProcessGroups()
    async with AsyncExitStack() as stack:
        stack.callback(_kill_leftovers, groups)  # LIFO: after the supervisor has stopped every child
        clients: dict[str, LLMClient] = {}
        for server in settings.servers:
            name = server_name(server)
            if name in clients:
                raise ValueError(f"two servers are named {name!r}; give them distinct names")
            clients[name] = await stack.enter_async_context(
                LLMClient(server.url, api_key=server.api_key, budgets=settings.budgets, max_connections=256)
            )
        supervisor = await stack.enter_async_context(open_supervisor("bridge", intensity=10, period=10.0))
        actors = await start_bridge_actors(supervisor, settings, clients, groups, child_servers=child_servers)
        yield Bridge(
            settings, supervisor, actors.registry, actors.children, clients, actors.planner, groups, jobs=actors.jobs
        )


@asynccontextmanager
async def open_session(
    bridge: Bridge, name: str, child: ChildSettings | None, *, working_dir: str, environ: Mapping[str, str]
) -> AsyncIterator[Bridge]:
    """One session of a shared bridge: the shared registry and workers, and child servers of its own.

    ``child`` ``None``: the session has no child servers (``serve --no-child-servers``). The
    session's actors stop when the body ends; the shared ones keep running.
    """
    if child is None:
        yield Bridge(
            bridge.settings,
            bridge.supervisor,
            bridge.registry,
            None,
            bridge.clients,
            None,
            bridge.groups,
            caller=name,
            jobs=bridge.jobs,
            working_dir=working_dir,
            environ=environ,
        )
        return
    session, actors = await start_session_actors(
        bridge.supervisor, name, child, bridge.registry, bridge.groups, working_dir=working_dir, environ=environ
    )
    try:
        yield Bridge(
            bridge.settings,
            bridge.supervisor,
            actors.registry,
            actors.children,
            bridge.clients,
            actors.planner,
            bridge.groups,
            caller=name,
            jobs=bridge.jobs,
            working_dir=working_dir,
            environ=environ,
        )
    finally:
        await _outlive_session_jobs(bridge, session.name)
        with anyio.CancelScope(shield=True):
            await bridge.supervisor.stop_child(session.name)


async def _outlive_session_jobs(bridge: Bridge, session: str) -> None:
    """A session's autonomous jobs use its child servers: stop them only once those jobs ended.

    Not shielded: the bridge shutting down cancels the wait (and the jobs with it).
    """
    if bridge.jobs is None:
        return
    with contextlib.suppress(BridgeError):
        await bridge.jobs.ask(AwaitSessionJobs(session=session), timeout=bridge.settings.jobs.time_budget)


def _kill_leftovers(groups: ProcessGroups) -> None:
    """No child may outlive the bridge: kill the groups whose stop sequence did not see them gone."""
    groups.close()
    groups.signal_all(signal.SIGKILL)
