"""Cleaning MCP input schemas into what local LLM servers accept.

Child MCP servers publish JSON Schemas written for validators (pydantic, zod):
``$ref``/``$defs``, ``title`` on every property, ``anyOf [X, null]`` for
optional fields, ``format``, ``pattern``, ``additionalProperties`` variants.
Local servers turn the schema into a prompt and often into a llama.cpp
grammar; the extra keywords cost context, and some (unsupported ``format``s,
regex ``pattern``s, remote or recursive ``$ref``) make the grammar fail or
the request error. The model only needs the shape, so the schema is rebuilt
from a whitelist of keywords. The original schema is still used to validate
arguments, so nothing that was dropped goes unchecked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ["EMPTY_OBJECT_SCHEMA", "clean_schema", "json_type", "schema_types"]

EMPTY_OBJECT_SCHEMA: Final[Mapping[str, Any]] = {"type": "object", "properties": {}}
"""The parameters of a tool that takes no arguments (copy it before changing it)."""

_MAX_DEPTH: Final = 24
_NUMERIC_KEYS: Final = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
)
_WRAP_KEY: Final = "value"


def clean_schema(schema: Mapping[str, Any] | bool | None, *, max_ref_depth: int = 1) -> dict[str, Any]:
    """Rebuild an MCP input schema as a plain object schema local servers accept.

    - ``$ref`` to ``#/$defs/...`` or ``#/definitions/...`` (any local JSON
      pointer) is inlined; a reference met again inside its own expansion is
      expanded ``max_ref_depth`` more times, then replaced by a stub of its
      type, so recursive schemas stay finite. Remote references become ``{}``.
    - ``allOf`` is merged; ``oneOf`` becomes ``anyOf``; ``null`` branches and
      ``null`` in type lists and enums are dropped (an optional argument is
      one the model may leave out), and a single remaining branch is merged
      into its parent.
    - Kept keywords: ``type, description, properties, required, items, enum,
      const, default`` (unless null), numeric and length limits, and
      ``additionalProperties`` when it is a non-empty schema. A ``format`` is
      moved into the description. Everything else (``$schema``, ``$id``,
      ``title``, ``pattern``, ``examples``, ...) is dropped.
    - The root is always ``{"type": "object", "properties": {...}}``: a
      missing schema gives no properties, a union of objects is flattened,
      and any other root is wrapped as the single required property ``value``.

    Args:
        schema: The tool's ``inputSchema`` (not modified).
        max_ref_depth: How many times a recursive ``$ref`` is expanded inside itself.

    Returns:
        A new schema; never raises for odd input.
    """
    root: Mapping[str, Any] = schema if isinstance(schema, Mapping) else {}
    cleaned = _Cleaner(root, max_ref_depth).clean(root, (), 0)
    return _object_root(cleaned)


def schema_types(schema: Mapping[str, Any]) -> frozenset[str]:
    """The JSON types a *cleaned* schema allows; empty when it allows anything."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(t for t in declared if isinstance(t, str))
    branches = schema.get("anyOf")
    if isinstance(branches, list):
        found: set[str] = set()
        for branch in branches:
            if not isinstance(branch, Mapping):
                return frozenset()
            types = schema_types(branch)
            if not types:
                return frozenset()
            found |= types
        return frozenset(found)
    if "properties" in schema:
        return frozenset({"object"})
    if "items" in schema:
        return frozenset({"array"})
    if "enum" in schema and isinstance(schema["enum"], list):
        return frozenset(json_type(v) for v in schema["enum"])
    return frozenset()


def json_type(value: Any) -> str:
    """The JSON Schema type name of a decoded JSON value (``bool`` is ``boolean``, not ``integer``)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "null" if value is None else "object"


def _is_null_schema(schema: Mapping[str, Any]) -> bool:
    if schema.get("type") == "null":
        return True
    enum = schema.get("enum")
    return (isinstance(enum, list) and enum == [None]) or ("const" in schema and schema["const"] is None)


def _object_root(schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("type") == "object":
        schema.setdefault("properties", {})
        return schema
    branches = schema.get("anyOf")
    if isinstance(branches, list) and branches and all(b.get("type") == "object" for b in branches):
        return _flatten_object_union(schema, branches)
    if not schema or set(schema) <= {"description"}:
        return {"type": "object", "properties": {}, **schema}
    return {"type": "object", "properties": {_WRAP_KEY: schema}, "required": [_WRAP_KEY]}


def _flatten_object_union(schema: Mapping[str, Any], branches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One object with every branch's properties; required only where all branches agree."""
    properties: dict[str, Any] = {}
    required: set[str] | None = None
    for branch in branches:
        for name, sub in branch.get("properties", {}).items():
            properties.setdefault(name, sub)
        branch_required = set(branch.get("required", []))
        required = branch_required if required is None else required & branch_required
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if isinstance(schema.get("description"), str):
        out["description"] = schema["description"]
    if required:
        out["required"] = [name for name in properties if name in required]
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two cleaned schemas: properties and required are joined; otherwise ``base`` wins."""
    out = dict(base)
    for key, value in extra.items():
        if key == "properties" and isinstance(out.get("properties"), dict):
            out["properties"] = {**value, **out["properties"]}
        elif key == "required" and isinstance(out.get("required"), list):
            out["required"] = list(dict.fromkeys([*out["required"], *value]))
        else:
            out.setdefault(key, value)
    return out


class _Cleaner:
    """Walks one schema, resolving local references against its root. Strictly private."""

    __slots__ = ("_max_ref_depth", "_root")

    def __init__(self, root: Mapping[str, Any], max_ref_depth: int) -> None:
        self._root = root
        self._max_ref_depth = max_ref_depth

    def clean(self, node: Any, refs: tuple[str, ...], depth: int) -> dict[str, Any]:
        if not isinstance(node, Mapping) or depth > _MAX_DEPTH:
            return {}
        ref = node.get("$ref")
        if isinstance(ref, str):
            return self._reference(node, ref, refs, depth)
        out: dict[str, Any] = {}
        self._copy_simple(node, out)
        self._copy_structure(node, out, refs, depth)
        for keyword in ("allOf",):
            parts = node.get(keyword)
            if isinstance(parts, list):
                for part in parts:
                    out = _merge(out, self.clean(part, refs, depth + 1))
        for keyword in ("anyOf", "oneOf"):
            branches = node.get(keyword)
            if isinstance(branches, list):
                out = self._union(out, branches, refs, depth)
        self._tidy(out)
        return out

    def _reference(self, node: Mapping[str, Any], ref: str, refs: tuple[str, ...], depth: int) -> dict[str, Any]:
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        target = self._resolve(ref)
        if target is None:
            return self.clean(siblings, refs, depth + 1)
        if refs.count(ref) > self._max_ref_depth:
            stub = self.clean(siblings, refs, depth + 1)
            types = schema_types(self.clean({k: v for k, v in target.items() if k != "$ref"}, (*refs, ref), _MAX_DEPTH))
            if len(types) == 1:
                stub.setdefault("type", next(iter(types)))
            if isinstance(target.get("description"), str):
                stub.setdefault("description", target["description"])
            return stub
        return self.clean({**target, **siblings}, (*refs, ref), depth + 1)

    def _resolve(self, ref: str) -> Mapping[str, Any] | None:
        if not ref.startswith("#"):
            return None
        current: Any = self._root
        for raw in ref[1:].lstrip("/").split("/") if ref != "#" else []:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(current, Mapping) and part in current:
                current = current[part]
            elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
                current = current[int(part)]
            else:
                return None
        return current if isinstance(current, Mapping) else None

    @staticmethod
    def _copy_simple(node: Mapping[str, Any], out: dict[str, Any]) -> None:
        declared = node.get("type")
        if isinstance(declared, str):
            out["type"] = declared
        elif isinstance(declared, list):
            types = [t for t in dict.fromkeys(declared) if isinstance(t, str)]
            non_null = [t for t in types if t != "null"]
            if len(non_null) == 1:
                out["type"] = non_null[0]
            elif non_null:
                out["type"] = non_null
            elif types:
                out["type"] = "null"
        description = node.get("description")
        if isinstance(description, str) and description.strip():
            out["description"] = description.strip()
        fmt = node.get("format")
        if isinstance(fmt, str) and fmt:
            hint = f"(format: {fmt})"
            out["description"] = f"{out['description']} {hint}" if "description" in out else hint
        enum = node.get("enum")
        if isinstance(enum, list):
            values = [v for v in enum if v is not None]
            if values:
                out["enum"] = values
        if "const" in node and node["const"] is not None:
            out["const"] = node["const"]
        if "default" in node and node["default"] is not None:
            out["default"] = node["default"]
        for key in _NUMERIC_KEYS:
            value = node.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = value

    def _copy_structure(self, node: Mapping[str, Any], out: dict[str, Any], refs: tuple[str, ...], depth: int) -> None:
        properties = node.get("properties")
        if isinstance(properties, Mapping):
            out["properties"] = {
                str(name): self.clean(sub if isinstance(sub, Mapping) else {}, refs, depth + 1)
                for name, sub in properties.items()
            }
        required = node.get("required")
        if isinstance(required, list):
            names = [r for r in dict.fromkeys(required) if isinstance(r, str)]
            if "properties" in out:
                names = [r for r in names if r in out["properties"]]
            if names:
                out["required"] = names
        items = node.get("items")
        if isinstance(items, Mapping):
            out["items"] = self.clean(items, refs, depth + 1)
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping):
            cleaned = self.clean(extra, refs, depth + 1)
            if cleaned:
                out["additionalProperties"] = cleaned

    def _union(self, out: dict[str, Any], branches: list[Any], refs: tuple[str, ...], depth: int) -> dict[str, Any]:
        kept: list[dict[str, Any]] = []
        for branch in branches:
            cleaned = self.clean(branch, refs, depth + 1)
            if not _is_null_schema(cleaned) and cleaned not in kept:
                kept.append(cleaned)
        if not kept:
            return out
        if len(kept) == 1:
            return _merge(out, kept[0])
        if any(not branch for branch in kept):
            return out  # one branch accepts anything, so the union does too
        if all("const" in b and set(b) <= {"const", "type", "description"} for b in kept):
            # oneOf [{const: a}, {const: b}] is how zod and pydantic spell an enum.
            enum: dict[str, Any] = {"enum": [b["const"] for b in kept]}
            types = {json.dumps(b.get("type")) for b in kept}
            if len(types) == 1 and "type" in kept[0]:
                enum["type"] = kept[0]["type"]
            return _merge(out, enum)
        return {**out, "anyOf": kept}

    @staticmethod
    def _tidy(out: dict[str, Any]) -> None:
        if "type" not in out and "anyOf" not in out:
            if "properties" in out or "additionalProperties" in out:
                out["type"] = "object"
            elif "items" in out:
                out["type"] = "array"
