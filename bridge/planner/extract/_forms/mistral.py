"""Mistral ``[TOOL_CALLS][{...}]`` and ``[TOOL_CALLS]name[ARGS]{...}``."""

from __future__ import annotations

import re

from bridge.planner.extract._json_calls import json_after, make_call
from bridge.planner.extract._known import Known
from bridge.planner.extract._model import Block, CallForm
from bridge.planner.extract._scan import json_starts, scan_json, skip_space

__all__ = ["read_mistral"]

_MISTRAL_NAMED = re.compile(r"([A-Za-z0-9_.:/-]+)\s*(?:\[CALL_ID\][^\[]*)?\s*(?:\[ARGS\])?\s*")


def read_mistral(text: str, start: int, known: Known) -> Block:
    """The ``[TOOL_CALLS]`` at ``start``: a JSON list of calls, or one named call."""
    j = skip_space(text, start + len("[TOOL_CALLS]"))
    if json_starts(text, j):
        return json_after(text, start, j, CallForm.MISTRAL, known)
    named = _MISTRAL_NAMED.match(text, j)
    if named is None or not named.group(1):
        return Block(start=start, end=j, unreadable=["A [TOOL_CALLS] marker names no tool."])
    block = Block(start=start, end=named.end())
    args_at = named.end()
    if args_at < len(text) and text[args_at] == "{":
        end = scan_json(text, args_at)
        raw = text[args_at:] if end is None else text[args_at:end]
        block.end = len(text) if end is None else end
        block.calls.append(make_call(named.group(1), raw, CallForm.MISTRAL, known))
    else:
        block.calls.append(make_call(named.group(1), None, CallForm.MISTRAL, known))
    return block
