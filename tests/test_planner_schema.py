"""Schema cleaning: what local servers and llama.cpp grammars choke on is removed or simplified."""

from __future__ import annotations

from typing import Any

from bridge.planner import clean_schema, schema_types


def test_no_schema_is_an_empty_object() -> None:
    """None, True and an empty dict all give an object with no properties."""
    schemas: tuple[dict[str, Any] | bool | None, ...] = (None, True, {})
    for schema in schemas:
        assert clean_schema(schema) == {"type": "object", "properties": {}}


def test_noise_keywords_are_dropped() -> None:
    """$schema, $id, title, examples, $comment and pattern are removed; description kept."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:x",
        "$comment": "internal",
        "title": "Args",
        "type": "object",
        "properties": {
            "q": {"type": "string", "title": "Q", "description": "Query.", "examples": ["x"], "pattern": "^a"}
        },
    }
    assert clean_schema(schema) == {"type": "object", "properties": {"q": {"type": "string", "description": "Query."}}}


def test_a_property_named_title_is_kept() -> None:
    """Only the keyword 'title' is dropped, not a property called title."""
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    assert clean_schema(schema) == schema


def test_local_refs_are_inlined() -> None:
    """$ref into $defs (and definitions) is replaced by the definition, siblings overriding it."""
    schema = {
        "type": "object",
        "$defs": {"Opt": {"type": "object", "title": "Opt", "properties": {"depth": {"type": "integer"}}}},
        "definitions": {"Name": {"type": "string"}},
        "properties": {
            "opt": {"$ref": "#/$defs/Opt", "description": "Options."},
            "name": {"$ref": "#/definitions/Name"},
        },
    }
    assert clean_schema(schema) == {
        "type": "object",
        "properties": {
            "opt": {"type": "object", "description": "Options.", "properties": {"depth": {"type": "integer"}}},
            "name": {"type": "string"},
        },
    }


def test_recursive_ref_is_expanded_then_stubbed() -> None:
    """A self-referencing definition is expanded once inside itself, then replaced by a typed stub."""
    schema = {
        "type": "object",
        "$defs": {
            "Node": {
                "type": "object",
                "description": "A node.",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
            }
        },
        "properties": {"root": {"$ref": "#/$defs/Node"}},
    }
    inner = {
        "type": "object",
        "description": "A node.",
        "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"type": "object", "description": "A node."}},
        },
    }
    expected_root = {
        "type": "object",
        "description": "A node.",
        "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": inner}},
    }
    assert clean_schema(schema)["properties"]["root"] == expected_root


def test_recursion_depth_can_be_zero() -> None:
    """max_ref_depth=0 stubs a recursive reference at its first reappearance."""
    schema = {"$defs": {"L": {"type": "object", "properties": {"next": {"$ref": "#/$defs/L"}}}}, "$ref": "#/$defs/L"}
    assert clean_schema(schema, max_ref_depth=0) == {"type": "object", "properties": {"next": {"type": "object"}}}


def test_root_ref_and_missing_or_remote_refs() -> None:
    """A root $ref is followed; unresolvable and remote refs become an unconstrained schema."""
    schema = {
        "$ref": "#/$defs/Args",
        "$defs": {
            "Args": {
                "type": "object",
                "properties": {"a": {"$ref": "#/$defs/Missing"}, "b": {"$ref": "https://example.com/b.json"}},
            }
        },
    }
    assert clean_schema(schema) == {"type": "object", "properties": {"a": {}, "b": {}}}


def test_nullable_unions_are_simplified() -> None:
    """anyOf/oneOf with a null branch, type lists with null, and null defaults collapse to the plain type."""
    schema = {
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "title": "A"},
            "b": {"type": ["string", "null"], "description": "B."},
            "c": {"oneOf": [{"type": "null"}, {"type": "array", "items": {"type": "string"}}]},
            "d": {"type": "string", "nullable": True, "enum": ["x", None]},
        },
    }
    assert clean_schema(schema)["properties"] == {
        "a": {"type": "integer"},
        "b": {"type": "string", "description": "B."},
        "c": {"type": "array", "items": {"type": "string"}},
        "d": {"type": "string", "enum": ["x"]},
    }


def test_unions_of_several_types_are_kept_as_any_of() -> None:
    """oneOf with several non-null branches becomes anyOf; several non-null types stay a list."""
    schema = {
        "type": "object",
        "properties": {
            "a": {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
            "b": {"type": ["string", "number", "null"]},
        },
    }
    assert clean_schema(schema)["properties"] == {
        "a": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "b": {"type": ["string", "number"]},
    }


def test_const_unions_become_an_enum() -> None:
    """oneOf of consts (how zod and pydantic write literals) becomes one enum."""
    schema = {
        "type": "object",
        "properties": {"k": {"oneOf": [{"const": "a", "type": "string"}, {"const": "b", "type": "string"}]}},
    }
    assert clean_schema(schema)["properties"]["k"] == {"enum": ["a", "b"], "type": "string"}


def test_all_of_is_merged() -> None:
    """allOf parts are merged into one schema, properties and required joined."""
    schema = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ]
    }
    assert clean_schema(schema) == {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    }


def test_additional_properties_variants() -> None:
    """true, false and {} are dropped; a real value schema (a string map) is kept."""
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "meta": {"type": "object", "additionalProperties": True},
            "loose": {"type": "object", "additionalProperties": {}},
            "env": {"type": "object", "additionalProperties": {"type": "string", "title": "V"}},
        },
    }
    assert clean_schema(schema) == {
        "type": "object",
        "properties": {
            "meta": {"type": "object"},
            "loose": {"type": "object"},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }


def test_formats_move_into_the_description() -> None:
    """A format is removed (grammars reject some) and kept as a hint in the description."""
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time", "description": "Start."},
            "url": {"type": "string", "format": "uri"},
        },
    }
    assert clean_schema(schema)["properties"] == {
        "when": {"type": "string", "description": "Start. (format: date-time)"},
        "url": {"type": "string", "description": "(format: uri)"},
    }


def test_empty_and_dangling_required_are_removed() -> None:
    """An empty required list is dropped; required names that are not properties are filtered out."""
    assert clean_schema({"type": "object", "properties": {"a": {}}, "required": []}) == {
        "type": "object",
        "properties": {"a": {}},
    }
    assert clean_schema({"type": "object", "properties": {"a": {}}, "required": ["a", "ghost", "a"]}) == {
        "type": "object",
        "properties": {"a": {}},
        "required": ["a"],
    }


def test_limits_and_defaults_are_kept() -> None:
    """Numeric and length limits, enums and non-null defaults survive."""
    prop = {"type": "integer", "minimum": 1, "maximum": 10, "default": 3, "multipleOf": 2}
    schema = {"type": "object", "properties": {"n": prop, "s": {"type": "string", "minLength": 1, "maxLength": 5}}}
    assert clean_schema(schema)["properties"] == {
        "n": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
        "s": {"type": "string", "minLength": 1, "maxLength": 5},
    }


def test_object_without_type_gets_one() -> None:
    """A schema with properties but no type is an object; with items, an array."""
    schema = {"properties": {"xs": {"items": {"type": "string"}}}}
    assert clean_schema(schema) == {
        "type": "object",
        "properties": {"xs": {"type": "array", "items": {"type": "string"}}},
    }


def test_non_object_root_is_wrapped() -> None:
    """A root that is not an object becomes the single required property 'value'."""
    assert clean_schema({"type": "string", "minLength": 1}) == {
        "type": "object",
        "properties": {"value": {"type": "string", "minLength": 1}},
        "required": ["value"],
    }


def test_root_union_of_objects_is_flattened() -> None:
    """anyOf of object roots becomes one object; only properties every branch requires stay required."""
    schema = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"id": {"type": "string"}, "a": {"type": "string"}},
                "required": ["id", "a"],
            },
            {"type": "object", "properties": {"id": {"type": "string"}, "b": {"type": "integer"}}, "required": ["id"]},
        ]
    }
    assert clean_schema(schema) == {
        "type": "object",
        "properties": {"id": {"type": "string"}, "a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["id"],
    }


def test_input_is_not_modified() -> None:
    """Cleaning builds a new schema and leaves the tool's own untouched."""
    schema = {"type": "object", "title": "T", "properties": {"a": {"type": ["string", "null"]}}, "required": []}
    before = repr(schema)
    clean_schema(schema)
    assert repr(schema) == before


def test_schema_types() -> None:
    """The types a cleaned schema allows, through type lists, anyOf, and inference."""
    assert schema_types({"type": "string"}) == {"string"}
    assert schema_types({"type": ["string", "number"]}) == {"string", "number"}
    assert schema_types({"anyOf": [{"type": "string"}, {"type": "integer"}]}) == {"string", "integer"}
    assert schema_types({"anyOf": [{"type": "string"}, {}]}) == frozenset()
    assert schema_types({"properties": {}}) == {"object"}
    assert schema_types({"enum": ["a", 1]}) == {"string", "integer"}
    assert schema_types({}) == frozenset()
