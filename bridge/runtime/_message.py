"""The base of every actor message and reply.

Messages are frozen msgspec structs, so each can be encoded for logs, tests
and other processes; live objects (reply slots, progress sinks, cancel scopes)
travel beside a message in its envelope, never inside it. A :class:`Request`
names its reply type (``Request[ChatResult]``), so ``ActorRef.ask`` is typed
end to end.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

__all__ = ["Message", "Reply", "Request"]

R = TypeVar("R")


class Message(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Base of every actor message; the ``type`` tag is the class's name unless set."""


class Request(Message, Generic[R], frozen=True, kw_only=True):
    """A message sent with ``ask``; the receiver replies with an ``R`` or raises a ``BridgeError``."""


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """Base of reply payloads."""
