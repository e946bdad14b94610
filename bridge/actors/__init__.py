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

__all__ = ["Actor", "ActorRef", "ChildState", "ProgressSink", "RequestContext"]
