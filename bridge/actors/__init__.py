"""The actors of lmstudio-bridge and the runtime they stand on.

This package re-exports the runtime only (``Actor``, ``ActorRef``, ``RequestContext``):
the supervisor imports it, and the concrete actors import the supervisor. The actors
themselves live in their own modules: ``bridge.actors.registry.ModelRegistryActor``,
``bridge.actors.worker.LLMWorkerActor``, ``bridge.actors.mcp_session.MCPSessionActor``,
``bridge.actors.child_servers.ChildServersActor`` and ``bridge.actors.planner.PlannerActor``.
"""

from bridge.actors._actor import Actor as Actor
from bridge.actors._envelope import ProgressSink as ProgressSink
from bridge.actors._envelope import RequestContext as RequestContext
from bridge.actors._ref import ActorRef as ActorRef
from bridge.actors._ref import ChildState as ChildState

__all__ = ["Actor", "ActorRef", "ChildState", "ProgressSink", "RequestContext"]
