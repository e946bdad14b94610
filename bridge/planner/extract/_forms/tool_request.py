"""LM Studio's default ``[TOOL_REQUEST]{...}[END_TOOL_REQUEST]``."""

from __future__ import annotations

from bridge.planner.extract._json_calls import json_after
from bridge.planner.extract._known import Known
from bridge.planner.extract._model import Block, CallForm
from bridge.planner.extract._scan import consume_closer

__all__ = ["read_tool_request"]


def read_tool_request(text: str, start: int, known: Known) -> Block:
    block = json_after(text, start, start + len("[TOOL_REQUEST]"), CallForm.TOOL_REQUEST, known)
    block.end = consume_closer(text, block.end, "[END_TOOL_REQUEST]", "[TOOL_REQUEST]")
    return block
