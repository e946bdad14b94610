"""Generated bad input for every tool (issue 20): typed results, never a crash, and the bridge goes on.

The tools come from the server itself (``tools/list`` through the SDK's in-memory client), so a new
tool is covered without touching this file. For each one, hypothesis builds arguments from the
tool's input schema: a wrong JSON type for one declared parameter, a huge or odd string, a negative,
huge or NaN-like number, deeply nested JSON, an unknown extra field, a missing required field. Each
call goes through the real MCP client/server pair (the SDK's argument validation included) to a bridge
on the built-in simulator, with child servers enabled (none configured) so the autonomous tools reach
the planner.

The contract checked: a case that is wrong by the schema ends in ``isError`` with code
``bad_request``; a case that may be valid either succeeds or ends in a typed error with a stable code
(never ``internal`` or ``actor_crashed``, never a traceback); every call answers within its deadline;
and afterwards ``bridge_status`` still answers.

A case is a recipe independent of the tool (which parameter by index, candidate values of every JSON
type), applied to the tool's schema in the test: so a failing case shrinks to a small recipe and can be
kept as an explicit ``@example``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from mcp import Client
from mcp.types import CallToolResult

from bridge.app import open_bridge
from bridge.errors import ErrorCode
from bridge.frontend import BridgeSlot, create_server
from bridge.settings import BridgeSettings, ChildSettings, RetrySettings, ServerSettings
from bridge.sim import SimConfig, SimModel, SimServer
from tests._util import mcp_server

QWEN = "qwen/qwen3-coder-30b"
EMBED = "text-embedding-nomic-embed-text-v1.5"

CALL_DEADLINE: Final = 30.0
"""Seconds one generated call may take before the test fails (a bound against hangs, not a timing check)."""
CALL_BUDGET: Final = 10.0
"""The bridge's own budget per call: a valid call that runs long ends in a typed ``timeout`` within it."""

TYPED_CODES: Final = frozenset(ErrorCode) - {ErrorCode.INTERNAL, ErrorCode.ACTOR_CRASHED}
"""Codes a generated call may end in when its input may be valid: any stable code but a bug's."""


# --------------------------------------------------------------------------- the tools, from the server


def _listed_tools() -> dict[str, dict[str, Any]]:
    """Every tool the bridge lists, with its input schema, asked over MCP (``tools/list`` needs no actor)."""

    async def ask() -> dict[str, dict[str, Any]]:
        server = create_server(BridgeSlot(), settings=BridgeSettings())
        async with Client(server, mode="legacy") as client:
            return {t.name: t.input_schema for t in (await client.list_tools()).tools}

    return anyio.run(ask)


_TOOLS: dict[str, dict[str, Any]] = {}


def tool_schemas() -> dict[str, dict[str, Any]]:
    if not _TOOLS:
        _TOOLS.update(_listed_tools())
    return _TOOLS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "tool" in metafunc.fixturenames:
        metafunc.parametrize("tool", sorted(tool_schemas()))


def test_the_bridge_lists_tools_to_drive() -> None:
    """An empty list would make every generated test vanish silently."""
    tools = tool_schemas()
    assert tools
    assert {"chat_completion", "batch_chat", "bridge_status"} <= set(tools)


# --------------------------------------------------------------------------- a bridge on the simulator


@asynccontextmanager
async def bridge_client(mcp_config: Path | None = None) -> AsyncIterator[Client]:
    """An MCP client of a bridge on the simulator (two models), with the child servers of ``mcp_config``."""
    config = SimConfig(
        models=(
            SimModel(id=QWEN, loaded=True, reply_tokens=6, context_length=8192),
            SimModel(id=EMBED, type="embeddings", loaded=True, embedding_dim=8),
        ),
        auto_evict=False,
    )
    children = ChildSettings(config_paths=[str(mcp_config)] if mcp_config else [], discover=False, watch=False)
    async with SimServer(config) as sim:
        bridge_settings = BridgeSettings(
            servers=[ServerSettings(url=sim.url, name="sim")],
            default_model=QWEN,
            retry=RetrySettings(attempts=2, wait_initial=0.01, wait_max=0.02),
            listing_timeout=2.0,
            call_budget=CALL_BUDGET,
            children=children,
        )
        async with (
            open_bridge(bridge_settings, child_servers=True) as bridge,
            Client(mcp_server(bridge), mode="legacy") as mcp_client,
        ):
            yield mcp_client


@pytest.fixture
async def client(tmp_path: Path, time_server: list[str]) -> AsyncIterator[Client]:
    """The bridge with one child server, ``time`` (mcp-server-time, started at first use: by the autonomous tools)."""
    mcp_config = tmp_path / "mcp.json"
    mcp_config.write_text(json.dumps({"mcpServers": {"time": {"command": time_server[0], "args": time_server[1:]}}}))
    async with bridge_client(mcp_config) as mcp_client:
        yield mcp_client


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One generated input, as a recipe any tool's schema can take.

    ``kind`` says what is wrong; ``pick`` chooses the parameter (modulo how many there are), unless the
    tool has the one named ``param`` (what an explicit ``@example`` names);
    ``values`` are the candidates (for ``wrong_type`` the first one the parameter cannot take is
    used; otherwise the first one); ``name`` is the unknown field's name.
    """

    kind: str
    pick: int = 0
    values: tuple[Any, ...] = ()
    name: str = "unexpected"
    param: str | None = None

    def __repr__(self) -> str:  # keep hypothesis' reports short: a 1 MB string is shown by its size
        shown = [_short(v) for v in self.values]
        named = f", param={self.param!r}" if self.param else ""
        return f"Case({self.kind!r}, pick={self.pick}, values=({', '.join(shown)}), name={_short(self.name)}{named})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}…<{len(text)} chars>"


@dataclass
class Applied:
    """A case applied to one tool: the arguments, and whether they are wrong by the schema."""

    arguments: dict[str, Any]
    must_fail: bool
    note: str = ""


_JSON_SCALARS = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8)
json_values = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)

ODD_CHARACTERS = (
    "\x00",
    "\x01\x07\x1b[31m",
    "\r\n\t\x0b\x0c",
    "\u202e\u2066RTL\u2069\u200f",
    "\u200b\ufeff\u2060",
    "e\u0301\u0301\u0301\u0301",
    "\U0001f600\U0001f9d1\u200d\U0001f4bb",
    "\ufffd\ufffe\uffff",
    "\U0010ffff",
    "\u0085\u2028\u2029",
    '"}]\\',
    "{{ template }} ${HOME} %s %n",
)

odd_strings = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(ODD_CHARACTERS),
    st.tuples(st.sampled_from(ODD_CHARACTERS), st.integers(1, 64)).map(lambda t: t[0] * t[1]),
    st.sampled_from(["", " ", "   \t\n", "null", "true", "0", "-1", "1e999", "NaN", "[]", "{}", '{"a": 1}']),
    # Huge: a megabyte (and a bit more) of one character, built rather than generated.
    st.tuples(st.sampled_from(["a", "\x00", "\u202e", "\U0001f600", " "]), st.sampled_from([100_000, 1_048_577])).map(
        lambda t: t[0] * t[1]
    ),
)

odd_numbers = st.one_of(
    st.sampled_from(
        [
            0,
            -1,
            -0.0,
            2**31,
            2**53 + 1,
            2**63 - 1,
            2**63,
            2**64,
            -(2**63) - 1,
            10**30,
            -(10**30),
            10**400,
            1e308,
            -1e308,
            5e-324,
            1.5,
            # NaN-like: JSON has no NaN or infinity, but pydantic takes these strings for a number.
            "NaN",
            "nan",
            "Infinity",
            "-inf",
            "1e999",
        ]
    ),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _deep(depth: int, kind: str) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


# Deeper than ~250 levels the SDK's client cannot serialize a request at all; the stdio test sends deeper JSON.
deep_values = st.tuples(st.sampled_from([200, 240]), st.sampled_from(["list", "dict"])).map(lambda t: _deep(*t))

wrong_type_candidates = st.tuples(
    st.none(),
    st.booleans(),
    st.integers().filter(lambda n: n not in (0, 1)),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()),
    st.text(max_size=10).map(lambda s: "x-" + s),  # never a number, a bool word, or JSON
    st.lists(json_values, max_size=3),
    st.dictionaries(st.text(max_size=6), json_values, max_size=3),
)

cases = st.one_of(
    st.builds(lambda pick, values: Case("wrong_type", pick, values), st.integers(0, 50), wrong_type_candidates),
    st.builds(lambda pick, s: Case("odd_string", pick, (s,)), st.integers(0, 50), odd_strings),
    st.builds(lambda pick, n: Case("odd_number", pick, (n,)), st.integers(0, 50), odd_numbers),
    st.builds(lambda pick, d: Case("deep", pick, (d,)), st.integers(0, 50), deep_values),
    st.builds(
        lambda name, v: Case("unknown_field", 0, (v,), name),
        st.one_of(st.text(min_size=1, max_size=12), odd_strings.filter(bool)),
        json_values | deep_values,
    ),
    st.builds(lambda pick: Case("missing_required", pick), st.integers(0, 50)),
)


# --------------------------------------------------------------------------- applying a case to a schema


_ANY_TYPE: Final = ("string", "number", "integer", "boolean", "array", "object", "null")
_BOOL_WORDS: Final = frozenset({"0", "1", "f", "t", "n", "y", "no", "yes", "off", "on", "false", "true"})


def _branches(prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of a property, one JSON type each (``$ref`` items are objects)."""
    if "anyOf" in prop:
        return [b for p in prop["anyOf"] for b in _branches(p)]
    if "$ref" in prop:
        return [{"type": "object"}]
    kind = prop.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else list(_ANY_TYPE)
    return [{**prop, "type": k} for k in kinds]


def _types(prop: dict[str, Any]) -> set[str]:
    return {b["type"] for b in _branches(prop)}


def _clearly_wrong(value: Any, prop: dict[str, Any]) -> bool:
    """Whether no alternative of the property can take ``value``, even by lax coercion (pydantic's, or
    the SDK's parsing of JSON in strings).

    ``0``/``1`` pass for a boolean, a whole float for an integer, a numeric string (``"NaN"`` too) for a
    number, a string of JSON for what it parses to: none of those counts as clearly wrong. A number
    outside the bounds the schema declares, or a list shorter than its ``minItems``, is.
    """
    return all(_wrong_for(value, branch) for branch in _branches(prop))


def _wrong_for(value: Any, branch: dict[str, Any]) -> bool:
    kind = branch["type"]
    if value is None:
        return kind != "null"
    if isinstance(value, str):
        return kind != "string" and not (kind != "null" and _coercible(value))
    if isinstance(value, list):
        return kind != "array" or len(value) < branch.get("minItems", 0)
    if isinstance(value, dict):
        return kind != "object"
    if kind == "boolean":
        return not (isinstance(value, bool) or value in (0, 1))
    if kind == "integer" and isinstance(value, float) and not value.is_integer():
        return True
    if kind in ("integer", "number"):
        return _out_of_bounds(value, branch)
    return True


def _out_of_bounds(value: float, branch: dict[str, Any]) -> bool:
    if "minimum" in branch and value < branch["minimum"]:
        return True
    if "exclusiveMinimum" in branch and value <= branch["exclusiveMinimum"]:
        return True
    if "maximum" in branch and value > branch["maximum"]:
        return True
    return "exclusiveMaximum" in branch and value >= branch["exclusiveMaximum"]


def _coercible(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        pass
    else:
        return True
    try:
        float(text)
    except ValueError:
        return text.strip().lower() in _BOOL_WORDS
    return True


GOOD_VALUES: Final[dict[str, Any]] = {"model": QWEN, "mcp_name": "time", "mcp_names": ["time"]}
"""Values that make a call valid for the parameters that name something (a model, a child server)."""


def _valid_sample(name: str, prop: dict[str, Any]) -> Any:
    """A value the property takes, for the required parameters a case leaves alone."""
    if name in GOOD_VALUES and not _clearly_wrong(GOOD_VALUES[name], prop):
        return GOOD_VALUES[name]
    for candidate in ("hi", ["hi"], 1, 2, False, {}):
        if not _clearly_wrong(candidate, {**prop, "anyOf": [b for b in _branches(prop) if b["type"] != "null"]}):
            return candidate
    raise AssertionError(f"no valid sample for {name}: {prop}")


def apply(case: Case, schema: dict[str, Any]) -> Applied:
    props: dict[str, dict[str, Any]] = schema.get("properties", {})
    required: list[str] = list(schema.get("required", []))
    base = {name: _valid_sample(name, props[name]) for name in required}
    names = sorted(props)

    def unknown(value: Any, name: str = case.name) -> Applied:
        while name in props:
            name += "_"
        return Applied({**base, name: value}, must_fail=True, note=f"unknown field {name!r}")

    if case.kind == "unknown_field" or (not names and case.kind != "missing_required"):
        return unknown(case.values[0] if case.values else None)
    if case.kind == "missing_required":
        if not required:
            return Applied(base, must_fail=False, note="no required field to leave out")
        gone = required[case.pick % len(required)]
        return Applied({k: v for k, v in base.items() if k != gone}, must_fail=True, note=f"without {gone!r}")
    name = case.param if case.param in props else names[case.pick % len(names)]
    prop = props[name]
    if case.kind == "wrong_type":
        wrong = [v for v in case.values if _clearly_wrong(v, prop)]
        if not wrong:  # the parameter takes every JSON type: no wrong one to give it
            return Applied(base, must_fail=False, note=f"{name!r} takes any type")
        return Applied(
            {**base, name: wrong[0]}, must_fail=True, note=f"{name!r} ({sorted(_types(prop))}) given a wrong type"
        )
    value = case.values[0]
    # An odd string, number or deep value may be valid for the parameter: then only "typed" is required;
    # where the schema cannot take it at all, it must be refused as a bad request.
    return Applied({**base, name: value}, must_fail=_clearly_wrong(value, prop), note=f"{case.kind} for {name!r}")


# --------------------------------------------------------------------------- checking a result


def _text(result: CallToolResult) -> str:
    assert result.content, result
    block = result.content[0]
    assert block.type == "text"
    return block.text


def check(tool: str, applied: Applied, result: CallToolResult) -> None:
    what = f"{tool} {applied.note}: {_text(result)[:400]}"
    if applied.must_fail:
        assert result.is_error, f"accepted input that is wrong by the schema: {what}"
    if not result.is_error:
        inner = (result.structured_content or {}).get("error")
        # A result may carry an error of its own (a run that stopped on one); bad input is not a success.
        assert not (isinstance(inner, dict) and inner.get("code") == ErrorCode.BAD_REQUEST), (
            f"a bad request answered as a successful result: {what}"
        )
        return
    fields = result.structured_content
    assert fields is not None, what
    code = fields.get("code")
    assert code in TYPED_CODES, what
    if applied.must_fail:
        assert code == ErrorCode.BAD_REQUEST, what
    assert _text(result).startswith(f"{code}: "), what
    assert {"message", "retryable", "retry_after"} <= set(fields), what
    assert "Traceback" not in _text(result), what


# --------------------------------------------------------------------------- the test


@given(case=cases)
# Found by this test: the autonomous tools took max_tokens=0 (or -3) and answered a successful result
# whose run had stopped on bad_request; now the schema says max_tokens > 0 and the SDK refuses it.
@example(case=Case("odd_number", values=(0,), param="max_tokens"))
@example(case=Case("odd_number", values=(-3,), param="max_tokens"))
# Found by this test: every tool ignored arguments it does not declare (a typo'd name ran with the default).
@example(case=Case("unknown_field", values=(None,), name="0"))
@example(case=Case("unknown_field", values=(10,), name="max_token"))
async def test_generated_arguments_end_in_a_typed_result(tool: str, client: Client, case: Case) -> None:
    """Whatever the arguments, the call answers in time with a typed result, and the bridge goes on."""
    schema = tool_schemas()[tool]
    applied = apply(case, schema)
    with anyio.fail_after(CALL_DEADLINE):
        result = await client.call_tool(tool, applied.arguments)
    check(tool, applied, result)
    with anyio.fail_after(CALL_DEADLINE):
        status = await client.call_tool("bridge_status", {})
    assert not status.is_error, _text(status)


def test_cases_apply_to_every_schema() -> None:
    """The recipes themselves: a wrong type is wrong, a missing field is missing (checked without a server)."""
    for schema in tool_schemas().values():
        wrong = apply(Case("wrong_type", 0, (None, True, 7, 1.5, "x-", [1], {"a": 1})), schema)
        assert wrong.must_fail
        missing = apply(Case("missing_required"), schema)
        assert missing.must_fail == bool(schema.get("required"))
