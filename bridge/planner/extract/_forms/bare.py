"""A bare JSON object in the prose, shaped like a call and naming a known tool."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bridge.planner.extract._json_calls import add_json, truncated_known
from bridge.planner.extract._known import Known
from bridge.planner.extract._model import Block, CallForm
from bridge.planner.extract._scan import covered, scan_json

__all__ = ["read_bare"]


def read_bare(text: str, known: Known, taken: Sequence[tuple[int, int]]) -> list[Block]:
    """Every ``{`` outside ``taken`` that opens a call; one cut off by the end of the text ends the search."""
    blocks: list[Block] = []
    cursor = 0
    for match in re.finditer(r"\{", text):
        position = match.start()
        if position < cursor or covered(position, taken):
            continue
        end = scan_json(text, position)
        if end is None:
            block = Block(start=position, end=len(text))
            if truncated_known(block, text[position:], CallForm.BARE_JSON, known):
                blocks.append(block)
                return blocks
            continue
        block = Block(start=position, end=end)
        if add_json(block, text[position:end], CallForm.BARE_JSON, known, strict=True):
            blocks.append(block)
        cursor = end
    return blocks
