"""Qwen3-coder ``<function=name><parameter=k>v</parameter></function>``, or Llama's JSON body."""

from __future__ import annotations

import re
from typing import Any

from bridge.planner.extract._json_calls import make_call
from bridge.planner.extract._known import Known
from bridge.planner.extract._model import Block, CallForm, RawCall
from bridge.planner.extract._params import cut_off, param_value
from bridge.planner.extract._scan import body_end

__all__ = ["read_function"]

_FUNCTION_OPEN = re.compile(r"<function=([^>\n]*)>")
_PARAMETER_OPEN = re.compile(r"<parameter=([^>\n]*)>")


def read_function(text: str, start: int, known: Known) -> Block:
    """The ``<function=...>`` block at ``start``; a missing ``</parameter>`` ends at the next one."""
    opening = _FUNCTION_OPEN.match(text, start)
    if opening is None:
        return Block(start=start, end=len(text), unreadable=["A <function=...> tool call was cut off."])
    name = opening.group(1).strip().strip("\"'")
    body_stop, end, closed = body_end(text, opening.end(), "</function>")
    body = text[opening.end() : body_stop]
    block = Block(start=start, end=end)
    if not name:
        block.unreadable.append("A <function=...> tool call names no tool.")
        return block
    if _PARAMETER_OPEN.search(body) is None and body.strip().startswith("{"):
        block.calls.append(make_call(name, body.strip(), CallForm.XML_FUNCTION, known))
        return block
    arguments: dict[str, Any] = {}
    canonical = known.canonical(name)
    params = list(_PARAMETER_OPEN.finditer(body))
    for index, param in enumerate(params):
        key = param.group(1).strip().strip("\"'")
        limit = params[index + 1].start() if index + 1 < len(params) else len(body)
        value_end = body.find("</parameter>", param.end(), limit)
        if value_end < 0:
            if index + 1 == len(params) and not closed and body_stop == len(text):
                block.calls.append(cut_off(canonical, body, key, CallForm.XML_FUNCTION))
                return block
            value_end = limit
        arguments[key] = param_value(body[param.end() : value_end], known, canonical, key)
    block.calls.append(RawCall(name=canonical, arguments=arguments, form=CallForm.XML_FUNCTION))
    return block
