"""The actor runtime: typed mailboxes, asks with deadlines and progress, OTP-style supervision, on anyio.

It knows nothing of LLMs or MCP: importing it loads anyio and msgspec, nothing of
the bridge's domain. The bridge's actors (``bridge.actors``) stand on it.

- :class:`Actor`: a mailbox served by one task per request; let it crash.
- :class:`ActorRef`: an address; ``ask`` posts a :class:`Request` and awaits its reply.
- :class:`RequestContext`: what a handler sees of the asker (deadline, progress, forwarding).
- :class:`Supervisor`: runs actors and supervisors; restarts by policy within an intensity.
- :mod:`bridge.runtime.errors`: the errors the runtime raises, and their base.

The names load on first use (PEP 562), so that importing :mod:`bridge.runtime.errors` alone (as the
shared-mode relay does, through :mod:`bridge.errors`) does not load the actor machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.runtime._actor import Actor as Actor
    from bridge.runtime._envelope import Forwarded as Forwarded
    from bridge.runtime._envelope import ProgressSink as ProgressSink
    from bridge.runtime._envelope import RequestContext as RequestContext
    from bridge.runtime._message import Message as Message
    from bridge.runtime._message import Reply as Reply
    from bridge.runtime._message import Request as Request
    from bridge.runtime._ref import ActorRef as ActorRef
    from bridge.runtime._ref import ChildState as ChildState
    from bridge.runtime._ref import Mailbox as Mailbox
    from bridge.runtime._supervisor import ChildAlreadyStartedError as ChildAlreadyStartedError
    from bridge.runtime._supervisor import ChildInfo as ChildInfo
    from bridge.runtime._supervisor import ChildSpec as ChildSpec
    from bridge.runtime._supervisor import RestartIntensityError as RestartIntensityError
    from bridge.runtime._supervisor import RestartPolicy as RestartPolicy
    from bridge.runtime._supervisor import Supervisor as Supervisor
    from bridge.runtime._supervisor import SupervisorRef as SupervisorRef
    from bridge.runtime._supervisor import SupervisorSpec as SupervisorSpec
    from bridge.runtime._supervisor import open_supervisor as open_supervisor

_WHERE: dict[str, str] = {
    "Actor": "bridge.runtime._actor",
    "Forwarded": "bridge.runtime._envelope",
    "ProgressSink": "bridge.runtime._envelope",
    "RequestContext": "bridge.runtime._envelope",
    "Message": "bridge.runtime._message",
    "Reply": "bridge.runtime._message",
    "Request": "bridge.runtime._message",
    "ActorRef": "bridge.runtime._ref",
    "ChildState": "bridge.runtime._ref",
    "Mailbox": "bridge.runtime._ref",
    "ChildAlreadyStartedError": "bridge.runtime._supervisor",
    "ChildInfo": "bridge.runtime._supervisor",
    "ChildSpec": "bridge.runtime._supervisor",
    "RestartIntensityError": "bridge.runtime._supervisor",
    "RestartPolicy": "bridge.runtime._supervisor",
    "Supervisor": "bridge.runtime._supervisor",
    "SupervisorRef": "bridge.runtime._supervisor",
    "SupervisorSpec": "bridge.runtime._supervisor",
    "open_supervisor": "bridge.runtime._supervisor",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'bridge.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
