"""Argument validation: exact, short messages for the model, and safe coercions."""

from __future__ import annotations

from typing import Any

from bridge.planner import Coercion, ValidationProblem, validate_arguments

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "minLength": 1},
        "count": {"type": "integer", "minimum": 1, "maximum": 100},
        "mode": {"enum": ["fast", "slow"]},
        "follow": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["path", "count"],
    "additionalProperties": False,
}
SIGNATURE = (
    "Expected arguments: `path` (string, required), `count` (integer, required), `mode` (string), "
    "`follow` (boolean), `tags` (array), `note` (string)."
)


def test_valid_arguments() -> None:
    """Valid arguments give no problems, no message, and are returned unchanged."""
    result = validate_arguments({"path": "/a", "count": 3}, SCHEMA)
    assert result.ok
    assert result.message == ""
    assert result.arguments == {"path": "/a", "count": 3}
    assert result.coercions == ()


def test_no_schema_accepts_anything() -> None:
    """A tool without a schema takes what it is given."""
    result = validate_arguments({"x": 1}, None)
    assert result.ok
    assert result.arguments == {"x": 1}


def test_missing_required() -> None:
    """A missing required argument is named by its path."""
    result = validate_arguments({"count": 1}, SCHEMA, tool_name="read_file")
    assert result.problems == (ValidationProblem(path="path", message="`path` is required"),)
    assert result.message == f"Invalid arguments for `read_file`:\n- `path` is required\n{SIGNATURE}"


def test_all_missing_required_are_listed() -> None:
    """Every missing required argument gets its own line."""
    result = validate_arguments({}, SCHEMA)
    assert [p.message for p in result.problems] == ["`count` is required", "`path` is required"]
    assert result.message.startswith("Invalid arguments:\n")


def test_wrong_type_shows_what_was_sent() -> None:
    """A wrong type names the expected type and the value sent."""
    result = validate_arguments({"path": "/a", "count": "five"}, SCHEMA)
    assert [p.message for p in result.problems] == ["`count` must be an integer, got string 'five'"]


def test_wrong_type_without_coercion() -> None:
    """With coercion off, a numeric string is a type error too."""
    result = validate_arguments({"path": "/a", "count": "5"}, SCHEMA, coerce=False)
    assert [p.message for p in result.problems] == ["`count` must be an integer, got string '5'"]
    assert result.arguments == {"path": "/a", "count": "5"}


def test_messages_for_each_keyword() -> None:
    """Enum, bounds, lengths, item counts, unknown keys and unions each get a precise line."""
    arguments = {
        "path": "",
        "count": 0,
        "mode": "medium",
        "tags": ["a", "b", "c"],
        "note": 5.5,
        "colour": "red",
    }
    result = validate_arguments(arguments, SCHEMA, tool_name="t")
    assert result.message == "\n".join(
        [
            "Invalid arguments for `t`:",
            "- `colour` is not a known argument (known: `path`, `count`, `mode`, `follow`, `tags`, `note`)",
            "- `count` must be >= 1, got 0",
            "- `mode` must be one of 'fast', 'slow', got 'medium'",
            "- `note` must be a string or null, got number 5.5",
            "- `path` must be at least 1 character long, got 0",
            "- `tags` must have at most 2 items, got 3",
            SIGNATURE,
        ]
    )


def test_nested_paths() -> None:
    """Problems inside objects and arrays carry dotted paths with indices."""
    schema = {
        "type": "object",
        "properties": {
            "files": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "size": {"type": "integer", "maximum": 10}},
                    "required": ["name"],
                },
            }
        },
    }
    result = validate_arguments({"files": [{"name": "a"}, {"size": 11}]}, schema)
    assert [(p.path, p.message) for p in result.problems] == [
        ("files[1].name", "`files[1].name` is required"),
        ("files[1].size", "`files[1].size` must be <= 10, got 11"),
    ]


def test_root_that_is_not_an_object() -> None:
    """Arguments that are not an object are described as 'the arguments'."""
    result = validate_arguments({}, {"type": "object", "properties": {}, "minProperties": 1})
    assert [p.message for p in result.problems] == ["the arguments: {} should be non-empty"]


def test_unknown_argument_for_a_tool_without_parameters() -> None:
    """Passing anything to a tool that takes nothing says so."""
    result = validate_arguments({"x": 1}, {"type": "object", "properties": {}, "additionalProperties": False})
    assert result.message == (
        "Invalid arguments:\n- `x` is not a known argument (it takes no arguments)\nThe tool takes no arguments."
    )


def test_more_problems_than_the_limit() -> None:
    """Beyond max_problems, the rest are counted, not listed."""
    schema = {"type": "object", "properties": {k: {"type": "integer"} for k in "abcd"}, "required": list("abcd")}
    result = validate_arguments({}, schema, max_problems=2)
    assert result.message == (
        "Invalid arguments:\n- `a` is required\n- `b` is required\n- … and 2 more problems\n"
        "Expected arguments: `a` (integer, required), `b` (integer, required), `c` (integer, required), "
        "`d` (integer, required)."
    )


def test_pattern_const_and_unique_items() -> None:
    """pattern, const and uniqueItems messages."""
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "^[a-z]+$"},
            "version": {"const": 2},
            "ids": {"type": "array", "uniqueItems": True},
        },
    }
    result = validate_arguments({"id": "ABC", "version": 3, "ids": [1, 1]}, schema)
    assert [p.message for p in result.problems] == [
        "`id` must match the pattern `^[a-z]+$`, got 'ABC'",
        "`ids` must not contain duplicate items",
        "`version` must be 2, got 3",
    ]


def test_union_of_objects_uses_the_best_branch() -> None:
    """When a union's branches differ in more than type, the closest branch's problem is reported."""
    schema = {
        "type": "object",
        "properties": {
            "target": {
                "oneOf": [
                    {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]},
                    {"type": "string", "minLength": 3},
                ]
            }
        },
    }
    result = validate_arguments({"target": {"uri": "x"}}, schema)
    assert [p.message for p in result.problems] == ["`target.url` is required"]


def test_long_values_are_shortened_in_messages() -> None:
    """Values shown in messages are cut to keep lines short."""
    result = validate_arguments({"path": "/a", "count": "x" * 100}, SCHEMA)
    assert result.problems[0].message == "`count` must be an integer, got string '" + "x" * 39 + "…'"


def test_coercions_are_applied_and_reported() -> None:
    """Numeric strings, 'true'/'false', 5.0 and integers-as-strings are converted where the schema says so."""
    schema = {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "follow": {"type": "boolean"},
            "whole": {"type": "integer"},
            "zip": {"type": "string"},
        },
    }
    arguments = {"count": " 5 ", "ratio": "2.5", "follow": "false", "whole": 3.0, "zip": 12345}
    result = validate_arguments(arguments, schema)
    assert result.ok
    assert result.arguments == {"count": 5, "ratio": 2.5, "follow": False, "whole": 3, "zip": "12345"}
    assert result.coercions == (
        Coercion(path="count", before=" 5 ", after=5),
        Coercion(path="ratio", before="2.5", after=2.5),
        Coercion(path="follow", before="false", after=False),
        Coercion(path="whole", before=3.0, after=3),
        Coercion(path="zip", before=12345, after="12345"),
    )


def test_json_strings_for_objects_and_arrays_are_decoded() -> None:
    """An object or array sent as a JSON string is decoded when the schema wants one."""
    schema = {
        "type": "object",
        "properties": {"opts": {"type": "object"}, "ids": {"type": "array", "items": {"type": "integer"}}},
    }
    result = validate_arguments({"opts": '{"a": 1}', "ids": '["1", 2]'}, schema)
    assert result.ok
    assert result.arguments == {"opts": {"a": 1}, "ids": [1, 2]}
    assert [c.path for c in result.coercions] == ["opts", "ids", "ids[0]"]


def test_no_coercion_when_the_type_is_already_allowed() -> None:
    """A string stays a string where strings are allowed, and 'yes' is not a boolean."""
    schema = {
        "type": "object",
        "properties": {"v": {"type": ["string", "integer"]}, "b": {"type": "boolean"}, "i": {"type": "integer"}},
    }
    result = validate_arguments({"v": "5", "b": "yes", "i": True}, schema)
    assert result.coercions == ()
    assert [p.message for p in result.problems] == [
        "`b` must be a boolean, got string 'yes'",
        "`i` must be an integer, got boolean true",
    ]


def test_coercion_follows_refs_and_nullable_unions() -> None:
    """Coercion sees through $ref and anyOf-with-null, since it walks the cleaned schema."""
    schema = {
        "type": "object",
        "$defs": {
            "Opt": {"type": "object", "properties": {"depth": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}
        },
        "properties": {"opt": {"$ref": "#/$defs/Opt"}},
    }
    result = validate_arguments({"opt": {"depth": "3"}}, schema)
    assert result.ok
    assert result.arguments == {"opt": {"depth": 3}}
    assert result.coercions == (Coercion(path="opt.depth", before="3", after=3),)


def test_input_arguments_are_not_modified() -> None:
    """Coercion builds new containers."""
    arguments = {"path": "/a", "count": "5"}
    validate_arguments(arguments, SCHEMA)
    assert arguments == {"path": "/a", "count": "5"}


def test_draft_07_schema() -> None:
    """A schema that names draft-07 is validated with draft-07 rules."""
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"n": {"type": "integer", "exclusiveMinimum": 0}},
        "dependencies": {"a": ["b"]},
    }
    result = validate_arguments({"n": 0, "a": 1}, schema)
    assert [p.message for p in result.problems] == ["`b` is required when `a` is given", "`n` must be > 0, got 0"]


def test_unknown_schema_dialect_falls_back_without_warning() -> None:
    """An unknown $schema uses the latest draft and raises no warning (filterwarnings=error)."""
    schema = {"$schema": "https://example.com/my-dialect", "type": "object", "required": ["a"]}
    assert [p.message for p in validate_arguments({}, schema).problems] == ["`a` is required"]


def test_broken_schema_is_reported_not_raised() -> None:
    """A tool's invalid schema turns validation off for the call and says why."""
    result = validate_arguments({"a": 1}, {"type": "object", "properties": {"a": {"type": "nosuch"}}})
    assert result.ok
    assert result.schema_error == "'nosuch' is not valid under any of the given schemas"


def test_remote_refs_are_never_fetched() -> None:
    """A remote $ref is unresolvable (no I/O), reported as a schema error."""
    schema = {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}
    result = validate_arguments({"a": 1}, schema)
    assert result.ok
    assert result.schema_error == "Unresolvable: https://example.com/a.json"


def test_text_is_typed_by_one_rule_in_validation_and_in_recovered_calls() -> None:
    """Finding: validation refused "True" for a boolean while tool-call recovery accepted it; one rule now."""
    from bridge.planner.extract._params import coerce as _coerce

    schema = {"type": "object", "properties": {"on": {"type": "boolean"}, "off": {"type": "boolean"}}}
    validated = validate_arguments({"on": "True", "off": "false"}, schema)
    assert validated.ok
    assert validated.arguments == {"on": True, "off": False}
    assert (_coerce("True", {"type": "boolean"}), _coerce("false", {"type": "boolean"})) == (True, False)
