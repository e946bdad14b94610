"""The actors of lmstudio-bridge and the runtime they stand on.

``Actor``, ``ActorRef`` and ``RequestContext`` are the runtime; the concrete
actors (``ModelRegistryActor``, ``LLMWorkerActor``, ``MCPSessionActor``,
``PlannerActor``) live in their own modules beside it.
"""

from bridge.actors._actor import Actor as Actor
from bridge.actors._envelope import ProgressSink as ProgressSink
from bridge.actors._envelope import RequestContext as RequestContext
from bridge.actors._ref import ActorRef as ActorRef
from bridge.actors._ref import ChildState as ChildState
from bridge.actors.child_servers import ChildServersActor as ChildServersActor
from bridge.actors.mcp_session import MCPSessionActor as MCPSessionActor
from bridge.actors.planner import PlannerActor as PlannerActor
from bridge.actors.registry import ModelRegistryActor as ModelRegistryActor
from bridge.actors.worker import LLMWorkerActor as LLMWorkerActor

__all__ = [
    "Actor",
    "ActorRef",
    "ChildServersActor",
    "ChildState",
    "LLMWorkerActor",
    "MCPSessionActor",
    "ModelRegistryActor",
    "PlannerActor",
    "ProgressSink",
    "RequestContext",
]
