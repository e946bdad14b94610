"""Recovering tool calls a server left in the assistant's text.

When a local server cannot parse a model's tool call (no native support for
the model, a parser bug, a call inside an unexpected wrapper), the call stays
in ``message.content`` as text and ``tool_calls`` is empty. These forms are
read back:

- Hermes/Qwen ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``,
  also when the closing tag is missing at the end of the text;
- LM Studio's default ``[TOOL_REQUEST]{...}[END_TOOL_REQUEST]``;
- Qwen3-coder ``<function=name><parameter=key>value</parameter></function>``,
  bare or inside ``<tool_call>``, and Llama's ``<function=name>{json}</function>``;
- GLM ``<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>``;
- Mistral ``[TOOL_CALLS][{...}]`` and ``[TOOL_CALLS]name[ARGS]{...}``;
- gpt-oss Harmony ``to=functions.name ... <|message|>{...}<|call|>``;
- a fenced JSON block, or a bare JSON object, shaped like a call
  (``{"name", "arguments"}``, ``{"tool", "parameters"}``,
  ``{"function": {"name", "arguments"}}``) that names a *known* tool.

Text inside reasoning (``<think>...</think>``, an unclosed ``<think>``, a
``</think>`` with no opening tag, Harmony's analysis channel) is never read
as a call: models plan calls there that they do not make (LM Studio BT#1592).
Known limitation: a ``<think>`` tag written inside a call's argument is taken
as reasoning too.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final, TypeAlias, final

import msgspec

from bridge.planner.repair import NOT_TYPED, parse_arguments, repair_json, value_from_text
from bridge.planner.schema import clean_schema, schema_types
from bridge.planner.tools import ToolCatalog

__all__ = [
    "CallForm",
    "ExtractedCall",
    "Extraction",
    "KnownTools",
    "extract_tool_calls",
    "split_reasoning",
]

KnownTools: TypeAlias = ToolCatalog | Mapping[str, Mapping[str, Any] | None] | Collection[str]
"""The tools a call may name: a catalog, names with their input schemas, or just names."""


class CallForm(enum.StrEnum):
    """The text form a call was written in."""

    HERMES = "hermes"
    TOOL_REQUEST = "tool_request"
    XML_FUNCTION = "xml_function"
    GLM = "glm"
    MISTRAL = "mistral"
    HARMONY = "harmony"
    FENCED_JSON = "fenced_json"
    BARE_JSON = "bare_json"


class ExtractedCall(msgspec.Struct, frozen=True, kw_only=True):
    """One call recovered from text.

    Attributes:
        id: A synthesized call id, unique within one :func:`extract_tool_calls` result.
        name: The tool's name; the catalog's wire name when it resolved, else as written.
        arguments: The parsed arguments, or the raw text when they could not be read.
        error: Why the arguments could not be read (for the model), else None.
        truncated: The call was cut off (most likely by the output token limit).
        repairs: What was fixed to read the arguments (for logs).
        form: The text form the call was written in.
    """

    id: str
    name: str
    arguments: dict[str, Any] | str
    error: str | None = None
    truncated: bool = False
    repairs: tuple[str, ...] = ()
    form: CallForm


class Extraction(msgspec.Struct, frozen=True, kw_only=True):
    """Calls recovered from one assistant message.

    Attributes:
        calls: The calls, in the order they appear.
        text: The message with the calls' markup removed (reasoning kept). The
            original text, unchanged, when nothing was found.
        unreadable: One sentence per call-like markup that named no readable
            tool, so the planner can tell the model what went wrong.
    """

    calls: tuple[ExtractedCall, ...] = ()
    text: str = ""
    unreadable: tuple[str, ...] = ()


_THINK_OPEN = re.compile(r"<(think|thinking)>")
_THINK_CLOSE = re.compile(r"</(think|thinking)>")
_HARMONY_ANALYSIS = re.compile(r"<\|channel\|>\s*analysis\s*<\|message\|>")
_HARMONY_STOPS: Final = ("<|end|>", "<|start|>", "<|call|>", "<|return|>")
_MARKERS = re.compile(r"<tool_call>|\[TOOL_REQUEST\]|<function=|\[TOOL_CALLS\]|\bto=functions\.")
_FENCE = re.compile(r"```[ \t]*(?P<lang>[A-Za-z0-9_+-]*)[^\n`]*\n(?P<body>.*?)(?:```|\Z)", re.DOTALL)
_CALL_FENCE_LANGS: Final = frozenset(
    {"", "json", "json5", "jsonc", "tool_call", "tool_code", "tool", "tools", "function", "function_call", "call"}
)
_FUNCTION_OPEN = re.compile(r"<function=([^>\n]*)>")
_PARAMETER_OPEN = re.compile(r"<parameter=([^>\n]*)>")
_GLM_PAIR = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)(?:</arg_value>|\Z)", re.DOTALL)
_MISTRAL_NAMED = re.compile(r"([A-Za-z0-9_.:/-]+)\s*(?:\[CALL_ID\][^\[]*)?\s*(?:\[ARGS\])?\s*")
_HARMONY_CALL = re.compile(r"to=functions\.([^\s<]+)")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")
_SALVAGE_NAME = re.compile(r'"(?:name|tool|tool_name)"\s*:\s*"([^"\\]{1,128})"')
_LEADING_NAME = re.compile(r'\{\s*"(?:name|tool|tool_name)"\s*:\s*"([^"\\]{1,128})"')
_SALVAGE_ARGS = re.compile(r'"(?:arguments|parameters|args|input)"\s*:\s*')
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")

_NAME_KEYS: Final = ("name", "tool", "tool_name", "function_name", "recipient_name")
_ARG_KEYS: Final = ("arguments", "parameters", "args", "input", "tool_input", "params")
_CALL_KEYS: Final = frozenset({*_NAME_KEYS, *_ARG_KEYS, "type", "id", "index", "call_id", "function"})
_MISSING: Final = object()


def extract_tool_calls(text: str, tools: KnownTools | None = None, *, id_prefix: str | None = None) -> Extraction:
    """Recover the tool calls written as text in an assistant message.

    Args:
        text: The message's ``content`` (with reasoning inline or not).
        tools: The tools the model was offered. With a catalog or a mapping of
            names to input schemas, Qwen3-coder/GLM parameter values are coerced
            to the schema's types and names are resolved loosely (see
            :meth:`ToolCatalog.resolve`). Without ``tools``, fenced and bare JSON
            are never taken as calls, since nothing tells a call from data.
        id_prefix: Call ids are ``f"{id_prefix}_{n}"``. The default derives the
            prefix from a hash of ``text``; pass a per-round prefix to keep ids
            unique across a conversation in which the model repeats itself.

    Returns:
        The calls, the text without their markup, and what could not be read.
    """
    known = _Known(tools)
    masked = _mask(text, _reasoning_spans(text))
    found = _Finder(masked, known).find()
    if not found:
        return Extraction(text=text)
    prefix = id_prefix if id_prefix is not None else "call_" + hashlib.sha256(text.encode()).hexdigest()[:8]
    calls: list[ExtractedCall] = []
    unreadable: list[str] = []
    pieces: list[str] = []
    cursor = 0
    for block in found:
        pieces.append(text[cursor : block.start])
        cursor = block.end
        unreadable.extend(block.unreadable)
        for call in block.calls:
            calls.append(
                ExtractedCall(
                    id=f"{prefix}_{len(calls)}",
                    name=call.name,
                    arguments=call.arguments,
                    error=call.error,
                    truncated=call.truncated,
                    repairs=call.repairs,
                    form=call.form,
                )
            )
    pieces.append(text[cursor:])
    remaining = _BLANK_LINES.sub("\n\n", "".join(pieces)).strip()
    return Extraction(calls=tuple(calls), text=remaining, unreadable=tuple(unreadable))


def split_reasoning(text: str) -> tuple[str, str]:
    """Split a message into its reasoning and the rest.

    Recognizes the same reasoning markup :func:`extract_tool_calls` skips.

    Returns:
        ``(reasoning, content)``: the reasoning blocks' inner text joined by
        blank lines, and the text without them, both stripped.
    """
    spans = _reasoning_spans(text)
    reasoning: list[str] = []
    content: list[str] = []
    cursor = 0
    for start, end, inner_start, inner_end in spans:
        content.append(text[cursor:start])
        reasoning.append(text[inner_start:inner_end].strip())
        cursor = end
    content.append(text[cursor:])
    return "\n\n".join(r for r in reasoning if r), "".join(content).strip()


def _reasoning_spans(text: str) -> list[tuple[int, int, int, int]]:
    """(start, end, inner_start, inner_end) of every reasoning block, in order."""
    spans: list[tuple[int, int, int, int]] = []
    first_open = _THINK_OPEN.search(text)
    first_close = _THINK_CLOSE.search(text)
    if first_close is not None and (first_open is None or first_close.start() < first_open.start()):
        # The chat template opened <think> in the prompt; the reply starts inside it.
        spans.append((0, first_close.end(), 0, first_close.start()))
    cursor = spans[-1][1] if spans else 0
    candidates: list[tuple[int, str]] = [(m.start(), "think") for m in _THINK_OPEN.finditer(text)]
    candidates += [(m.start(), "harmony") for m in _HARMONY_ANALYSIS.finditer(text)]
    for start, kind in sorted(candidates):
        if start < cursor:
            continue
        if kind == "think":
            opening = _THINK_OPEN.match(text, start)
            assert opening is not None
            close = text.find(f"</{opening.group(1)}>", opening.end())
            end = len(text) if close < 0 else close + len(opening.group(1)) + 3
            spans.append((start, end, opening.end(), len(text) if close < 0 else close))
        else:
            header = _HARMONY_ANALYSIS.match(text, start)
            assert header is not None
            stops = [p for p in (text.find(s, header.end()) for s in _HARMONY_STOPS) if p >= 0]
            inner_end = min(stops) if stops else len(text)
            end = inner_end + len("<|end|>") if text.startswith("<|end|>", inner_end) else inner_end
            spans.append((start, end, header.end(), inner_end))
        cursor = spans[-1][1]
    return spans


def _mask(text: str, spans: Sequence[tuple[int, int, int, int]]) -> str:
    """The text with reasoning blanked out, keeping every other character's position."""
    if not spans:
        return text
    chars = list(text)
    for start, end, _, _ in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


class _RawCall(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    arguments: dict[str, Any] | str
    error: str | None = None
    truncated: bool = False
    repairs: tuple[str, ...] = ()
    form: CallForm


class _Block(msgspec.Struct, kw_only=True):
    start: int
    end: int
    calls: list[_RawCall] = msgspec.field(default_factory=list)
    unreadable: list[str] = msgspec.field(default_factory=list)


@final
class _Known:
    """Name resolution and parameter schemas for the tools a call may name. Strictly private."""

    __slots__ = ("_catalog", "_loose", "_names", "_schemas")

    def __init__(self, tools: KnownTools | None) -> None:
        self._catalog: ToolCatalog | None = None
        self._schemas: dict[str, dict[str, Any]] = {}
        self._names: frozenset[str] | None = None
        self._loose: dict[str, str] = {}
        if isinstance(tools, ToolCatalog):
            self._catalog = tools
            self._names = tools.names
            self._schemas = {tool.name: tool.parameters for tool in tools}
            return
        if tools is None:
            return
        self._names = frozenset(tools)
        if isinstance(tools, Mapping):
            self._schemas = {name: clean_schema(schema) for name, schema in tools.items() if schema is not None}
        loose: dict[str, set[str]] = {}
        for name in self._names:
            loose.setdefault(_loose_key(name), set()).add(name)
        self._loose = {key: next(iter(names)) for key, names in loose.items() if len(names) == 1}

    @property
    def given(self) -> bool:
        return self._names is not None

    def resolve(self, name: str) -> str | None:
        """The known name meant by ``name``, or None."""
        if self._catalog is not None:
            tool = self._catalog.resolve(name)
            return None if tool is None else tool.name
        if self._names is None:
            return None
        if name in self._names:
            return name
        return self._loose.get(_loose_key(name))

    def canonical(self, name: str) -> str:
        """The known name when it resolves, else the name as written."""
        return self.resolve(name) or name.strip()

    def property_schema(self, tool: str, key: str) -> Mapping[str, Any] | None:
        properties = self._schemas.get(tool, {}).get("properties")
        if isinstance(properties, Mapping):
            sub = properties.get(key)
            if isinstance(sub, Mapping):
                return sub
        return None


def _loose_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@final
class _Finder:
    """Finds every call block in masked text. Strictly private: one instance per text."""

    __slots__ = ("_blocks", "_known", "_text")

    def __init__(self, text: str, known: _Known) -> None:
        self._text = text
        self._known = known
        self._blocks: list[_Block] = []

    def find(self) -> list[_Block]:
        self._markers()
        if self._known.given:
            fences = self._fences()
            self._bare(fences)
        return sorted(self._blocks, key=lambda block: block.start)

    def _taken(self, position: int) -> bool:
        return any(block.start <= position < block.end for block in self._blocks)

    # -- markup forms -------------------------------------------------------------------------

    def _markers(self) -> None:
        text = self._text
        cursor = 0
        for match in _MARKERS.finditer(text):
            if match.start() < cursor:
                continue
            marker = match.group(0)
            block: _Block | None
            if marker == "<tool_call>":
                block = self._tool_call(match.start())
            elif marker == "[TOOL_REQUEST]":
                block = self._json_after(match.start(), match.end(), CallForm.TOOL_REQUEST)
                block.end = _consume_closer(text, block.end, "[END_TOOL_REQUEST]", "[TOOL_REQUEST]")
            elif marker == "<function=":
                block = self._function(match.start())
            elif marker == "[TOOL_CALLS]":
                block = self._mistral(match.start(), match.end())
            else:
                block = self._harmony(match.start())
            if block is not None:
                self._blocks.append(block)
                cursor = block.end

    def _tool_call(self, start: int) -> _Block:
        text = self._text
        j = _skip_space(text, start + len("<tool_call>"))
        if text.startswith("<function=", j):
            inner = self._function(j)
            block = _Block(start=start, end=inner.end, calls=inner.calls, unreadable=inner.unreadable)
        elif _json_starts(text, j):
            block = self._json_after(start, j, CallForm.HERMES)
        else:
            block = self._glm(start, j)
        block.end = _consume_closer(text, block.end, "</tool_call>", "<tool_call>")
        return block

    def _json_after(self, start: int, body: int, form: CallForm) -> _Block:
        """One or more JSON call objects (or arrays of them) starting at ``body``."""
        text = self._text
        block = _Block(start=start, end=body)
        j = _skip_space(text, body)
        if j >= len(text):
            block.end = len(text)
            block.unreadable.append(f"A {form.value} tool call was cut off before its content began.")
            return block
        while _json_starts(text, j):
            end = _scan_json(text, j)
            if end is None:
                self._salvage(block, text[j:], form)
                block.end = len(text)
                return block
            self._add_json(block, text[j:end], form, strict=False)
            block.end = end
            j = _skip_space(text, end, also=",")
        if not block.calls and not block.unreadable:
            block.unreadable.append(f"A {form.value} tool call could not be read: {_preview(text[j : j + 120])}")
        return block

    def _add_json(self, block: _Block, source: str, form: CallForm, *, strict: bool) -> bool:
        """Read call objects from JSON text into ``block``; False when it holds anything else."""
        parsed = repair_json(source)
        if not parsed.ok:
            if strict:
                return False
            self._salvage(block, source, form, error=parsed.error)
            return True
        values = parsed.value if isinstance(parsed.value, list) else [parsed.value]
        calls: list[_RawCall] = []
        for value in values:
            call = self._call_from_value(value, form, strict=strict, repairs=parsed.repairs)
            if call is None:
                if strict:
                    return False
                block.unreadable.append(f"A {form.value} tool call names no tool: {_preview(source)}")
                continue
            calls.append(call)
        if strict and not calls:
            return False
        block.calls.extend(calls)
        return True

    def _call_from_value(
        self, value: Any, form: CallForm, *, strict: bool, repairs: tuple[str, ...]
    ) -> _RawCall | None:
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
            if self._known.resolve(only) is None or not isinstance(value[only], Mapping | None):
                return None
            name, arguments = only, value[only]
        if strict and self._known.resolve(name) is None:
            return None
        return self._make_call(name, arguments, form, repairs)

    def _make_call(self, name: str, arguments: Any, form: CallForm, repairs: tuple[str, ...] = ()) -> _RawCall:
        canonical = self._known.canonical(name)
        if arguments is _MISSING or arguments is None:
            return _RawCall(name=canonical, arguments={}, repairs=repairs, form=form)
        if isinstance(arguments, Mapping):
            return _RawCall(name=canonical, arguments=dict(arguments), repairs=repairs, form=form)
        if isinstance(arguments, str):
            parsed = parse_arguments(arguments)
            if parsed.value is not None:
                return _RawCall(name=canonical, arguments=parsed.value, repairs=repairs + parsed.repairs, form=form)
            return _RawCall(
                name=canonical,
                arguments=arguments,
                error=parsed.error,
                truncated=parsed.truncated,
                repairs=repairs + parsed.repairs,
                form=form,
            )
        return _RawCall(
            name=canonical,
            arguments=json.dumps(arguments),
            error="the arguments must be a JSON object",
            repairs=repairs,
            form=form,
        )

    def _salvage(self, block: _Block, source: str, form: CallForm, *, error: str | None = None) -> None:
        """Keep the name of a call whose JSON could not be read, so the model can be told why."""
        parsed = repair_json(source)
        truncated = parsed.truncated
        named = _SALVAGE_NAME.search(source)
        if named is None:
            what = "was cut off before naming its tool" if truncated else "could not be read and names no tool"
            block.unreadable.append(f"A {form.value} tool call {what}: {_preview(source)}")
            return
        args = _SALVAGE_ARGS.search(source, named.end()) or _SALVAGE_ARGS.search(source)
        raw = source[args.end() :] if args is not None else source
        block.calls.append(
            _RawCall(
                name=self._known.canonical(named.group(1)),
                arguments=raw,
                error=parsed.error or error or "the call could not be read",
                truncated=truncated,
                repairs=parsed.repairs,
                form=form,
            )
        )

    def _function(self, start: int) -> _Block:
        """Qwen3-coder ``<function=name><parameter=k>v</parameter></function>`` (or a JSON body)."""
        text = self._text
        opening = _FUNCTION_OPEN.match(text, start)
        if opening is None:
            return _Block(start=start, end=len(text), unreadable=["A <function=...> tool call was cut off."])
        name = opening.group(1).strip().strip("\"'")
        body_end, end, closed = _body_end(text, opening.end(), "</function>")
        body = text[opening.end() : body_end]
        block = _Block(start=start, end=end)
        if not name:
            block.unreadable.append("A <function=...> tool call names no tool.")
            return block
        if _PARAMETER_OPEN.search(body) is None and body.strip().startswith("{"):
            block.calls.append(self._make_call(name, body.strip(), CallForm.XML_FUNCTION))
            return block
        arguments: dict[str, Any] = {}
        canonical = self._known.canonical(name)
        params = list(_PARAMETER_OPEN.finditer(body))
        for index, param in enumerate(params):
            key = param.group(1).strip().strip("\"'")
            limit = params[index + 1].start() if index + 1 < len(params) else len(body)
            value_end = body.find("</parameter>", param.end(), limit)
            if value_end < 0:
                if index + 1 == len(params) and not closed and body_end == len(text):
                    block.calls.append(
                        _RawCall(
                            name=canonical,
                            arguments=body,
                            error=f"the call was cut off inside the value of `{key}`",
                            truncated=True,
                            form=CallForm.XML_FUNCTION,
                        )
                    )
                    return block
                value_end = limit
            value = _strip_one_newline(body[param.end() : value_end])
            arguments[key] = _coerce(value, self._known.property_schema(canonical, key))
        block.calls.append(_RawCall(name=canonical, arguments=arguments, form=CallForm.XML_FUNCTION))
        return block

    def _glm(self, start: int, body_start: int) -> _Block:
        """GLM ``<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>``."""
        text = self._text
        body_end, _, closed = _body_end(text, body_start, "</tool_call>")
        body = text[body_start:body_end]
        block = _Block(start=start, end=body_end)
        first_key = body.find("<arg_key>")
        head = (body if first_key < 0 else body[:first_key]).strip()
        if not head and not body.strip():
            if not closed and body_end == len(text):
                block.unreadable.append("A <tool_call> was cut off before its content began.")
            return block  # an empty <tool_call></tool_call>: nothing to call
        name, rest = _split_name(head)
        if not _PLAIN_NAME.fullmatch(name) or (rest and (first_key >= 0 or not rest.startswith("{"))):
            block.unreadable.append(f"A <tool_call> block could not be read: {_preview(body)}")
            return block
        if rest:
            block.calls.append(self._make_call(name, rest, CallForm.GLM))
            return block
        canonical = self._known.canonical(name)
        arguments: dict[str, Any] = {}
        pairs = list(_GLM_PAIR.finditer(body))
        for pair in pairs:
            key = pair.group(1).strip()
            unclosed = not pair.group(0).endswith("</arg_value>")
            if unclosed and not closed and body_end == len(text):
                block.calls.append(
                    _RawCall(
                        name=canonical,
                        arguments=body,
                        error=f"the call was cut off inside the value of `{key}`",
                        truncated=True,
                        form=CallForm.GLM,
                    )
                )
                return block
            arguments[key] = _coerce(_strip_one_newline(pair.group(2)), self._known.property_schema(canonical, key))
        block.calls.append(_RawCall(name=canonical, arguments=arguments, form=CallForm.GLM))
        return block

    def _mistral(self, start: int, body: int) -> _Block:
        text = self._text
        j = _skip_space(text, body)
        if _json_starts(text, j):
            return self._json_after(start, j, CallForm.MISTRAL)
        named = _MISTRAL_NAMED.match(text, j)
        if named is None or not named.group(1):
            return _Block(start=start, end=j, unreadable=["A [TOOL_CALLS] marker names no tool."])
        block = _Block(start=start, end=named.end())
        args_at = named.end()
        if args_at < len(text) and text[args_at] == "{":
            end = _scan_json(text, args_at)
            raw = text[args_at:] if end is None else text[args_at:end]
            block.end = len(text) if end is None else end
            block.calls.append(self._make_call(named.group(1), raw, CallForm.MISTRAL))
        else:
            block.calls.append(self._make_call(named.group(1), None, CallForm.MISTRAL))
        return block

    def _harmony(self, position: int) -> _Block | None:
        """gpt-oss ``<|start|>assistant<|channel|>commentary to=functions.x <|message|>{...}<|call|>``."""
        text = self._text
        header = _HARMONY_CALL.match(text, position)
        if header is None:
            return None
        message = text.find("<|message|>", header.end())
        if message < 0 or any(stop in text[header.end() : message] for stop in _HARMONY_STOPS):
            return None
        start = _harmony_header_start(text, position)
        body = _skip_space(text, message + len("<|message|>"))
        end = _scan_json(text, body) if body < len(text) and text[body] in "{[" else body
        raw = text[body:] if end is None else text[body:end]
        block = _Block(start=start, end=len(text) if end is None else end)
        block.calls.append(self._make_call(header.group(1), raw if raw.strip() else None, CallForm.HARMONY))
        after = _skip_space(text, block.end)
        for stop in ("<|call|>", "<|end|>"):
            if text.startswith(stop, after):
                block.end = after + len(stop)
                break
        return block

    # -- JSON that merely looks like a call ---------------------------------------------------

    def _fences(self) -> list[tuple[int, int]]:
        """Take fenced blocks that hold only calls; return every fence's span."""
        spans: list[tuple[int, int]] = []
        for fence in _FENCE.finditer(self._text):
            spans.append((fence.start(), fence.end()))
            if self._taken(fence.start()) or fence.group("lang").lower() not in _CALL_FENCE_LANGS:
                continue
            block = _Block(start=fence.start(), end=fence.end())
            if self._read_values(block, fence.group("body")):
                self._blocks.append(block)
        return spans

    def _read_values(self, block: _Block, body: str) -> bool:
        """Read a fence body of call objects (one, an array, or one per line); False if anything else."""
        j = _skip_space(body, 0)
        if j >= len(body):
            return False
        while j < len(body):
            if body[j] not in "{[":
                return False
            end = _scan_json(body, j)
            if end is None:
                return self._truncated_known(block, body[j:], CallForm.FENCED_JSON)
            if not self._add_json(block, body[j:end], CallForm.FENCED_JSON, strict=True):
                return False
            j = _skip_space(body, end, also=",")
        return bool(block.calls)

    def _truncated_known(self, block: _Block, source: str, form: CallForm) -> bool:
        """A cut-off call object is still reported when it starts by naming a known tool."""
        named = _LEADING_NAME.match(source)
        if named is None or self._known.resolve(named.group(1)) is None or not repair_json(source).truncated:
            return False
        self._salvage(block, source, form)
        return True

    def _bare(self, fences: Sequence[tuple[int, int]]) -> None:
        text = self._text
        cursor = 0
        for match in re.finditer(r"\{", text):
            position = match.start()
            if position < cursor or self._taken(position) or any(a <= position < b for a, b in fences):
                continue
            end = _scan_json(text, position)
            if end is None:
                block = _Block(start=position, end=len(text))
                if self._truncated_known(block, text[position:], CallForm.BARE_JSON):
                    self._blocks.append(block)
                    return
                continue
            block = _Block(start=position, end=end)
            if self._add_json(block, text[position:end], CallForm.BARE_JSON, strict=True):
                self._blocks.append(block)
            cursor = end


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in mapping:
            return mapping[key]
    return _MISSING


def _json_starts(text: str, position: int) -> bool:
    """Whether a JSON object, or an array of objects, starts here (``[END_TOOL_REQUEST]`` does not)."""
    if text.startswith("{", position):
        return True
    if not text.startswith("[", position):
        return False
    following = _skip_space(text, position + 1)
    return following >= len(text) or text[following] in "{]"


def _skip_space(text: str, position: int, *, also: str = "") -> int:
    while position < len(text) and (text[position].isspace() or text[position] in also):
        position += 1
    return position


def _consume_closer(text: str, position: int, closer: str, opener: str | None) -> int:
    """Move past ``closer`` when it is the next thing (or comes before the next ``opener``)."""
    after = _skip_space(text, position)
    if text.startswith(closer, after):
        return after + len(closer)
    found = text.find(closer, after)
    if found < 0:
        return position
    if opener is not None:
        following = text.find(opener, after)
        if 0 <= following < found:
            return position
    between = text[after:found]
    if "\n\n" in between or len(between) > 200:
        return position  # prose, not leftovers of this call
    return found + len(closer)


def _body_end(text: str, position: int, closer: str) -> tuple[int, int, bool]:
    """Where a tag's body ends: (body end, block end, whether ``closer`` closed it).

    A missing closer is tolerated: the body then stops where the next call
    starts or the enclosing ``</tool_call>`` is, else at the end of the text.
    """
    boundaries = [text.find(tag, position) for tag in ("<tool_call>", "<function=", "</tool_call>")]
    boundary = min((b for b in boundaries if b >= 0), default=len(text))
    closed_at = text.find(closer, position)
    if 0 <= closed_at <= boundary:
        return closed_at, closed_at + len(closer), True
    return boundary, boundary, False


def _harmony_header_start(text: str, position: int) -> int:
    """Where the Harmony header of the call at ``position`` starts (its tokens are markup too)."""
    header = max(text.rfind("<|channel|>", 0, position), text.rfind("<|start|>", 0, position))
    if header >= 0 and not any(t in text[header:position] for t in ("<|message|>", *_HARMONY_STOPS[:1], "<|call|>")):
        lead = text.rfind("<|start|>", 0, header + 1)
        if lead >= 0 and text[lead + len("<|start|>") : header].strip() in ("", "assistant"):
            return lead
        return header
    word = re.search(r"(?:commentary|analysis|final)[ \t]*\Z", text[:position])
    return position if word is None else word.start()


def _scan_json(text: str, start: int) -> int | None:
    """The end of the JSON object or array starting at ``start``; None when the text ends first.

    Strings are tracked so braces inside them do not count. Single-quoted
    strings are recognized only where a key or value may begin.
    """
    depth = 0
    quote: str | None = None
    previous = "{"
    i = start
    while i < len(text):
        char = text[i]
        if quote is not None:
            if char == "\\":
                i += 2
                continue
            if char == quote:
                quote = None
                previous = char
        elif char == '"' or (char == "'" and previous in "{[:,"):
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        if quote is None and not char.isspace():
            previous = char
        i += 1
    return None


def _split_name(head: str) -> tuple[str, str]:
    """``"name {json}"`` or ``"name\n{json}"`` → (name, rest), both stripped."""
    match = re.match(r"([^\s{<]*)\s*(.*)", head, re.DOTALL)
    assert match is not None  # the pattern matches any string
    return match.group(1), match.group(2).strip()


def _strip_one_newline(value: str) -> str:
    """Qwen3-coder puts each parameter value on its own lines; drop exactly that framing."""
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def _coerce(value: str, schema: Mapping[str, Any] | None) -> Any:
    """A parameter written as raw text, typed by its schema (or left a string when unsure)."""
    types = schema_types(schema) if schema is not None else frozenset()
    if "string" in types:
        return value
    typed = value_from_text(value, types or frozenset({"object", "array"}))
    return value if typed is NOT_TYPED else typed


def _preview(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")
