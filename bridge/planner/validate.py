"""Checking a model's arguments against the tool's input schema, with messages it can act on.

A validator's raw messages (``"'5' is not of type 'integer'"``, a dump of the
failing subschema) are long and vague for a small model. Each problem here
names its path and says what was expected and what was sent, in one short
line, e.g. ``\\`count\\` must be an integer, got string 'five'``.

Before validating, a few common, unambiguous slips of small models are fixed
where the schema says what is wanted: numeric strings for numbers, ``"true"``
and ``"false"`` for booleans, integers for strings, ``5.0`` for integers, and
objects or arrays sent as JSON strings. Every such change is reported.

Validation uses the tool's *original* schema (not the cleaned one shown to the
model) and never fetches remote ``$ref``s: the registry is empty, so an
unresolvable reference turns validation off for that call instead of doing I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec
from jsonschema.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    SchemaError,
    UnknownType,
)
from jsonschema.validators import (  # type: ignore[import-untyped, unused-ignore]
    Draft3Validator,
    Draft4Validator,
    Draft6Validator,
    Draft7Validator,
    Draft201909Validator,
    Draft202012Validator,
)
from referencing import Registry
from referencing.exceptions import Unresolvable

from bridge.planner.repair import NOT_TYPED, value_from_text
from bridge.planner.schema import clean_schema, json_type, schema_types

__all__ = [
    "Coercion",
    "ValidationProblem",
    "ValidationResult",
    "validate_arguments",
]

_VALIDATORS: Final[tuple[Any, ...]] = (
    Draft202012Validator,
    Draft201909Validator,
    Draft7Validator,
    Draft6Validator,
    Draft4Validator,
    Draft3Validator,
)
_ARTICLES: Final = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}
_SHOW_LIMIT: Final = 40
_KNOWN_LIMIT: Final = 12
_CHOICES_LIMIT: Final = 10


class ValidationProblem(msgspec.Struct, frozen=True, kw_only=True):
    """One thing wrong with the arguments.

    ``path`` is dotted with ``[i]`` for array items (``"files[2].name"``), empty
    for the arguments as a whole; ``message`` is the line shown to the model.
    """

    path: str
    message: str


class Coercion(msgspec.Struct, frozen=True, kw_only=True):
    """One value changed to the type the schema asks for."""

    path: str
    before: Any
    after: Any


class ValidationResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of :func:`validate_arguments`.

    Attributes:
        arguments: The arguments to send to the tool (coerced where reported).
        problems: What is wrong; empty when the arguments are valid.
        coercions: What was changed to make them valid.
        message: The text to give the model when ``problems`` is not empty, else ``""``.
        schema_error: Set when the tool's own schema could not be used; the
            arguments were then not checked (log it; it is the child server's bug).
    """

    arguments: dict[str, Any]
    problems: tuple[ValidationProblem, ...] = ()
    coercions: tuple[Coercion, ...] = ()
    message: str = ""
    schema_error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the (coerced) arguments may be sent to the tool."""
        return not self.problems


def validate_arguments(
    arguments: Mapping[str, Any],
    schema: Mapping[str, Any] | None,
    *,
    tool_name: str | None = None,
    coerce: bool = True,
    max_problems: int = 8,
) -> ValidationResult:
    """Validate (and lightly coerce) a call's arguments against a tool's input schema.

    Args:
        arguments: The parsed arguments (see :func:`parse_arguments`).
        schema: The tool's original ``inputSchema``; ``None`` accepts anything.
        tool_name: Named in the message, so the model knows which call to fix.
        coerce: Apply the safe conversions described in the module docstring.
        max_problems: List at most this many problems in ``message``.

    Returns:
        The result; never raises for a bad schema (see ``schema_error``).
    """
    values = dict(arguments)
    if not isinstance(schema, Mapping):
        return ValidationResult(arguments=values)
    cleaned = clean_schema(schema)
    coercions: list[Coercion] = []
    if coerce:
        values = _coerce_object(values, cleaned, (), coercions)
    validator_class = _validator_class(schema)
    try:
        validator_class.check_schema(schema)
        validator = validator_class(schema, registry=Registry())
        errors: list[Any] = list(validator.iter_errors(values))
    except (SchemaError, UnknownType, Unresolvable) as exc:
        reason = getattr(exc, "message", None) or str(exc).splitlines()[0]
        return ValidationResult(arguments=values, coercions=tuple(coercions), schema_error=reason)
    problems = _problems(errors)
    message = _message(problems, cleaned, tool_name, max_problems) if problems else ""
    return ValidationResult(arguments=values, problems=problems, coercions=tuple(coercions), message=message)


def _validator_class(schema: Mapping[str, Any]) -> Any:
    """The draft the schema names; 2020-12 when it names none (or one jsonschema does not know)."""
    uri = schema.get("$schema")
    if isinstance(uri, str):
        wanted = _normalize_uri(uri)
        for cls in _VALIDATORS:
            meta = cls.META_SCHEMA
            if _normalize_uri(str(meta.get("$id", meta.get("id", "")))) == wanted:
                return cls
    return Draft202012Validator


def _normalize_uri(uri: str) -> str:
    return uri.split("://", 1)[-1].rstrip("#/")


# -- coercion ---------------------------------------------------------------------------------


def _coerce_object(
    values: dict[str, Any], schema: Mapping[str, Any], path: tuple[str | int, ...], out: list[Coercion]
) -> dict[str, Any]:
    properties = _object_properties(schema)
    extra = schema.get("additionalProperties")
    result: dict[str, Any] = {}
    for key, value in values.items():
        sub = properties.get(key, extra)
        result[key] = _coerce(value, sub, (*path, key), out) if isinstance(sub, Mapping) else value
    return result


def _object_properties(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        return properties
    for branch in schema.get("anyOf", []):
        if isinstance(branch, Mapping) and isinstance(branch.get("properties"), Mapping):
            found: Mapping[str, Any] = branch["properties"]
            return found
    return {}


def _coerce(value: Any, schema: Mapping[str, Any], path: tuple[str | int, ...], out: list[Coercion]) -> Any:
    types = schema_types(schema)
    if types and not _accepted(value, types):
        converted = _convert(value, types)
        if converted is not _UNCHANGED:
            out.append(Coercion(path=_format_path(path), before=value, after=converted))
            value = converted
    if isinstance(value, dict):
        return _coerce_object(value, schema, path, out)
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            return [_coerce(item, items, (*path, index), out) for index, item in enumerate(value)]
    return value


_UNCHANGED: Final = object()


def _accepted(value: Any, types: frozenset[str]) -> bool:
    if value is None:
        return True  # cleaned schemas drop "null"; the validator decides
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int):
        return "integer" in types or "number" in types
    if isinstance(value, float):
        return "number" in types
    return json_type(value) in types


def _convert(value: Any, types: frozenset[str]) -> Any:
    if isinstance(value, str):
        typed = value_from_text(value, types)
        return _UNCHANGED if typed is NOT_TYPED else typed
    if isinstance(value, bool):
        return _UNCHANGED
    if isinstance(value, float) and value.is_integer() and "integer" in types:
        return int(value)
    if isinstance(value, int) and "string" in types:
        return str(value)
    return _UNCHANGED


# -- messages ---------------------------------------------------------------------------------


def _problems(errors: Iterable[Any]) -> tuple[ValidationProblem, ...]:
    found: dict[tuple[str, str], ValidationProblem] = {}
    for error in errors:
        for problem in _describe(error):
            found.setdefault((problem.path, problem.message), problem)
    return tuple(sorted(found.values(), key=lambda p: p.path))


def _describe(error: Any) -> list[ValidationProblem]:
    """One or more problems for one jsonschema error."""
    parts: tuple[str | int, ...] = tuple(error.absolute_path)
    path = _format_path(parts)
    subject = _subject(path)
    keyword = error.validator
    expected = error.validator_value
    instance = error.instance

    def problem(message: str) -> list[ValidationProblem]:
        return [ValidationProblem(path=path, message=message)]

    if keyword == "required" and isinstance(instance, Mapping):
        missing = [name for name in expected if isinstance(name, str) and name not in instance]
        return [_at((*parts, name), "{} is required") for name in missing]
    if keyword == "additionalProperties" and isinstance(instance, Mapping):
        return _unknown_keys(error, parts, instance)
    if keyword in ("dependentRequired", "dependencies") and isinstance(instance, Mapping):
        return _dependencies(parts, expected, instance)
    if keyword == "type":
        return problem(f"{subject} must be {_expected_types(expected)}, got {_got(instance)}")
    if keyword in ("anyOf", "oneOf"):
        return _union(error, path, subject)
    if keyword == "enum":
        return problem(f"{subject} must be one of {_choices(expected)}, got {_show(instance)}")
    if keyword == "const":
        return problem(f"{subject} must be {_show(expected)}, got {_show(instance)}")
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return problem(f"{subject} must be {_bound(error)}, got {_show(instance)}")
    if keyword in ("minLength", "maxLength") and isinstance(instance, str):
        least = "at least" if keyword == "minLength" else "at most"
        return problem(f"{subject} must be {least} {_count(expected, 'character')} long, got {len(instance):,}")
    if keyword in ("minItems", "maxItems") and isinstance(instance, list):
        least = "at least" if keyword == "minItems" else "at most"
        return problem(f"{subject} must have {least} {_count(expected, 'item')}, got {len(instance):,}")
    if keyword == "pattern":
        return problem(f"{subject} must match the pattern `{expected}`, got {_show(instance)}")
    if keyword == "uniqueItems":
        return problem(f"{subject} must not contain duplicate items")
    if keyword == "multipleOf":
        return problem(f"{subject} must be a multiple of {_show(expected)}, got {_show(instance)}")
    if keyword == "not":
        return problem(f"{subject} has a value that is not allowed")
    if keyword is None:
        return problem(f"{subject} is not allowed")
    text = str(error.message)
    return problem(f"{subject}: {text if len(text) <= 160 else text[:159] + '…'}")


def _at(parts: tuple[str | int, ...], template: str) -> ValidationProblem:
    path = _format_path(parts)
    return ValidationProblem(path=path, message=template.format(_subject(path)))


def _unknown_keys(error: Any, parts: tuple[str | int, ...], instance: Mapping[str, Any]) -> list[ValidationProblem]:
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    properties = schema.get("properties", {})
    known = list(properties) if isinstance(properties, Mapping) else []
    patterns = [p for p in schema.get("patternProperties", {}) if isinstance(p, str)]
    extras = [k for k in instance if k not in known and not any(re.search(p, k) for p in patterns)]
    if not known:
        hint = " (it takes no arguments)" if not parts else ""
    else:
        shown = ", ".join(f"`{k}`" for k in known[:_KNOWN_LIMIT]) + (", …" if len(known) > _KNOWN_LIMIT else "")
        hint = f" (known: {shown})"
    return [_at((*parts, key), "{} is not a known argument" + hint) for key in extras]


def _dependencies(parts: tuple[str | int, ...], expected: Any, instance: Mapping[str, Any]) -> list[ValidationProblem]:
    problems: list[ValidationProblem] = []
    if not isinstance(expected, Mapping):
        return problems
    for key, needed in expected.items():
        if key in instance and isinstance(needed, list):
            for name in needed:
                if name not in instance:
                    path = _format_path((*parts, name))
                    trigger = _format_path((*parts, key))
                    problems.append(
                        ValidationProblem(path=path, message=f"{_subject(path)} is required when `{trigger}` is given")
                    )
    return problems


def _union(error: Any, path: str, subject: str) -> list[ValidationProblem]:
    """Report a failed anyOf/oneOf through the branch the value was most likely meant for.

    That is a branch whose type the value has (the fewest problems wins); when
    the value has none of the branches' types, the types are listed instead.
    """
    context = list(error.context or [])
    if not context:
        return [ValidationProblem(path=path, message=f"{subject} matches more than one of the allowed forms")]
    branches: dict[Any, list[Any]] = {}
    for sub in context:
        branch = sub.relative_schema_path[0] if sub.relative_schema_path else None
        branches.setdefault(branch, []).append(sub)
    fitting = [
        errors for errors in branches.values() if not any(e.validator == "type" and not e.relative_path for e in errors)
    ]
    if fitting:
        problems: list[ValidationProblem] = []
        for sub in min(fitting, key=len):
            problems.extend(_describe(sub))
        return problems
    types: list[str] = []
    for sub in context:
        if sub.validator == "type" and not sub.relative_path:
            expected = sub.validator_value
            for name in [expected] if isinstance(expected, str) else expected:
                if name not in types:
                    types.append(name)
    return [
        ValidationProblem(path=path, message=f"{subject} must be {_expected_types(types)}, got {_got(error.instance)}")
    ]


def _message(
    problems: Sequence[ValidationProblem], schema: Mapping[str, Any], tool_name: str | None, limit: int
) -> str:
    header = f"Invalid arguments for `{tool_name}`:" if tool_name else "Invalid arguments:"
    lines = [header, *(f"- {problem.message}" for problem in problems[:limit])]
    if len(problems) > limit:
        more = len(problems) - limit
        lines.append(f"- … and {more} more problem{'s' if more != 1 else ''}")
    lines.append(_signature(schema))
    return "\n".join(lines)


def _signature(schema: Mapping[str, Any]) -> str:
    """One line naming the top-level arguments, their types, and which are required."""
    properties = schema.get("properties", {})
    if not properties:
        return "The tool takes no arguments."
    required = set(schema.get("required", []))
    parts: list[str] = []
    for name, sub in list(properties.items())[:_KNOWN_LIMIT]:
        types = sorted(schema_types(sub)) if isinstance(sub, Mapping) else []
        details = [" or ".join(types)] if types else []
        if name in required:
            details.append("required")
        parts.append(f"`{name}` ({', '.join(details)})" if details else f"`{name}`")
    if len(properties) > _KNOWN_LIMIT:
        parts.append("…")
    return "Expected arguments: " + ", ".join(parts) + "."


def _format_path(parts: Iterable[str | int]) -> str:
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _subject(path: str) -> str:
    return f"`{path}`" if path else "the arguments"


def _expected_types(expected: Any) -> str:
    names = [expected] if isinstance(expected, str) else [str(t) for t in expected]
    words = [_ARTICLES.get(name, name) for name in names]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _got(value: Any) -> str:
    kind = json_type(value)
    if kind in ("array", "object"):
        return _ARTICLES[kind]
    if kind == "null":
        return "null"
    return f"{kind} {_show(value)}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        escaped = json.dumps(value, ensure_ascii=False)[1:-1].replace('\\"', '"').replace("'", "\\'")
        if len(escaped) > _SHOW_LIMIT:
            escaped = escaped[: _SHOW_LIMIT - 1] + "…"
        return f"'{escaped}'"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOW_LIMIT else text[: _SHOW_LIMIT - 1] + "…"


def _choices(values: Any) -> str:
    items = [_show(v) for v in values][:_CHOICES_LIMIT]
    return ", ".join(items) + (", …" if len(values) > _CHOICES_LIMIT else "")


def _bound(error: Any) -> str:
    keyword = error.validator
    limit = error.validator_value
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if keyword == "minimum":
        operator = ">" if schema.get("exclusiveMinimum") is True else ">="
    elif keyword == "maximum":
        operator = "<" if schema.get("exclusiveMaximum") is True else "<="
    else:
        operator = ">" if keyword == "exclusiveMinimum" else "<"
    return f"{operator} {_show(limit)}"


def _count(number: Any, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"
