"""gpt-oss Harmony ``<|start|>assistant<|channel|>commentary to=functions.x <|message|>{...}<|call|>``."""

from __future__ import annotations

import re

from bridge.planner.extract._json_calls import make_call
from bridge.planner.extract._known import Known
from bridge.planner.extract._model import Block, CallForm
from bridge.planner.extract._reasoning import HARMONY_STOPS
from bridge.planner.extract._scan import scan_json, skip_space

__all__ = ["read_harmony"]

_HARMONY_CALL = re.compile(r"to=functions\.([^\s<]+)")


def read_harmony(text: str, start: int, known: Known) -> Block | None:
    """The call whose recipient is at ``start``; None when no message follows its header."""
    header = _HARMONY_CALL.match(text, start)
    if header is None:
        return None
    message = text.find("<|message|>", header.end())
    if message < 0 or any(stop in text[header.end() : message] for stop in HARMONY_STOPS):
        return None
    body = skip_space(text, message + len("<|message|>"))
    end = scan_json(text, body) if body < len(text) and text[body] in "{[" else body
    raw = text[body:] if end is None else text[body:end]
    block = Block(start=_header_start(text, start), end=len(text) if end is None else end)
    block.calls.append(make_call(header.group(1), raw if raw.strip() else None, CallForm.HARMONY, known))
    after = skip_space(text, block.end)
    for stop in ("<|call|>", "<|end|>"):
        if text.startswith(stop, after):
            block.end = after + len(stop)
            break
    return block


def _header_start(text: str, position: int) -> int:
    """Where the Harmony header of the call at ``position`` starts (its tokens are markup too)."""
    header = max(text.rfind("<|channel|>", 0, position), text.rfind("<|start|>", 0, position))
    if header >= 0 and not any(t in text[header:position] for t in ("<|message|>", *HARMONY_STOPS[:1], "<|call|>")):
        lead = text.rfind("<|start|>", 0, header + 1)
        if lead >= 0 and text[lead + len("<|start|>") : header].strip() in ("", "assistant"):
            return lead
        return header
    word = re.search(r"(?:commentary|analysis|final)[ \t]*\Z", text[:position])
    return position if word is None else word.start()
