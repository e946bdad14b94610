"""What runs under what: the bridge's supervision tree, on :mod:`bridge.runtime`.

::

    bridge (one_for_one)
    ├── gates        one ServerGateActor per server with a server-wide limit (max_concurrent)
    ├── workers      supervisor: one LLMWorkerActor per model, started on first use
    ├── registry     ModelRegistryActor
    ├── sessions     supervisor: one MCPSessionActor per child MCP server
    ├── children     ChildServersActor (configuration, hot reload, routing)
    ├── planner      PlannerActor (autonomous runs)
    └── jobs         JobsActor (work that outlives its call; asks the registry and planners)

Children stop in reverse order, so the jobs end first, the registry stops taking
requests before the workers finish theirs, and the gates stop after the workers
that use them. A shared bridge's sessions add their own ``children`` and
``planner`` under a supervisor per session; the jobs stay the bridge's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bridge.actors.child_servers import ChildServersActor
from bridge.actors.jobs import JobsActor
from bridge.actors.planner import PlannerActor
from bridge.actors.registry import ModelRegistryActor
from bridge.actors.server_gate import ServerGateActor
from bridge.children import ConfigSource, default_sources
from bridge.children.process import ProcessGroups
from bridge.llm import LLMClient
from bridge.messages import ChildServersMessage, JobsMessage, PlannerMessage, RegistryMessage, ServerGateMessage
from bridge.runtime import ActorRef, ChildSpec, Supervisor, SupervisorRef, SupervisorSpec
from bridge.settings import BridgeSettings, ChildSettings, server_name

__all__ = [
    "BridgeActors",
    "child_config_sources",
    "server_name",
    "start_bridge_actors",
    "start_child_server_actors",
    "start_session_actors",
]


@dataclass(frozen=True, slots=True)
class BridgeActors:
    """The addresses the front end talks to."""

    registry: ActorRef[RegistryMessage]
    children: ActorRef[ChildServersMessage] | None
    planner: ActorRef[PlannerMessage] | None
    jobs: ActorRef[JobsMessage] | None = None


async def start_bridge_actors(
    supervisor: Supervisor,
    settings: BridgeSettings,
    clients: dict[str, LLMClient],
    groups: ProcessGroups,
    *,
    child_servers: bool,
) -> BridgeActors:
    """Start the tree above under ``supervisor``, in that order."""
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
    children: ActorRef[ChildServersMessage] | None = None
    planner: ActorRef[PlannerMessage] | None = None
    if child_servers:
        children, planner = await start_child_server_actors(
            supervisor, settings.children, registry, groups, sources=child_config_sources(settings.children)
        )
    jobs: ActorRef[JobsMessage] = await supervisor.start_child(
        ChildSpec(
            "jobs",
            lambda: JobsActor(settings.jobs, supervisor, registry),
            mailbox_size=4096,
            ask_timeout=settings.call_budget,
        )
    )
    return BridgeActors(registry=registry, children=children, planner=planner, jobs=jobs)


async def start_session_actors(
    supervisor: Supervisor,
    name: str,
    child: ChildSettings,
    registry: ActorRef[RegistryMessage],
    groups: ProcessGroups,
    *,
    working_dir: str,
    environ: Mapping[str, str],
) -> tuple[SupervisorRef, BridgeActors]:
    """One session of a shared bridge: its own child servers and planner, seen from ``working_dir``.

    Under a supervisor of its own (``name``), so that the session's end stops exactly its actors;
    the registry and the workers stay shared.
    """
    session = await supervisor.start_child(SupervisorSpec(name, intensity=50, period=10.0))
    sources = child_config_sources(child, working_dir=Path(working_dir), environ=environ)
    children, planner = await start_child_server_actors(
        session, child, registry, groups, sources=sources, environ=environ, working_dir=working_dir
    )
    return session, BridgeActors(registry=registry, children=children, planner=planner)


async def start_child_server_actors(
    supervisor: Supervisor | SupervisorRef,
    child: ChildSettings,
    registry: ActorRef[RegistryMessage],
    groups: ProcessGroups,
    *,
    sources: list[ConfigSource],
    environ: Mapping[str, str] | None = None,
    working_dir: str | None = None,
) -> tuple[ActorRef[ChildServersMessage], ActorRef[PlannerMessage]]:
    """The child-server actors (``sessions``, ``children``) and the ``planner`` that uses them."""
    sessions = await supervisor.start_child(SupervisorSpec("sessions", intensity=50, period=10.0))
    children: ActorRef[ChildServersMessage] = await supervisor.start_child(
        ChildSpec(
            "children",
            lambda: ChildServersActor(
                child, sessions, sources=sources, groups=groups, environ=environ, working_dir=working_dir
            ),
            mailbox_size=256,
        )
    )
    planner: ActorRef[PlannerMessage] = await supervisor.start_child(
        ChildSpec("planner", lambda: PlannerActor(registry, children), mailbox_size=256)
    )
    return children, planner


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


def child_config_sources(
    child: ChildSettings, *, working_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> list[ConfigSource]:
    """The config files to read: the usual places plus ``config_paths``, or only those when ``discover`` is off.

    Relative paths are taken from ``working_dir`` (default: this process's), ``~`` from ``environ``'s
    ``HOME`` (default: this process's): a shared bridge reads each session's files as that session would.
    """
    if child.discover:
        home = Path(environ["HOME"]) if environ is not None and environ.get("HOME") else None
        return default_sources(child.config_paths, environ=environ, cwd=working_dir, home=home)
    base = working_dir if working_dir is not None else Path.cwd()
    return [
        ConfigSource(path=Path(os.path.normpath(base / os.path.expanduser(p))), origin="explicit", required=True)
        for p in child.config_paths
    ]
