"""Parameters written as raw text (Qwen3-coder ``<parameter=>``, GLM ``<arg_value>``), typed by the schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.planner.extract._known import Known
from bridge.planner.extract._model import CallForm, RawCall
from bridge.planner.repair import NOT_TYPED, value_from_text
from bridge.planner.schema import schema_types

__all__ = ["coerce", "cut_off", "param_value"]


def param_value(text: str, known: Known, tool: str, key: str) -> Any:
    """The value of parameter ``key`` of ``tool`` as written between its tags."""
    return coerce(_strip_one_newline(text), known.property_schema(tool, key))


def cut_off(tool: str, body: str, key: str, form: CallForm) -> RawCall:
    """A call the text ended inside of: kept so the model hears which value to make shorter."""
    return RawCall(
        name=tool,
        arguments=body,
        error=f"the call was cut off inside the value of `{key}`",
        truncated=True,
        form=form,
    )


def coerce(value: str, schema: Mapping[str, Any] | None) -> Any:
    """A parameter written as raw text, typed by its schema (or left a string when unsure)."""
    types = schema_types(schema) if schema is not None else frozenset()
    if "string" in types:
        return value
    typed = value_from_text(value, types or frozenset({"object", "array"}))
    return value if typed is NOT_TYPED else typed


def _strip_one_newline(value: str) -> str:
    """Qwen3-coder puts each parameter value on its own lines; drop exactly that framing."""
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value
