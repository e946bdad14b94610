"""Call objects written as JSON, the body of most forms: read, or salvaged for a message."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from bridge.planner.extract._known import Known
from bridge.planner.extract._model import Block, CallForm, RawCall
from bridge.planner.extract._scan import json_starts, preview, scan_json, skip_space
from bridge.planner.repair import parse_arguments, repair_json

__all__ = ["add_json", "json_after", "make_call", "salvage", "truncated_known"]

_SALVAGE_NAME = re.compile(r'"(?:name|tool|tool_name)"\s*:\s*"([^"\\]{1,128})"')
_LEADING_NAME = re.compile(r'\{\s*"(?:name|tool|tool_name)"\s*:\s*"([^"\\]{1,128})"')
_SALVAGE_ARGS = re.compile(r'"(?:arguments|parameters|args|input)"\s*:\s*')

_NAME_KEYS: Final = ("name", "tool", "tool_name", "function_name", "recipient_name")
_ARG_KEYS: Final = ("arguments", "parameters", "args", "input", "tool_input", "params")
_CALL_KEYS: Final = frozenset({*_NAME_KEYS, *_ARG_KEYS, "type", "id", "index", "call_id", "function"})
_MISSING: Final = object()


def json_after(text: str, start: int, body: int, form: CallForm, known: Known) -> Block:
    """One or more JSON call objects (or arrays of them) starting at ``body``."""
    block = Block(start=start, end=body)
    j = skip_space(text, body)
    if j >= len(text):
        block.end = len(text)
        block.unreadable.append(f"A {form.value} tool call was cut off before its content began.")
        return block
    while json_starts(text, j):
        end = scan_json(text, j)
        if end is None:
            salvage(block, text[j:], form, known)
            block.end = len(text)
            return block
        add_json(block, text[j:end], form, known, strict=False)
        block.end = end
        j = skip_space(text, end, also=",")
    if not block.calls and not block.unreadable:
        block.unreadable.append(f"A {form.value} tool call could not be read: {preview(text[j : j + 120])}")
    return block


def add_json(block: Block, source: str, form: CallForm, known: Known, *, strict: bool) -> bool:
    """Read call objects from JSON text into ``block``; False when it holds anything else."""
    parsed = repair_json(source)
    if not parsed.ok:
        if strict:
            return False
        salvage(block, source, form, known, error=parsed.error)
        return True
    values = parsed.value if isinstance(parsed.value, list) else [parsed.value]
    calls: list[RawCall] = []
    for value in values:
        call = _call_from_value(value, form, known, strict=strict, repairs=parsed.repairs)
        if call is None:
            if strict:
                return False
            block.unreadable.append(f"A {form.value} tool call names no tool: {preview(source)}")
            continue
        calls.append(call)
    if strict and not calls:
        return False
    block.calls.extend(calls)
    return True


def _call_from_value(
    value: Any, form: CallForm, known: Known, *, strict: bool, repairs: tuple[str, ...]
) -> RawCall | None:
    if not isinstance(value, Mapping):
        return None
    name: Any = None
    arguments: Any = _MISSING
    function = value.get("function")
    if isinstance(function, Mapping):
        name = function.get("name")
        arguments = _first(function, _ARG_KEYS)
    else:
        name = function if isinstance(function, str) else _first(value, _NAME_KEYS)
        arguments = _first(value, _ARG_KEYS)
    if strict and not set(value) <= _CALL_KEYS:
        return None
    if not isinstance(name, str) or not name.strip():
        if strict or len(value) != 1:
            return None
        # {"read_file": {"path": ...}}: the tool's name as the only key.
        only = next(iter(value))
        if known.resolve(only) is None or not isinstance(value[only], Mapping | None):
            return None
        name, arguments = only, value[only]
    if strict and known.resolve(name) is None:
        return None
    return make_call(name, arguments, form, known, repairs)


def make_call(name: str, arguments: Any, form: CallForm, known: Known, repairs: tuple[str, ...] = ()) -> RawCall:
    """A call from its name and arguments as written: none, an object, JSON text or another value."""
    canonical = known.canonical(name)
    if arguments is _MISSING or arguments is None:
        return RawCall(name=canonical, arguments={}, repairs=repairs, form=form)
    if isinstance(arguments, Mapping):
        return RawCall(name=canonical, arguments=dict(arguments), repairs=repairs, form=form)
    if isinstance(arguments, str):
        parsed = parse_arguments(arguments)
        if parsed.value is not None:
            return RawCall(name=canonical, arguments=parsed.value, repairs=repairs + parsed.repairs, form=form)
        return RawCall(
            name=canonical,
            arguments=arguments,
            error=parsed.error,
            truncated=parsed.truncated,
            repairs=repairs + parsed.repairs,
            form=form,
        )
    return RawCall(
        name=canonical,
        arguments=json.dumps(arguments),
        error="the arguments must be a JSON object",
        repairs=repairs,
        form=form,
    )


def salvage(block: Block, source: str, form: CallForm, known: Known, *, error: str | None = None) -> None:
    """Keep the name of a call whose JSON could not be read, so the model can be told why."""
    parsed = repair_json(source)
    truncated = parsed.truncated
    named = _SALVAGE_NAME.search(source)
    if named is None:
        what = "was cut off before naming its tool" if truncated else "could not be read and names no tool"
        block.unreadable.append(f"A {form.value} tool call {what}: {preview(source)}")
        return
    args = _SALVAGE_ARGS.search(source, named.end()) or _SALVAGE_ARGS.search(source)
    raw = source[args.end() :] if args is not None else source
    block.calls.append(
        RawCall(
            name=known.canonical(named.group(1)),
            arguments=raw,
            error=parsed.error or error or "the call could not be read",
            truncated=truncated,
            repairs=parsed.repairs,
            form=form,
        )
    )


def truncated_known(block: Block, source: str, form: CallForm, known: Known) -> bool:
    """A cut-off call object is still reported when it starts by naming a known tool."""
    named = _LEADING_NAME.match(source)
    if named is None or known.resolve(named.group(1)) is None or not repair_json(source).truncated:
        return False
    salvage(block, source, form, known)
    return True


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in mapping:
            return mapping[key]
    return _MISSING
