"""Recovering tool calls left in assistant text, in every supported form."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bridge.planner import CallForm, Extraction, McpTool, build_catalog, extract_tool_calls, split_reasoning

SCHEMAS: dict[str, dict[str, Any] | None] = {
    "read_file": {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "limit": {"type": "integer"},
            "follow": {"type": "boolean"},
            "ratio": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "options": {"anyOf": [{"type": "object"}, {"type": "null"}]},
            "zip": {"type": "string"},
        },
        "required": ["path"],
    },
    "get_time": None,
}


def calls(extraction: Extraction) -> list[tuple[str, Any]]:
    return [(call.name, call.arguments) for call in extraction.calls]


# -- One call in each form ---------------------------------------------------------------------

ONE_CALL = {
    "hermes: a <tool_call> JSON block": (
        CallForm.HERMES,
        'Let me look.\n<tool_call>\n{"name": "read_file", "arguments": {"path": "/a"}}\n</tool_call>',
        ("read_file", {"path": "/a"}),
        "Let me look.",
    ),
    "glm: <arg_key>/<arg_value> pairs, typed by the schema": (
        CallForm.GLM,
        "<tool_call>read_file\n<arg_key>path</arg_key>\n<arg_value>/g</arg_value>\n"
        "<arg_key>limit</arg_key>\n<arg_value>5</arg_value>\n</tool_call>",
        ("read_file", {"path": "/g", "limit": 5}),
        "",
    ),
    "harmony: the header goes, a call named in the analysis channel is not one": (
        CallForm.HARMONY,
        "<|channel|>analysis<|message|>Maybe to=functions.get_time <|message|>{}<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.read_file <|constrain|>json"
        '<|message|>{"path": "/h"}<|call|>',
        ("read_file", {"path": "/h"}),
        "<|channel|>analysis<|message|>Maybe to=functions.get_time <|message|>{}<|end|>",
    ),
    "fenced json: a ```json block shaped like a call of a known tool, fence and all": (
        CallForm.FENCED_JSON,
        'I will read it.\n```json\n{"name": "read_file", "arguments": {"path": "/f"}}\n```',
        ("read_file", {"path": "/f"}),
        "I will read it.",
    ),
    "bare json: a call object naming a known tool, and no other JSON": (
        CallForm.BARE_JSON,
        'Data {"name": "Alice", "age": 3} then {"name": "read_file", "arguments": {"path": "/b"}} ok {"name": "x"}',
        ("read_file", {"path": "/b"}),
        'Data {"name": "Alice", "age": 3} then  ok {"name": "x"}',
    ),
}


@pytest.mark.parametrize(("form", "text", "call", "rest"), ONE_CALL.values(), ids=ONE_CALL.keys())
def test_one_call_is_recovered_and_its_markup_leaves_the_text(
    form: CallForm, text: str, call: tuple[str, dict[str, Any]], rest: str
) -> None:
    result = extract_tool_calls(text, SCHEMAS)
    assert calls(result) == [call]
    assert result.calls[0].form is form
    assert result.calls[0].error is None
    assert result.text == rest


# -- Hermes / Qwen <tool_call> -----------------------------------------------------------------


def test_hermes_multiple_calls_and_text_between() -> None:
    """Several blocks in one message are all read, in order; prose between them stays."""
    text = (
        '<tool_call>{"name": "read_file", "arguments": {"path": "/a"}}</tool_call>\n'
        "and then\n"
        '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    )
    result = extract_tool_calls(text, SCHEMAS)
    assert calls(result) == [("read_file", {"path": "/a"}), ("get_time", {})]
    assert result.text == "and then"


def test_hermes_works_without_known_tools() -> None:
    """Explicit markup is read even when no tool list is given; the name is kept as written."""
    result = extract_tool_calls('<tool_call>{"name": "anything", "arguments": {"x": 1}}</tool_call>')
    assert calls(result) == [("anything", {"x": 1})]


def test_hermes_unclosed_at_end() -> None:
    """A complete call whose closing tag never came is still a call, not truncated."""
    result = extract_tool_calls('Sure <tool_call>{"name": "get_time", "arguments": {}}', SCHEMAS)
    assert calls(result) == [("get_time", {})]
    assert not result.calls[0].truncated
    assert result.text == "Sure"


def test_hermes_unclosed_tags_between_calls() -> None:
    """Back-to-back calls without closing tags are separate calls."""
    text = '<tool_call>{"name": "read_file", "arguments": {"path": "x"}}<tool_call>{"name": "get_time"}'
    result = extract_tool_calls(text, SCHEMAS)
    assert calls(result) == [("read_file", {"path": "x"}), ("get_time", {})]


def test_hermes_several_objects_in_one_block() -> None:
    """A block holding several call objects (or an array of them) gives each call."""
    text = (
        '<tool_call>{"name": "read_file", "arguments": {"path": "a"}}\n'
        '{"name": "read_file", "arguments": {"path": "b"}}</tool_call>'
        '<tool_call>[{"name": "get_time", "arguments": {}}]</tool_call>'
    )
    result = extract_tool_calls(text, SCHEMAS)
    assert calls(result) == [("read_file", {"path": "a"}), ("read_file", {"path": "b"}), ("get_time", {})]


def test_hermes_truncated_call_is_reported() -> None:
    """A call cut off mid-argument keeps its name, the raw arguments, and the truncation flag."""
    text = '<tool_call>{"name": "read_file", "arguments": {"path": "/a", "content": "Once upon'
    result = extract_tool_calls(text, SCHEMAS)
    assert len(result.calls) == 1
    call = result.calls[0]
    assert call.name == "read_file"
    assert call.truncated
    assert call.arguments == '{"path": "/a", "content": "Once upon'
    assert call.error == "the arguments were cut off before the JSON was complete (it ends inside a string)"
    assert result.text == ""


def test_nested_braces_and_tags_inside_strings() -> None:
    """Braces and even a </tool_call> inside a string argument are data, not markup."""
    text = '<tool_call>{"name": "read_file", "arguments": {"path": "a}{b", "zip": "x</tool_call>y"}}</tool_call>done'
    result = extract_tool_calls(text, SCHEMAS)
    assert calls(result) == [("read_file", {"path": "a}{b", "zip": "x</tool_call>y"})]
    assert result.text == "done"


def test_arguments_as_json_string_and_alternative_keys() -> None:
    """Arguments sent as a JSON string are parsed; 'parameters' works like 'arguments'."""
    text = (
        '<tool_call>{"name": "read_file", "arguments": "{\\"path\\": \\"/s\\"}"}</tool_call>'
        '<tool_call>{"tool": "read_file", "parameters": {"path": "/t"}}</tool_call>'
        '<tool_call>{"function": {"name": "get_time", "arguments": "{}"}}</tool_call>'
    )
    result = extract_tool_calls(text, SCHEMAS)
    assert calls(result) == [("read_file", {"path": "/s"}), ("read_file", {"path": "/t"}), ("get_time", {})]


def test_repaired_arguments_note_the_repair() -> None:
    """Near-JSON inside a tag is repaired and the repairs are kept for logs."""
    result = extract_tool_calls("<tool_call>{'name': 'read_file', 'arguments': {'path': '/a',},}</tool_call>", SCHEMAS)
    assert calls(result) == [("read_file", {"path": "/a"})]
    assert result.calls[0].repairs == ("replaced single quotes with double quotes", "removed trailing commas")


def test_invalid_arguments_string_gives_an_error() -> None:
    """Arguments that cannot be read become a raw string with an error."""
    result = extract_tool_calls('<tool_call>{"name": "read_file", "arguments": "{path: }"}</tool_call>', SCHEMAS)
    call = result.calls[0]
    assert call.arguments == "{path: }"
    assert call.error is not None
    assert call.error.startswith("the arguments are not valid JSON")
    assert not call.truncated


def test_tool_name_as_the_only_key() -> None:
    """{"read_file": {...}} inside a tag is read when the key is a known tool."""
    result = extract_tool_calls('<tool_call>{"read_file": {"path": "/k"}}</tool_call>', SCHEMAS)
    assert calls(result) == [("read_file", {"path": "/k"})]


# -- LM Studio default [TOOL_REQUEST] ----------------------------------------------------------


def test_tool_request_blocks() -> None:
    """LM Studio's default format is read, several per message, end markers removed."""
    text = (
        '[TOOL_REQUEST]{"name": "read_file", "arguments": {"path": "/a"}}[END_TOOL_REQUEST]\n'
        '[TOOL_REQUEST]\n{"name": "get_time", "arguments": {}}\n[END_TOOL_REQUEST] ok'
    )
    result = extract_tool_calls(text, SCHEMAS)
    assert calls(result) == [("read_file", {"path": "/a"}), ("get_time", {})]
    assert {call.form for call in result.calls} == {CallForm.TOOL_REQUEST}
    assert result.text == "ok"
    assert result.unreadable == ()


def test_tool_request_truncated() -> None:
    """A [TOOL_REQUEST] cut off mid-arguments is reported as truncated."""
    result = extract_tool_calls('[TOOL_REQUEST]{"name": "read_file", "arguments": {"path": "/a', SCHEMAS)
    assert result.calls[0].truncated
    assert result.calls[0].name == "read_file"


# -- Qwen3-coder <function=...><parameter=...> -------------------------------------------------


def test_qwen3_coder_inside_tool_call_with_schema_types() -> None:
    """Parameter values are typed by the schema; multi-line strings keep their inner newlines."""
    text = (
        "<tool_call>\n<function=read_file>\n"
        "<parameter=path>\n/tmp/a b\nsecond line\n</parameter>\n"
        "<parameter=limit>\n10\n</parameter>\n"
        "<parameter=follow>\nTrue\n</parameter>\n"
        "<parameter=ratio>\n0.5\n</parameter>\n"
        '<parameter=tags>\n["x", "y"]\n</parameter>\n'
        '<parameter=options>\n{"deep": true}\n</parameter>\n'
        "<parameter=zip>\n01234\n</parameter>\n"
        "</function>\n</tool_call>"
    )
    result = extract_tool_calls(text, SCHEMAS)
    assert calls(result) == [
        (
            "read_file",
            {
                "path": "/tmp/a b\nsecond line",
                "limit": 10,
                "follow": True,
                "ratio": 0.5,
                "tags": ["x", "y"],
                "options": {"deep": True},
                "zip": "01234",
            },
        )
    ]
    assert result.calls[0].form is CallForm.XML_FUNCTION
    assert result.text == ""


def test_qwen3_coder_without_schema() -> None:
    """Without a schema, JSON objects and arrays are parsed and scalars stay strings."""
    text = '<function=lookup><parameter=q>\n42\n</parameter><parameter=f>\n{"a": 1}\n</parameter></function>'
    result = extract_tool_calls(text)
    assert calls(result) == [("lookup", {"q": "42", "f": {"a": 1}})]


def test_qwen3_coder_value_that_does_not_fit_the_schema_stays_a_string() -> None:
    """A value that cannot be converted to the schema's type is left as written (validation reports it)."""
    text = "<function=read_file><parameter=path>/x</parameter><parameter=limit>ten</parameter></function>"
    assert calls(extract_tool_calls(text, SCHEMAS)) == [("read_file", {"path": "/x", "limit": "ten"})]


def test_qwen3_coder_missing_parameter_close() -> None:
    """A parameter without </parameter> ends where the next parameter starts."""
    text = "<function=read_file>\n<parameter=path>\n/x\n<parameter=limit>\n3\n</parameter>\n</function>"
    assert calls(extract_tool_calls(text, SCHEMAS)) == [("read_file", {"path": "/x", "limit": 3})]


def test_qwen3_coder_truncated_value() -> None:
    """A value cut off at the end of the text makes a truncated call."""
    text = "<tool_call>\n<function=read_file>\n<parameter=path>\n/tmp/a\n<parameter=zip>\nabc"
    result = extract_tool_calls(text, SCHEMAS)
    call = result.calls[0]
    assert call.name == "read_file"
    assert call.truncated
    assert call.error == "the call was cut off inside the value of `zip`"


def test_qwen3_coder_two_functions() -> None:
    """Two <function> blocks in one message give two calls."""
    text = (
        "<tool_call><function=get_time></function></tool_call>\n"
        "<tool_call><function=read_file><parameter=path>/b</parameter></function></tool_call>"
    )
    assert calls(extract_tool_calls(text, SCHEMAS)) == [("get_time", {}), ("read_file", {"path": "/b"})]


def test_llama_function_with_json_body() -> None:
    """Llama's <function=name>{json}</function> is read as JSON arguments."""
    result = extract_tool_calls('<function=read_file>{"path": "/l"}</function> after', SCHEMAS)
    assert calls(result) == [("read_file", {"path": "/l"})]
    assert result.text == "after"


# -- GLM, Mistral, Harmony ---------------------------------------------------------------------


def test_glm_name_only() -> None:
    """A block holding just a tool name calls it without arguments."""
    assert calls(extract_tool_calls("<tool_call>get_time</tool_call>", SCHEMAS)) == [("get_time", {})]


def test_mistral_array_and_named_forms() -> None:
    """[TOOL_CALLS] with a JSON array, and [TOOL_CALLS]name[ARGS]{...}, are both read."""
    array = extract_tool_calls('[TOOL_CALLS][{"name": "read_file", "arguments": {"path": "/m"}}]', SCHEMAS)
    named = extract_tool_calls('[TOOL_CALLS]read_file[ARGS]{"path": "/n"}[TOOL_CALLS]get_time[ARGS]{}', SCHEMAS)
    assert calls(array) == [("read_file", {"path": "/m"})]
    assert calls(named) == [("read_file", {"path": "/n"}), ("get_time", {})]
    assert named.calls[0].form is CallForm.MISTRAL


# -- JSON that looks like a call ---------------------------------------------------------------


def test_fenced_json_shapes() -> None:
    """tool/parameters, function/arguments, and an array of calls are all accepted."""
    text = (
        '```json\n{"tool": "read_file", "parameters": {"path": "/1"}}\n```\n'
        '```\n{"type": "function", "function": {"name": "get_time", "arguments": "{}"}}\n```\n'
        '```json\n[{"name": "read_file", "arguments": {"path": "/2"}}, {"name": "get_time"}]\n```'
    )
    assert calls(extract_tool_calls(text, SCHEMAS)) == [
        ("read_file", {"path": "/1"}),
        ("get_time", {}),
        ("read_file", {"path": "/2"}),
        ("get_time", {}),
    ]


def test_bare_json_after_unbalanced_brace() -> None:
    """A stray unclosed brace earlier in the text does not hide a later call."""
    text = 'use a { here and {"name": "get_time", "arguments": {}}'
    assert calls(extract_tool_calls(text, SCHEMAS)) == [("get_time", {})]


def test_bare_json_truncated_known_call() -> None:
    """A bare call to a known tool cut off at the end is reported as truncated."""
    result = extract_tool_calls('Writing: {"name": "read_file", "arguments": {"path": "/very/lo', SCHEMAS)
    assert len(result.calls) == 1
    assert result.calls[0].truncated
    assert result.calls[0].arguments == '{"path": "/very/lo'
    assert result.text == "Writing:"


# -- reasoning ---------------------------------------------------------------------------------


def test_calls_inside_think_are_ignored() -> None:
    """A call planned inside <think> is not made; the one after it is."""
    text = (
        '<think>I could <tool_call>{"name": "get_time", "arguments": {}}</tool_call> or '
        '{"name": "read_file", "arguments": {"path": "/no"}}</think>'
        '<tool_call>{"name": "read_file", "arguments": {"path": "/yes"}}</tool_call>'
    )
    result = extract_tool_calls(text, SCHEMAS)
    assert calls(result) == [("read_file", {"path": "/yes"})]
    assert result.text.startswith("<think>I could <tool_call>")


def test_closing_think_without_opening() -> None:
    """When the template opened <think> in the prompt, everything before </think> is reasoning."""
    text = (
        '[TOOL_REQUEST]{"name": "get_time", "arguments": {}}[END_TOOL_REQUEST] hmm</think>\n'
        '[TOOL_REQUEST]{"name": "read_file", "arguments": {"path": "/r"}}[END_TOOL_REQUEST]'
    )
    assert calls(extract_tool_calls(text, SCHEMAS)) == [("read_file", {"path": "/r"})]


def test_thinking_tag_variant() -> None:
    """<thinking> blocks are reasoning too."""
    text = '<thinking>{"name": "get_time", "arguments": {}}</thinking>'
    assert extract_tool_calls(text, SCHEMAS).calls == ()


# -- ids, names, and text ----------------------------------------------------------------------


def test_ids_are_unique_and_prefixed() -> None:
    """Ids are '<prefix>_<n>'; the default prefix is a hash of the text."""
    text = '<tool_call>{"name": "get_time"}</tool_call><tool_call>{"name": "get_time"}</tool_call>'
    assert [c.id for c in extract_tool_calls(text, SCHEMAS, id_prefix="r3").calls] == ["r3_0", "r3_1"]
    ids = [c.id for c in extract_tool_calls(text, SCHEMAS).calls]
    assert all(re.fullmatch(r"call_[0-9a-f]{8}_\d", i) for i in ids)
    assert len(set(ids)) == 2
    assert ids == [c.id for c in extract_tool_calls(text, SCHEMAS).calls]


def test_names_resolve_through_the_catalog() -> None:
    """With a catalog, an original or loosely written name becomes the wire name, and its schema types values."""
    catalog = build_catalog(
        {
            "fs": [
                McpTool(
                    name="read.file",
                    input_schema={"type": "object", "properties": {"n": {"type": "integer"}}},
                )
            ],
            "web": [McpTool(name="search")],
        }
    )
    text = (
        '<tool_call>{"name": "read.file", "arguments": {}}</tool_call>'
        "<function=fs.read_file><parameter=n>7</parameter></function>"
        '```json\n{"name": "mcp__web__search", "arguments": {"q": "x"}}\n```'
    )
    assert calls(extract_tool_calls(text, catalog)) == [
        ("fs__read_file", {}),
        ("fs__read_file", {"n": 7}),
        ("web__search", {"q": "x"}),
    ]


def test_names_resolve_loosely_against_a_name_set() -> None:
    """With a plain set of names, case and punctuation differences still resolve when unambiguous."""
    result = extract_tool_calls('```json\n{"name": "Get-Time", "arguments": {}}\n```', {"get_time"})
    assert calls(result) == [("get_time", {})]


def test_remaining_text_is_tidied() -> None:
    """Removing markup leaves no runs of blank lines or surrounding whitespace."""
    text = 'First.\n\n<tool_call>{"name": "get_time"}</tool_call>\n\n\nSecond.\n'
    assert extract_tool_calls(text, SCHEMAS).text == "First.\n\nSecond."


def test_split_reasoning() -> None:
    """Reasoning blocks are separated from the content."""
    assert split_reasoning("<think> plan A </think>Answer.<think>more</think> Done") == (
        "plan A\n\nmore",
        "Answer. Done",
    )
    assert split_reasoning("early thoughts</think>Answer") == ("early thoughts", "Answer")
    assert split_reasoning("<think>still going") == ("still going", "")
    assert split_reasoning("no reasoning") == ("", "no reasoning")


def test_glm_name_then_json() -> None:
    """A name followed by a JSON object, on one line or two, is a call."""
    text = '<tool_call>read_file {"path": "/1"}</tool_call><tool_call>read_file\n{"path": "/2"}</tool_call>'
    assert calls(extract_tool_calls(text, SCHEMAS)) == [("read_file", {"path": "/1"}), ("read_file", {"path": "/2"})]


# -- Text that holds no call -------------------------------------------------------------------

LEFT_ALONE = {
    "an unknown tool in a call-shaped block": '```json\n{"name": "delete_all", "arguments": {}}\n```',
    "data with a name key, or a call mixed with data": (
        '```json\n{"name": "read_file", "arguments": {}, "result": "ok"}\n```\n'
        '```json\n{"name": "read_file", "arguments": {}}\n{"weather": "sunny"}\n```'
    ),
    "a python block holding a call-shaped dict": (
        '```python\nx = {"name": "read_file", "arguments": {"path": "/p"}}\n```'
    ),
    "an unclosed <think> (reasoning cut off or still going)": (
        '<think>Plan: <tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    ),
    "plain text, whitespace and all": "  Nothing to call here.\n\n\n  ",
}


@pytest.mark.parametrize("text", LEFT_ALONE.values(), ids=LEFT_ALONE.keys())
def test_text_that_holds_no_call_comes_back_unchanged(text: str) -> None:
    """Nothing is recovered, nothing reported, and the text is exactly as given."""
    assert extract_tool_calls(text, SCHEMAS) == Extraction(text=text)


def test_fenced_and_bare_json_need_known_tools() -> None:
    """Without a tool list, fenced and bare JSON are never calls."""
    text = '```json\n{"name": "read_file", "arguments": {}}\n``` {"name": "read_file", "arguments": {}}'
    assert extract_tool_calls(text) == Extraction(text=text)


UNREADABLE = {
    "an empty block is dropped, prose in a block reported": (
        "<tool_call></tool_call>Hi <tool_call>I should read the file</tool_call>",
        "A <tool_call> block could not be read: 'I should read the file'",
        "Hi",
    ),
    "a call object that names no tool": (
        '<tool_call>{"arguments": {"path": "/a"}}</tool_call>',
        'A hermes tool call names no tool: \'{"arguments": {"path": "/a"}}\'',
        "",
    ),
    "cut off before it names its tool": (
        '<tool_call>{"argu',
        "A hermes tool call was cut off before naming its tool: '{\"argu'",
        "",
    ),
    "a <tool_call> that ends the text": (
        "Let me check.\n<tool_call>\n",
        "A <tool_call> was cut off before its content began.",
        "Let me check.",
    ),
}


@pytest.mark.parametrize(("text", "problem", "rest"), UNREADABLE.values(), ids=UNREADABLE.keys())
def test_a_block_that_cannot_be_read_is_reported_not_guessed(text: str, problem: str, rest: str) -> None:
    """No call is made up: the block is named in ``unreadable`` and removed from the text."""
    assert extract_tool_calls(text, SCHEMAS) == Extraction(text=rest, unreadable=(problem,))
