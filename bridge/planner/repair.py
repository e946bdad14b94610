"""Reading tool-call arguments that are almost JSON.

Small local models write arguments with trailing commas, single quotes, raw
newlines inside strings, Python literals or unquoted keys, wrap them in code
fences, or send a JSON string that holds the JSON object. Each of these is
repaired by a small tokenizer that rewrites the text into strict JSON; nothing
is ever evaluated.

One failure is reported apart from the others: arguments that end inside a
string or with brackets still open were almost always cut off by the output
token limit. Closing them would silently write a truncated file or query, so
they are never "repaired"; the status says :attr:`ArgumentsStatus.TRUNCATED`
and the planner can tell the model to make the call again, shorter.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from bridge.planner.schema import json_type

__all__ = [
    "NOT_TYPED",
    "ArgumentsStatus",
    "JSONRepair",
    "ParsedArguments",
    "parse_arguments",
    "repair_json",
    "value_from_text",
]

_PYTHON_LITERALS: Final = {"True": "true", "False": "false", "None": "null"}
_JSON_WORDS: Final = frozenset({"true", "false", "null", "NaN", "Infinity"})
_VALID_ESCAPES: Final = frozenset('"\\/bfnrt')
_CONTROL_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_FENCE = re.compile(r"\A```[ \t]*[\w+.-]*[ \t]*\n?(?P<body>.*?)(?:\n?[ \t]*```[ \t]*)?\Z", re.DOTALL)
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_NUMBER_CHARS: Final = frozenset("0123456789+-.eE")
_MAX_DECODE_DEPTH: Final = 2

# The notes a repair leaves in ``repairs``; stable, so tests and logs can match them.
TRAILING_COMMA = "removed trailing commas"
SINGLE_QUOTES = "replaced single quotes with double quotes"
CONTROL_CHARS = "escaped raw newlines or tabs inside strings"
BAD_ESCAPES = "fixed invalid backslash escapes"
PYTHON_LITERALS = "replaced Python literals (True/False/None)"
UNQUOTED_KEYS = "quoted unquoted keys"
COMMENTS = "removed comments"
CODE_FENCE = "removed the code fence around the arguments"
LEADING_TEXT = "ignored text before the arguments"
TRAILING_TEXT = "ignored text after the arguments"
DOUBLE_ENCODED = "decoded arguments that were sent as a JSON string"
NULL_ARGUMENTS = "read null as no arguments"


class ArgumentsStatus(enum.StrEnum):
    """How reading a call's arguments ended."""

    OK = "ok"
    """Parsed into an object, possibly after repairs."""
    INVALID = "invalid"
    """Not JSON, even after repairs."""
    TRUNCATED = "truncated"
    """Ends inside a string or with brackets open: the reply was most likely cut off."""
    NOT_OBJECT = "not_object"
    """Valid JSON, but not an object (an array, a number, ...)."""


class JSONRepair(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of :func:`repair_json`: a value, or why there is none.

    ``value`` is meaningful only when ``ok``; JSON ``null`` is a valid value.
    """

    ok: bool
    value: Any = None
    repairs: tuple[str, ...] = ()
    error: str | None = None
    truncated: bool = False


class ParsedArguments(msgspec.Struct, frozen=True, kw_only=True):
    """Arguments read for one tool call.

    ``value`` is set exactly when ``status`` is OK. ``error`` is a short
    sentence fragment for the model ("the arguments were cut off ..."), set
    otherwise. ``repairs`` lists what had to be fixed, for logs.
    """

    status: ArgumentsStatus
    raw: str
    value: dict[str, Any] | None = None
    repairs: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether ``value`` holds the arguments."""
        return self.status is ArgumentsStatus.OK

    @property
    def truncated(self) -> bool:
        """Whether the arguments were cut off (see the module docstring)."""
        return self.status is ArgumentsStatus.TRUNCATED


def parse_arguments(raw: str | Mapping[str, Any] | None) -> ParsedArguments:
    """Read a tool call's arguments into a dict, repairing near-JSON.

    Empty text and ``null`` mean "no arguments" (``{}``), as many models send
    them for tools without parameters. A JSON string that itself holds a JSON
    object (double encoding) is decoded. A mapping is taken as already parsed.

    Args:
        raw: The ``function.arguments`` string of a call, or the parsed value.

    Returns:
        The outcome; never raises for bad input.
    """
    if raw is None:
        return ParsedArguments(status=ArgumentsStatus.OK, raw="", value={})
    if isinstance(raw, Mapping):
        return ParsedArguments(status=ArgumentsStatus.OK, raw=_dump(raw), value=dict(raw))
    if not raw.strip():
        return ParsedArguments(status=ArgumentsStatus.OK, raw=raw, value={})
    repairs: list[str] = []
    text = raw
    for _ in range(_MAX_DECODE_DEPTH + 1):
        result = repair_json(text)
        repairs.extend(result.repairs)
        if not result.ok:
            status = ArgumentsStatus.TRUNCATED if result.truncated else ArgumentsStatus.INVALID
            return ParsedArguments(status=status, raw=raw, repairs=tuple(repairs), error=result.error)
        value = result.value
        if isinstance(value, dict):
            return ParsedArguments(status=ArgumentsStatus.OK, raw=raw, value=value, repairs=tuple(repairs))
        if value is None:
            repairs.append(NULL_ARGUMENTS)
            return ParsedArguments(status=ArgumentsStatus.OK, raw=raw, value={}, repairs=tuple(repairs))
        if isinstance(value, str) and value.strip().startswith("{"):
            repairs.append(DOUBLE_ENCODED)
            text = value
            continue
        return ParsedArguments(
            status=ArgumentsStatus.NOT_OBJECT,
            raw=raw,
            repairs=tuple(repairs),
            error=f"the arguments must be a JSON object, got {_json_type(value)}",
        )
    return ParsedArguments(
        status=ArgumentsStatus.NOT_OBJECT,
        raw=raw,
        repairs=tuple(repairs),
        error="the arguments must be a JSON object, got a string",
    )


def repair_json(text: str) -> JSONRepair:
    """Parse one JSON value from near-JSON text.

    Strict JSON is tried first; otherwise the text is rewritten by a tolerant
    tokenizer (see the module docstring) and parsed again. Text before the
    first ``{``/``[`` and after the value's end is ignored, with a note.

    Args:
        text: What the model wrote.

    Returns:
        The value and the repairs made, or an error; ``truncated`` says the
        text ended before the value was complete.
    """
    stripped = text.strip()
    try:
        return JSONRepair(ok=True, value=json.loads(stripped))
    except ValueError:
        pass
    repairs: list[str] = []
    fence = _FENCE.match(stripped)
    if fence is not None:
        stripped = fence.group("body").strip()
        repairs.append(CODE_FENCE)
    if stripped[:1] not in ("{", "[", '"', "'"):
        start = _first_opener(stripped)
        if start > 0:
            stripped = stripped[start:]
            repairs.append(LEADING_TEXT)
    rewritten = _Rewriter(stripped).run()
    repairs.extend(rewritten.repairs)
    if rewritten.truncated is not None:
        return JSONRepair(
            ok=False,
            repairs=tuple(repairs),
            truncated=True,
            error=f"the arguments were cut off before the JSON was complete ({rewritten.truncated})",
        )
    try:
        value = json.loads(rewritten.text)
    except json.JSONDecodeError as exc:
        return JSONRepair(ok=False, repairs=tuple(repairs), error=_describe_decode_error(exc))
    return JSONRepair(ok=True, value=value, repairs=tuple(repairs))


def _first_opener(text: str) -> int:
    positions = [p for p in (text.find("{"), text.find("[")) if p >= 0]
    return min(positions) if positions else -1


def _describe_decode_error(exc: json.JSONDecodeError) -> str:
    start = max(0, exc.pos - 20)
    near = exc.doc[start : exc.pos + 20].replace("\n", " ")
    return f"the arguments are not valid JSON ({exc.msg} at character {exc.pos}, near {near!r})"


def _json_type(value: Any) -> str:
    """``a string``, ``an array``, ``null`` … as a sentence names the type of a value."""
    kind = {"integer": "number"}.get(json_type(value), json_type(value))
    return kind if kind == "null" else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _dump(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class _Rewritten(msgspec.Struct, frozen=True):
    text: str
    repairs: tuple[str, ...]
    truncated: str | None


class _Rewriter:
    """Rewrites near-JSON into strict JSON in one pass, tracking brackets and strings.

    Strictly private: a new instance per text.
    """

    __slots__ = ("_i", "_out", "_repairs", "_stack", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._i = 0
        self._out: list[str] = []
        self._repairs: list[str] = []
        self._stack: list[str] = []

    def _note(self, repair: str) -> None:
        if repair not in self._repairs:
            self._repairs.append(repair)

    def run(self) -> _Rewritten:
        text = self._text
        length = len(text)
        while self._i < length:
            char = text[self._i]
            if char in "\"'":
                if not self._string(char):
                    return self._done(truncated="it ends inside a string")
            elif char in "{[":
                self._stack.append("}" if char == "{" else "]")
                self._out.append(char)
                self._i += 1
            elif char in "}]":
                if self._close(char):
                    break
            elif char == "," and self._next_significant() in ("}", "]"):
                self._note(TRAILING_COMMA)
                self._i += 1
            elif char == "/" and text.startswith(("//", "/*"), self._i):
                self._comment()
            elif char.isalpha() or char in "_$":
                self._word()
            elif char in _NUMBER_CHARS:
                start = self._i
                while self._i < length and text[self._i] in _NUMBER_CHARS:
                    self._i += 1
                self._out.append(text[start : self._i])
            else:
                self._out.append(char)
                self._i += 1
        if self._stack:
            opened = "".join("{" if closer == "}" else "[" for closer in self._stack)
            return self._done(truncated=f"{opened} never closed")
        return self._done(truncated=None)

    def _done(self, *, truncated: str | None) -> _Rewritten:
        return _Rewritten("".join(self._out), tuple(self._repairs), truncated)

    def _close(self, char: str) -> bool:
        """Copy a closing bracket; True when the top-level value just ended."""
        if not self._stack:
            # A closer with nothing open: an extra brace after a complete value.
            self._note(TRAILING_TEXT)
            self._i = len(self._text)
            return True
        self._stack.pop()
        self._out.append(char)
        self._i += 1
        if not self._stack and self._text[self._i :].strip():
            self._note(TRAILING_TEXT)
            self._i = len(self._text)
            return True
        return False

    def _next_significant(self) -> str:
        """The next character after a comma, skipping whitespace and comments."""
        text = self._text
        j = self._i + 1
        while j < len(text):
            if text[j].isspace():
                j += 1
            elif text.startswith("//", j):
                end = text.find("\n", j)
                j = len(text) if end < 0 else end
            elif text.startswith("/*", j):
                end = text.find("*/", j + 2)
                j = len(text) if end < 0 else end + 2
            else:
                return text[j]
        return ""

    def _comment(self) -> None:
        text = self._text
        if text.startswith("//", self._i):
            end = text.find("\n", self._i)
            self._i = len(text) if end < 0 else end
        else:
            end = text.find("*/", self._i + 2)
            self._i = len(text) if end < 0 else end + 2
        self._note(COMMENTS)

    def _word(self) -> None:
        text = self._text
        start = self._i
        while self._i < len(text) and (text[self._i].isalnum() or text[self._i] in "_$"):
            self._i += 1
        word = text[start : self._i]
        if word in _PYTHON_LITERALS:
            self._out.append(_PYTHON_LITERALS[word])
            self._note(PYTHON_LITERALS)
            return
        if word not in _JSON_WORDS and self._stack and self._stack[-1] == "}":
            rest = text[self._i :].lstrip()
            if rest.startswith(":"):
                self._out.append(json.dumps(word))
                self._note(UNQUOTED_KEYS)
                return
        self._out.append(word)

    def _string(self, quote: str) -> bool:
        """Copy one string as a strict JSON string; False when the text ends inside it."""
        text = self._text
        length = len(text)
        parts: list[str] = ['"']
        j = self._i + 1
        while j < length:
            char = text[j]
            if char == "\\":
                if j + 1 >= length:
                    return False
                escaped = text[j + 1]
                if escaped == "u":
                    if _HEX4.fullmatch(text, j + 2, j + 6):
                        parts.append(text[j : j + 6])
                        j += 6
                        continue
                    parts.append("\\\\u")
                    self._note(BAD_ESCAPES)
                elif escaped in _VALID_ESCAPES:
                    parts.append("\\" + escaped)
                elif escaped == "'":
                    parts.append("'")
                    if quote == '"':
                        self._note(BAD_ESCAPES)
                elif escaped in _CONTROL_ESCAPES:
                    parts.append(_CONTROL_ESCAPES[escaped])
                    self._note(BAD_ESCAPES)
                else:
                    parts.append("\\\\" + escaped)
                    self._note(BAD_ESCAPES)
                j += 2
                continue
            if char == quote:
                parts.append('"')
                self._out.append("".join(parts))
                self._i = j + 1
                if quote == "'":
                    self._note(SINGLE_QUOTES)
                return True
            if char == '"':
                parts.append('\\"')
            elif char < " ":
                parts.append(_CONTROL_ESCAPES.get(char, f"\\u{ord(char):04x}"))
                self._note(CONTROL_CHARS)
            else:
                parts.append(char)
            j += 1
        return False


NOT_TYPED: Final = object()
"""What :func:`value_from_text` answers for text that none of the types can read."""

_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def value_from_text(text: str, types: frozenset[str]) -> Any:
    """``text`` read as the first of the schema's ``types`` it can be, else :data:`NOT_TYPED`.

    The one rule for arguments a model wrote as text: ``42`` for an integer, ``2.5`` or
    ``2`` for a number, ``true`` / ``True`` for a boolean, ``null`` / ``None`` for null,
    and (almost-)JSON for an object or an array. Strings are the caller's business.
    """
    stripped = text.strip()
    for wanted in ("integer", "number", "boolean", "null", "object", "array"):
        if wanted not in types:
            continue
        if wanted == "integer" and _INTEGER.fullmatch(stripped):
            return int(stripped)
        if wanted == "number" and _NUMBER.fullmatch(stripped):
            return int(stripped) if _INTEGER.fullmatch(stripped) else float(stripped)
        if wanted == "boolean" and stripped.lower() in ("true", "false"):
            return stripped.lower() == "true"
        if wanted == "null" and stripped.lower() in ("null", "none"):
            return None
        if wanted in ("object", "array") and stripped[:1] == ("{" if wanted == "object" else "["):
            parsed = repair_json(stripped)
            if parsed.ok and isinstance(parsed.value, dict if wanted == "object" else list):
                return parsed.value
    return NOT_TYPED
