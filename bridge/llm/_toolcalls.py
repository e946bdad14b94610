"""Rebuild tool calls from streamed fragments, whatever the server's habits.

The OpenAI way is one ``index`` per call, ``id``/``name``/``type`` once, then
argument fragments. Servers deviate: they repeat ``id`` and ``name`` in every
chunk, send a whole call in one chunk, leave gaps in the indices, omit
``index``, reuse index 0 for every call, send an empty ``id`` (LM Studio
BT#830), or send arguments as an object. Each deviation is absorbed here so
callers see a clean, densely numbered list with unique, stable ids.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from bridge.llm._params import FunctionCall, ToolCall
from bridge.llm._wire import WireToolCall

__all__ = ["ToolCallAccumulator", "finish_tool_calls"]


def _arguments_text(value: str | dict[str, Any] | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _is_json(text: str) -> bool:
    try:
        msgspec.json.decode(text)
    except msgspec.DecodeError:
        return False
    return True


class _Slot:
    __slots__ = ("arguments", "id", "index", "name")

    def __init__(self, index: int) -> None:
        self.index = index
        self.id = ""
        self.name = ""
        self.arguments = ""

    def add_name(self, name: str) -> None:
        if not self.name or name.startswith(self.name):
            # First sight, or a server resending the whole (possibly grown) name.
            self.name = name
        elif name != self.name and not self.name.endswith(name):
            self.name += name

    def add_arguments(self, fragment: str) -> None:
        if not fragment:
            return
        current = self.arguments
        if current and fragment.startswith(current) and _is_json(current):
            # A server resending the whole call: keep the complete (or grown) copy, don't double it.
            self.arguments = fragment
            return
        self.arguments = current + fragment


class ToolCallAccumulator:
    """Feed ``delta.tool_calls`` lists; call :meth:`calls` at the end.

    Args:
        id_seed: Makes synthesized ids stable for one response (use the response id).
    """

    __slots__ = ("_by_id", "_by_index", "_last", "_seed", "_slots")

    def __init__(self, id_seed: str) -> None:
        self._seed = id_seed
        self._slots: dict[int, _Slot] = {}
        self._by_index: dict[int, _Slot] = {}
        self._by_id: dict[str, _Slot] = {}
        self._last: _Slot | None = None

    def __len__(self) -> int:
        return len(self._slots)

    def _new_slot(self, index: int | None) -> _Slot:
        """A slot ordered by the server's index, or after all others when that index is taken or absent."""
        key = index if index is not None and index not in self._slots else max(self._slots, default=-1) + 1
        slot = self._slots[key] = _Slot(key)
        if index is not None:
            self._by_index[index] = slot
        return slot

    def _slot_for(self, delta: WireToolCall) -> _Slot:
        call_id = delta.id or ""
        name = delta.function.name if delta.function and delta.function.name else ""
        if delta.index is not None:
            slot = self._by_index.get(delta.index)
            if slot is None:
                return self._new_slot(delta.index)
            if call_id and slot.id and call_id != slot.id:
                # Index reused for a different call (seen on servers that always say 0).
                return self._new_slot(delta.index)
            if name and slot.name and slot.arguments and not name.startswith(slot.name):
                return self._new_slot(delta.index)
            return slot
        # No index: find the call by id, else continue the last call unless this clearly starts another.
        if call_id and call_id in self._by_id:
            return self._by_id[call_id]
        last = self._last
        if last is None or call_id or (name and last.name and last.arguments and name != last.name):
            return self._new_slot(None)
        return last

    def feed(self, deltas: list[WireToolCall]) -> bool:
        """Take one chunk's tool-call deltas; ``True`` if any carried a name or arguments."""
        progressed = False
        for delta in deltas:
            slot = self._slot_for(delta)
            self._last = slot
            if delta.id and not slot.id:
                slot.id = delta.id
                self._by_id[delta.id] = slot
            function = delta.function
            if function is None:
                continue
            if function.name:
                slot.add_name(function.name)
                progressed = True
            fragment = _arguments_text(function.arguments)
            if fragment:
                slot.add_arguments(fragment)
                progressed = True
        return progressed

    def calls(self) -> list[ToolCall]:
        return finish_tool_calls(
            [(slot.id, slot.name, slot.arguments) for _, slot in sorted(self._slots.items())], self._seed
        )


def finish_tool_calls(raw: list[tuple[str, str, str]], id_seed: str) -> list[ToolCall]:
    """Clean ``(id, name, arguments)`` triples into :class:`ToolCall`\\ s.

    Nameless entries are dropped (a fragment with nothing to call); empty
    arguments become ``"{}"``; empty or repeated ids are replaced by
    ``call_<digest>_<n>``, stable for a given ``id_seed``.
    """
    digest = hashlib.blake2b(id_seed.encode(), digest_size=4).hexdigest()
    seen: set[str] = set()
    calls: list[ToolCall] = []
    for position, (call_id, name, arguments) in enumerate(raw):
        if not name:
            continue
        if not call_id or call_id in seen:
            call_id = f"call_{digest}_{position}"
        seen.add(call_id)
        calls.append(ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments.strip() or "{}")))
    return calls
