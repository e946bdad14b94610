"""Which parser reads which markup, in what order, and how their blocks become one :class:`Extraction`."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeAlias

import msgspec

from bridge.planner.extract._forms.bare import read_bare
from bridge.planner.extract._forms.fenced import read_fences
from bridge.planner.extract._forms.function import read_function
from bridge.planner.extract._forms.harmony import read_harmony
from bridge.planner.extract._forms.hermes import read_tool_call
from bridge.planner.extract._forms.mistral import read_mistral
from bridge.planner.extract._forms.tool_request import read_tool_request
from bridge.planner.extract._known import Known
from bridge.planner.extract._model import Block, ExtractedCall, Extraction, KnownTools
from bridge.planner.extract._reasoning import mask, reasoning_spans

__all__ = ["extract_tool_calls"]

_Parser: TypeAlias = Callable[[str, int, Known], Block | None]

_MARKERS = re.compile(r"<tool_call>|\[TOOL_REQUEST\]|<function=|\[TOOL_CALLS\]|\bto=functions\.")
_PARSERS: Final[Mapping[str, _Parser]] = {
    "<tool_call>": read_tool_call,
    "[TOOL_REQUEST]": read_tool_request,
    "<function=": read_function,
    "[TOOL_CALLS]": read_mistral,
    "to=functions.": read_harmony,
}
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def extract_tool_calls(text: str, tools: KnownTools | None = None, *, id_prefix: str | None = None) -> Extraction:
    """Recover the tool calls written as text in an assistant message.

    Args:
        text: The message's ``content`` (with reasoning inline or not).
        tools: The tools the model was offered. With a catalog or a mapping of
            names to input schemas, Qwen3-coder/GLM parameter values are coerced
            to the schema's types and names are resolved loosely (see
            :meth:`ToolCatalog.resolve`). Without ``tools``, fenced and bare JSON
            are never taken as calls, since nothing tells a call from data.
        id_prefix: Call ids are ``f"{id_prefix}_{n}"``. The default derives the
            prefix from a hash of ``text``; pass a per-round prefix to keep ids
            unique across a conversation in which the model repeats itself.

    Returns:
        The calls, the text without their markup, and what could not be read.
    """
    found = _find(mask(text, reasoning_spans(text)), Known(tools))
    if not found:
        return Extraction(text=text)
    prefix = id_prefix if id_prefix is not None else "call_" + hashlib.sha256(text.encode()).hexdigest()[:8]
    calls: list[ExtractedCall] = []
    unreadable: list[str] = []
    pieces: list[str] = []
    cursor = 0
    for block in found:
        pieces.append(text[cursor : block.start])
        cursor = block.end
        unreadable.extend(block.unreadable)
        for call in block.calls:
            calls.append(ExtractedCall(id=f"{prefix}_{len(calls)}", **msgspec.structs.asdict(call)))
    pieces.append(text[cursor:])
    remaining = _BLANK_LINES.sub("\n\n", "".join(pieces)).strip()
    return Extraction(calls=tuple(calls), text=remaining, unreadable=tuple(unreadable))


def _find(text: str, known: Known) -> list[Block]:
    """Every call block in masked text, in order: markup first, then JSON that only looks like a call.

    Fenced and bare JSON are read only when the tools are known, since
    nothing else tells a call from data.
    """
    blocks = _marked(text, known)
    if known.given:
        fenced, fences = read_fences(text, known, _spans(blocks))
        blocks += fenced
        blocks += read_bare(text, known, [*_spans(blocks), *fences])
    return sorted(blocks, key=lambda block: block.start)


def _marked(text: str, known: Known) -> list[Block]:
    """The blocks the markers open; a marker inside an earlier block is part of that block."""
    blocks: list[Block] = []
    cursor = 0
    for match in _MARKERS.finditer(text):
        if match.start() < cursor:
            continue
        block = _PARSERS[match.group(0)](text, match.start(), known)
        if block is not None:
            blocks.append(block)
            cursor = block.end
    return blocks


def _spans(blocks: Sequence[Block]) -> list[tuple[int, int]]:
    return [(block.start, block.end) for block in blocks]
