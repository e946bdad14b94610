"""Every message the actors exchange.

Messages are frozen msgspec structs in tagged unions, one union per kind of
mailbox, so a ``match`` over a mailbox is exhaustive and every message can be
encoded for logs or tests. Live objects (reply slots, progress sinks, cancel
scopes) travel beside a message in its envelope, never inside it.

A :class:`Request` names its reply type (``Request[ChatResult]``), so
``ActorRef.ask`` is typed end to end. A :class:`Notice` is fire-and-forget.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

__all__ = [
    "Message",
    "Notice",
    "Progress",
    "Reply",
    "Request",
]

R = TypeVar("R")


class Message(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Base of every actor message; the ``type`` tag is the class's name unless set."""


class Request(Message, Generic[R], frozen=True, kw_only=True):
    """A message sent with ``ask``; the receiver replies with an ``R`` or a :class:`~bridge.errors.BridgeError`."""


class Notice(Message, frozen=True, kw_only=True):
    """A message sent with ``tell``: no reply, errors are logged by the receiver."""


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """Base of reply payloads."""


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """A progress report from a handler to whoever asked.

    ``stage`` is one of ``queued`` (``position`` set), ``loading``, ``first_token``,
    ``generating`` (``tokens`` set), ``round`` (planner), or ``tool``.
    """

    stage: str
    message: str = ""
    progress: float = 0.0
    total: float | None = None
    position: int | None = None
    tokens: int | None = None
