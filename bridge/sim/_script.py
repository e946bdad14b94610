"""Scripted turns: what a model says next, set by a test.

Each model has a FIFO of turns; each generation request to that model takes
the next one, and the default generator answers once the queue is empty. The
turns are tagged msgspec structs so a separate process can be scripted over
HTTP with the same shapes (``POST /__sim/script``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import msgspec

from bridge.sim._config import FaultKind, ToolStyle

__all__ = ["CallTools", "Fault", "Raw", "Say", "ScriptBook", "ToolCallSpec", "Turn"]


class Say(msgspec.Struct, frozen=True, tag="say"):
    """Reply with this text (split into word tokens), optionally after this reasoning.

    ``reasoning`` is shown the way the model's reasoning mode says (a field or
    inline ``<think>``); ``None`` means the model's default reasoning, ``""`` none.
    """

    text: str
    reasoning: str | None = None


class ToolCallSpec(msgspec.Struct, frozen=True):
    """One tool call.

    ``arguments`` is sent as is when it is a string (the raw JSON text, which may
    be deliberately malformed) and JSON-encoded when it is an object. ``id``
    defaults to a fresh numeric string, as LM Studio's ids are.
    """

    name: str
    arguments: str | dict[str, Any] = "{}"
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON text put on the wire."""
        if isinstance(self.arguments, str):
            return self.arguments
        return msgspec.json.encode(self.arguments).decode()


class CallTools(msgspec.Struct, frozen=True, tag="call_tools"):
    """Call these tools: natively (``tool_calls``, ``finish_reason: tool_calls``) or as LM Studio's
    ``[TOOL_REQUEST]…[END_TOOL_REQUEST]`` text in ``content``. ``content`` is text said before the calls."""

    calls: list[ToolCallSpec]
    style: ToolStyle = "native"
    content: str = ""


class Raw(msgspec.Struct, frozen=True, tag="raw"):
    """Put exactly this text in ``content`` (e.g. ``<tool_call>{…}</tool_call>`` or ``<function=…>`` forms)."""

    text: str


class Fault(msgspec.Struct, frozen=True, tag="fault"):
    """Inject one fault into the request that takes this turn (see :class:`FaultKind`).

    Args:
        kind: Which failure.
        seconds: ``stall`` length (``None``: until the client leaves).
        after_tokens: Tokens sent before a mid-stream fault fires.
        retry_after: Seconds a ``rate_limit`` asks the client to wait.
        retry_header: The header that says so: ``Retry-After`` (LM Studio, OpenAI), or
            ``llm_provider-retry-after`` (what a LiteLLM proxy forwards from its provider,
            with no ``Retry-After`` of its own).
        message: Overrides the error message, where the fault has one (e.g. llama-cpp-python's
            deterministic 500 "Llama model must be created with embedding=True").
    """

    kind: FaultKind
    seconds: float | None = None
    after_tokens: int = 2
    retry_after: float = 1.0
    retry_header: str = "Retry-After"
    message: str | None = None


Turn = Say | CallTools | Raw | Fault
"""One scripted turn."""

_TURNS_DECODER = msgspec.json.Decoder(list[Turn])


def decode_turns(data: bytes | str) -> list[Turn]:
    """Turns from JSON (``[{"type":"say","text":"hi"}, …]``); raises ``msgspec.ValidationError``."""
    return _TURNS_DECODER.decode(data)


class ScriptBook:
    """Per-model FIFOs of scripted turns. Strictly private: use ``SimServer.script``."""

    __slots__ = ("_queues",)

    def __init__(self) -> None:
        self._queues: dict[str, deque[Turn]] = {}

    def add(self, model: str, turns: Iterable[Turn]) -> None:
        self._queues.setdefault(model, deque()).extend(turns)

    def pop(self, model: str) -> Turn | None:
        queue = self._queues.get(model)
        return queue.popleft() if queue else None

    def pending(self, model: str) -> int:
        return len(self._queues.get(model, ()))

    def clear(self) -> None:
        self._queues.clear()
