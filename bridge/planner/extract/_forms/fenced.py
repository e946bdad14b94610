"""A fenced block that holds only call objects naming known tools (anything else in it is data)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from bridge.planner.extract._json_calls import add_json, truncated_known
from bridge.planner.extract._known import Known
from bridge.planner.extract._model import Block, CallForm
from bridge.planner.extract._scan import covered, scan_json, skip_space

__all__ = ["read_fences"]

_FENCE = re.compile(r"```[ \t]*(?P<lang>[A-Za-z0-9_+-]*)[^\n`]*\n(?P<body>.*?)(?:```|\Z)", re.DOTALL)
_CALL_FENCE_LANGS: Final = frozenset(
    {"", "json", "json5", "jsonc", "tool_call", "tool_code", "tool", "tools", "function", "function_call", "call"}
)


def read_fences(text: str, known: Known, taken: Sequence[tuple[int, int]]) -> tuple[list[Block], list[tuple[int, int]]]:
    """The fenced blocks of calls, and every fence's span (bare JSON inside a fence is never a call)."""
    blocks: list[Block] = []
    spans: list[tuple[int, int]] = []
    for fence in _FENCE.finditer(text):
        spans.append((fence.start(), fence.end()))
        if covered(fence.start(), taken) or fence.group("lang").lower() not in _CALL_FENCE_LANGS:
            continue
        block = Block(start=fence.start(), end=fence.end())
        if _read_values(block, fence.group("body"), known):
            blocks.append(block)
    return blocks, spans


def _read_values(block: Block, body: str, known: Known) -> bool:
    """Read a fence body of call objects (one, an array, or one per line); False if anything else."""
    j = skip_space(body, 0)
    if j >= len(body):
        return False
    while j < len(body):
        if body[j] not in "{[":
            return False
        end = scan_json(body, j)
        if end is None:
            return truncated_known(block, body[j:], CallForm.FENCED_JSON, known)
        if not add_json(block, body[j:end], CallForm.FENCED_JSON, known, strict=True):
            return False
        j = skip_space(body, end, also=",")
    return bool(block.calls)
