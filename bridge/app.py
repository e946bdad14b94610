"""Assembling the running bridge: clients, the supervisor tree, and its addresses.

``open_bridge(settings)`` is the one place that decides what runs under what::

    bridge (one_for_one)
    ├── gates        one ServerGateActor per server with a server-wide limit (max_concurrent)
    ├── workers      supervisor: one LLMWorkerActor per model, started on first use
    ├── registry     ModelRegistryActor
    ├── sessions     supervisor: one MCPSessionActor per child MCP server
    ├── children     ChildServersActor (configuration, hot reload, routing)
    └── planner      PlannerActor (autonomous runs)

Children stop in reverse order, so the registry stops taking requests before
the workers finish theirs, and the HTTP clients close last.

Every child MCP server's process group is registered in one
:class:`~bridge.children.process.ProcessGroups` (``Bridge.groups``), so a
signal can stop them all whatever the actors are doing; what is left when the
bridge has stopped is killed.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from bridge.actors._ref import ActorRef
from bridge.actors.child_servers import ChildServersActor
from bridge.actors.planner import PlannerActor
from bridge.actors.registry import ModelRegistryActor
from bridge.actors.server_gate import ServerGateActor
from bridge.children import ConfigSource, default_sources
from bridge.children.process import ProcessGroups
from bridge.llm import LLMClient
from bridge.messages import ChildServersMessage, PlannerMessage, RegistryMessage, ServerGateMessage
from bridge.settings import BridgeSettings, ChildSettings, ServerSettings
from bridge.supervisor import ChildSpec, Supervisor, SupervisorSpec, open_supervisor

__all__ = ["Bridge", "open_bridge", "server_name"]


def server_name(server: ServerSettings) -> str:
    """The name a server is known by: its configured name, else ``host:port``."""
    if server.name:
        return server.name
    parts = urlsplit(server.url if "://" in server.url else f"http://{server.url}")
    return parts.netloc or server.url


class Bridge:
    """The addresses of a running bridge. Caution: built by :func:`open_bridge` only."""

    def __init__(
        self,
        settings: BridgeSettings,
        supervisor: Supervisor,
        registry: ActorRef[RegistryMessage],
        children: ActorRef[ChildServersMessage] | None,
        clients: dict[str, LLMClient],
        planner: ActorRef[PlannerMessage] | None = None,
        groups: ProcessGroups | None = None,
    ) -> None:
        self.settings = settings
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
        gates = await _start_server_gates(supervisor, settings)
        workers = await supervisor.start_child(SupervisorSpec("workers", intensity=50, period=10.0))
        registry: ActorRef[RegistryMessage] = await supervisor.start_child(
            ChildSpec(
                "registry",
                lambda: ModelRegistryActor(settings, clients, workers, gates),
                mailbox_size=1024,
                ask_timeout=settings.call_budget,
            )
        )
        children = await _start_child_servers(supervisor, settings, groups) if child_servers else None
        planner: ActorRef[PlannerMessage] | None = None
        if children is not None:
            child_ref = children
            planner = await supervisor.start_child(
                ChildSpec("planner", lambda: PlannerActor(registry, child_ref), mailbox_size=256)
            )
        yield Bridge(settings, supervisor, registry, children, clients, planner, groups)


async def _start_server_gates(
    supervisor: Supervisor, settings: BridgeSettings
) -> dict[str, ActorRef[ServerGateMessage]]:
    """A gate per server that has a server-wide limit; they stop after the workers that use them."""
    limited = [(server_name(s), s.max_concurrent) for s in settings.servers if s.max_concurrent is not None]
    gates: dict[str, ActorRef[ServerGateMessage]] = {}
    if not limited:
        return gates
    group = await supervisor.start_child(SupervisorSpec("gates", intensity=50, period=10.0))
    for name, limit in limited:
        spec: ChildSpec[ServerGateMessage] = ChildSpec(
            name, functools.partial(ServerGateActor, name, limit), mailbox_size=1024
        )
        gates[name] = await group.start_child(spec)
    return gates


def _kill_leftovers(groups: ProcessGroups) -> None:
    """No child may outlive the bridge: kill the groups whose stop sequence did not see them gone."""
    groups.close()
    groups.signal_all(signal.SIGKILL)


async def _start_child_servers(
    supervisor: Supervisor, settings: BridgeSettings, groups: ProcessGroups
) -> ActorRef[ChildServersMessage]:
    child = settings.children
    sources = child_config_sources(child)
    sessions = await supervisor.start_child(SupervisorSpec("sessions", intensity=50, period=10.0))
    ref: ActorRef[ChildServersMessage] = await supervisor.start_child(
        ChildSpec(
            "children",
            lambda: ChildServersActor(child, sessions, sources=sources, groups=groups),
            mailbox_size=256,
        )
    )
    return ref


def child_config_sources(child: ChildSettings) -> list[ConfigSource]:
    """The config files to read: the usual places plus ``config_paths``, or only those when ``discover`` is off."""
    if child.discover:
        return default_sources(child.config_paths)
    return [
        ConfigSource(path=Path(os.path.abspath(os.path.expanduser(p))), origin="explicit", required=True)
        for p in child.config_paths
    ]
