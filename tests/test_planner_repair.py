"""Argument repair: near-JSON is read, truncation is reported apart, nothing is evaluated."""

from __future__ import annotations

import pytest

from bridge.planner import ArgumentsStatus, parse_arguments, repair_json
from bridge.planner.repair import (
    BAD_ESCAPES,
    CODE_FENCE,
    COMMENTS,
    CONTROL_CHARS,
    DOUBLE_ENCODED,
    LEADING_TEXT,
    NULL_ARGUMENTS,
    PYTHON_LITERALS,
    SINGLE_QUOTES,
    TRAILING_COMMA,
    TRAILING_TEXT,
    UNQUOTED_KEYS,
)


def test_strict_json_needs_no_repair() -> None:
    """Valid JSON is parsed with no repairs noted."""
    parsed = parse_arguments('{"path": "/tmp/a", "n": 2}')
    assert parsed.status is ArgumentsStatus.OK
    assert parsed.value == {"path": "/tmp/a", "n": 2}
    assert parsed.repairs == ()
    assert parsed.error is None


@pytest.mark.parametrize("raw", [None, "", "   \n"])
def test_empty_arguments_are_an_empty_object(raw: str | None) -> None:
    """No arguments at all means {} (models send '' for tools without parameters)."""
    parsed = parse_arguments(raw)
    assert parsed.ok
    assert parsed.value == {}


def test_null_is_no_arguments() -> None:
    """JSON null is read as {} with a note."""
    parsed = parse_arguments("null")
    assert parsed.value == {}
    assert parsed.repairs == (NULL_ARGUMENTS,)


def test_mapping_is_taken_as_parsed() -> None:
    """Already-parsed arguments pass through (copied)."""
    original = {"a": 1}
    parsed = parse_arguments(original)
    assert parsed.value == {"a": 1}
    assert parsed.value is not original
    assert parsed.raw == '{"a": 1}'


@pytest.mark.parametrize(
    ("raw", "value", "repairs"),
    [
        ('{"a": 1, "b": [1, 2,],}', {"a": 1, "b": [1, 2]}, (TRAILING_COMMA,)),
        ("{'a': 'it\\'s', 'b': 'say \"hi\"'}", {"a": "it's", "b": 'say "hi"'}, (SINGLE_QUOTES,)),
        ('{"text": "line one\nline two\tend"}', {"text": "line one\nline two\tend"}, (CONTROL_CHARS,)),
        ('{"ok": True, "no": False, "none": None}', {"ok": True, "no": False, "none": None}, (PYTHON_LITERALS,)),
        ('{path: "/x", max_results: 3}', {"path": "/x", "max_results": 3}, (UNQUOTED_KEYS,)),
        ('{"re": "\\d+\\s"}', {"re": "\\d+\\s"}, (BAD_ESCAPES,)),
        ('{"a": 1, // the count\n "b": /* inline */ 2}', {"a": 1, "b": 2}, (COMMENTS,)),
        ('```json\n{"a": 1,}\n```', {"a": 1}, (CODE_FENCE, TRAILING_COMMA)),
        ('Arguments: {"a": 1,}', {"a": 1}, (LEADING_TEXT, TRAILING_COMMA)),
        ('{"a": 1,}}', {"a": 1}, (TRAILING_COMMA, TRAILING_TEXT)),
        ('{"a": 1,} and that is all', {"a": 1}, (TRAILING_COMMA, TRAILING_TEXT)),
    ],
)
def test_repairs(raw: str, value: dict[str, object], repairs: tuple[str, ...]) -> None:
    """Each kind of near-JSON is repaired and the repair is named."""
    parsed = parse_arguments(raw)
    assert parsed.status is ArgumentsStatus.OK, parsed.error
    assert parsed.value == value
    assert parsed.repairs == repairs


def test_code_fence_around_valid_json() -> None:
    """A fenced block of strict JSON is read, noting the fence."""
    parsed = parse_arguments('```\n{"a": [1]}\n```')
    assert parsed.value == {"a": [1]}
    assert parsed.repairs == (CODE_FENCE,)


def test_braces_and_quotes_inside_strings_are_data() -> None:
    """Brackets, commas and other quotes inside strings are not structure."""
    parsed = parse_arguments("{'code': 'if (x) { y[\"k\"], }',}")
    assert parsed.value == {"code": 'if (x) { y["k"], }'}


def test_words_inside_strings_are_not_python_literals() -> None:
    """True/None inside a string stay text."""
    parsed = parse_arguments("{'s': 'True or None',}")
    assert parsed.value == {"s": "True or None"}


def test_double_encoded_arguments_are_decoded() -> None:
    """A JSON string holding the JSON object is decoded."""
    parsed = parse_arguments('"{\\"path\\": \\"/x\\"}"')
    assert parsed.value == {"path": "/x"}
    assert parsed.repairs == (DOUBLE_ENCODED,)


def test_double_encoded_and_repaired() -> None:
    """Decoding and repairing combine."""
    parsed = parse_arguments("\"{'path': '/x',}\"")
    assert parsed.value == {"path": "/x"}
    assert parsed.repairs == (DOUBLE_ENCODED, SINGLE_QUOTES, TRAILING_COMMA)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (
            '{"path": "/tmp/a", "content": "Once upon a time',
            "the arguments were cut off before the JSON was complete (it ends inside a string)",
        ),
        ('{"a": {"b": [1, 2', "the arguments were cut off before the JSON was complete ({{[ never closed)"),
        ('{"a": 1, ', "the arguments were cut off before the JSON was complete ({ never closed)"),
        ('{"a": "x\\', "the arguments were cut off before the JSON was complete (it ends inside a string)"),
        ("{'a': 'x", "the arguments were cut off before the JSON was complete (it ends inside a string)"),
    ],
)
def test_truncation_is_reported_distinctly(raw: str, error: str) -> None:
    """Text that ends inside a string or with brackets open is TRUNCATED, never auto-closed."""
    parsed = parse_arguments(raw)
    assert parsed.status is ArgumentsStatus.TRUNCATED
    assert parsed.truncated
    assert parsed.value is None
    assert parsed.error == error
    assert parsed.raw == raw


def test_invalid_json_is_not_truncation() -> None:
    """Balanced but broken JSON is INVALID, with the position of the error."""
    parsed = parse_arguments('{"a" 1}')
    assert parsed.status is ArgumentsStatus.INVALID
    assert not parsed.truncated
    assert parsed.error == "the arguments are not valid JSON (Expecting ':' delimiter at character 5, near '{\"a\" 1}')"


def test_non_object_json() -> None:
    """An array or number is valid JSON but not arguments."""
    parsed = parse_arguments("[1, 2]")
    assert parsed.status is ArgumentsStatus.NOT_OBJECT
    assert parsed.error == "the arguments must be a JSON object, got an array"
    assert parse_arguments("3").error == "the arguments must be a JSON object, got a number"


def test_no_evaluation() -> None:
    """Python expressions are never evaluated."""
    parsed = parse_arguments("{'a': __import__('os').getcwd()}")
    assert parsed.status is ArgumentsStatus.INVALID
    assert parse_arguments("{'a': 1 + 2}").status is ArgumentsStatus.INVALID


def test_unicode_escapes_survive() -> None:
    """Valid \\u escapes are kept through the rewrite."""
    parsed = parse_arguments("{'s': '\\u00e9t\\u00e9'}")
    assert parsed.value == {"s": "été"}


def test_repair_json_returns_any_value() -> None:
    """repair_json reads any JSON value, including null, with ok set."""
    result = repair_json("None")
    assert result.ok
    assert result.value is None
    assert result.repairs == (PYTHON_LITERALS,)
    assert repair_json("[1, 2,]").value == [1, 2]


def test_repair_json_reports_errors() -> None:
    """repair_json says why when nothing can be read."""
    result = repair_json("not json at all")
    assert not result.ok
    assert not result.truncated
    assert result.error is not None
    assert result.error.startswith("the arguments are not valid JSON (")
