"""GLM ``<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>``."""

from __future__ import annotations

import re
from typing import Any

from bridge.planner.extract._json_calls import make_call
from bridge.planner.extract._known import Known
from bridge.planner.extract._model import Block, CallForm, RawCall
from bridge.planner.extract._params import cut_off, param_value
from bridge.planner.extract._scan import body_end, preview

__all__ = ["read_glm"]

_GLM_PAIR = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)(?:</arg_value>|\Z)", re.DOTALL)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")


def read_glm(text: str, start: int, body_start: int, known: Known) -> Block:
    """The body of the ``<tool_call>`` at ``start``: a name, then key/value pairs or JSON."""
    body_stop, _, closed = body_end(text, body_start, "</tool_call>")
    body = text[body_start:body_stop]
    block = Block(start=start, end=body_stop)
    first_key = body.find("<arg_key>")
    head = (body if first_key < 0 else body[:first_key]).strip()
    if not head and not body.strip():
        if not closed and body_stop == len(text):
            block.unreadable.append("A <tool_call> was cut off before its content began.")
        return block  # an empty <tool_call></tool_call>: nothing to call
    name, rest = _split_name(head)
    if not _PLAIN_NAME.fullmatch(name) or (rest and (first_key >= 0 or not rest.startswith("{"))):
        block.unreadable.append(f"A <tool_call> block could not be read: {preview(body)}")
        return block
    if rest:
        block.calls.append(make_call(name, rest, CallForm.GLM, known))
        return block
    canonical = known.canonical(name)
    arguments: dict[str, Any] = {}
    for pair in _GLM_PAIR.finditer(body):
        key = pair.group(1).strip()
        unclosed = not pair.group(0).endswith("</arg_value>")
        if unclosed and not closed and body_stop == len(text):
            block.calls.append(cut_off(canonical, body, key, CallForm.GLM))
            return block
        arguments[key] = param_value(pair.group(2), known, canonical, key)
    block.calls.append(RawCall(name=canonical, arguments=arguments, form=CallForm.GLM))
    return block


def _split_name(head: str) -> tuple[str, str]:
    """``"name {json}"`` or ``"name\n{json}"`` → (name, rest), both stripped."""
    match = re.match(r"([^\s{<]*)\s*(.*)", head, re.DOTALL)
    assert match is not None  # the pattern matches any string
    return match.group(1), match.group(2).strip()
