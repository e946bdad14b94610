"""Hermes/Qwen ``<tool_call>``: JSON inside, or a ``<function=>`` block, or GLM's name and pairs."""

from __future__ import annotations

from bridge.planner.extract._forms.function import read_function
from bridge.planner.extract._forms.glm import read_glm
from bridge.planner.extract._json_calls import json_after
from bridge.planner.extract._known import Known
from bridge.planner.extract._model import Block, CallForm
from bridge.planner.extract._scan import consume_closer, json_starts, skip_space

__all__ = ["read_tool_call"]


def read_tool_call(text: str, start: int, known: Known) -> Block:
    """The ``<tool_call>`` at ``start``: which form is inside is told by how its body begins."""
    j = skip_space(text, start + len("<tool_call>"))
    if text.startswith("<function=", j):
        inner = read_function(text, j, known)
        block = Block(start=start, end=inner.end, calls=inner.calls, unreadable=inner.unreadable)
    elif json_starts(text, j):
        block = json_after(text, start, j, CallForm.HERMES, known)
    else:
        block = read_glm(text, start, j, known)
    block.end = consume_closer(text, block.end, "</tool_call>", "<tool_call>")
    return block
