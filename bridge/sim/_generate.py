"""What a simulated model says: deterministic text, tool calls, JSON for schemas, embedding vectors.

Everything here is a pure function of the request (and the scripted turn), so
two runs give the same bytes. A token is about a word: text is cut into words
(with their trailing space), and words longer than 8 characters into 8-character
pieces; concatenating the tokens gives the text back exactly.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from bridge.sim._config import FaultKind, SimModel, ToolStyle
from bridge.sim._script import CallTools, Fault, Raw, Say, ToolCallSpec, Turn

__all__ = [
    "Ids",
    "Plan",
    "PlannedCall",
    "ToolDef",
    "embed",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "message_text",
    "plan_reply",
    "sample_from_schema",
    "tokenize",
]

_TOKEN_RE = re.compile(r"\S{1,8}\s*|\s+")
_WORD_RE = re.compile(r"\w+")
_VOCAB = (
    *("the", "model", "answers", "with", "plain", "words", "so", "tests", "can", "read", "every", "token"),
    *("and", "count", "them", "one", "by", "while", "streams", "flow", "through", "queues", "slots"),
    *("loads", "without", "any", "real", "weights", "behind", "at", "all", "today"),
)


def tokenize(text: str) -> list[str]:
    """Cut text into tokens (≈ words); ``"".join(tokenize(t)) == t``."""
    return _TOKEN_RE.findall(text)


def estimate_tokens(text: str) -> int:
    """Prompt-side token estimate: one token per 4 characters, rounded up."""
    return (len(text) + 3) // 4


def message_text(content: object) -> str:
    """The text of a chat message ``content``: a string, or the ``text`` of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def estimate_prompt_tokens(messages: Sequence[dict[str, Any]], tools: Sequence[object] = ()) -> int:
    """Tokens a prompt takes: 4 per message for the template, its text, its tool calls, and the tool definitions."""
    total = 0
    for message in messages:
        total += 4 + estimate_tokens(message_text(message.get("content")))
        if message.get("tool_calls"):
            total += estimate_tokens(msgspec.json.encode(message["tool_calls"]).decode())
    if tools:
        total += estimate_tokens(msgspec.json.encode(list(tools)).decode())
    return total


def _seeded(text: str) -> random.Random:
    return random.Random(hashlib.blake2b(text.encode(), digest_size=8).digest())


def _words_reply(lead: str, topic: str, n: int) -> str:
    """Exactly ``n`` tokens: ``lead``, the topic's first words, then seeded filler, ending with a period."""
    rng = _seeded(topic)
    words = [*lead.split(), *_WORD_RE.findall(topic)[:6]]
    tokens = tokenize(" ".join(words) + " ")[:n]
    while len(tokens) < n:
        tokens.append(rng.choice(_VOCAB) + " ")
    tokens[-1] = tokens[-1].rstrip() + "."
    return "".join(tokens)


def sample_from_schema(schema: object, root: object = None, depth: int = 0) -> Any:
    """A small value valid for common JSON Schemas (for ``response_format`` and tool arguments)."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 8:
        return None
    if "$ref" in schema and isinstance(schema["$ref"], str) and isinstance(root, dict):
        target: object = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return sample_from_schema(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return sample_from_schema(options[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = schema.get("required")
        names = [n for n in required if n in props] if isinstance(required, list) and required else list(props)
        return {name: sample_from_schema(props[name], root, depth + 1) for name in names}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [sample_from_schema(schema.get("items", {}), root, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return schema.get("minimum", 1.5)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if schema.get("format") == "date-time":
        return "2026-01-01T00:00:00Z"
    return "example"


def embed(text: str, dim: int) -> list[float]:
    """A unit vector from hashed words: texts sharing words point the same way (useful for retrieval tests)."""
    vector = [0.0] * dim
    for word in _WORD_RE.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=16).digest()
        for k in range(4):
            index = int.from_bytes(digest[4 * k : 4 * k + 3], "little") % dim
            vector[index] += 1.0 if digest[4 * k + 3] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [x / norm for x in vector]


class Ids:
    """Fresh ids in LM Studio's formats, from a seeded RNG (separate from the fault RNG). Strictly private."""

    __slots__ = ("_rng",)

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed + 0x51D)

    def _pick(self, alphabet: str, n: int) -> str:
        return "".join(self._rng.choices(alphabet, k=n))

    def chat(self) -> str:
        return "chatcmpl-" + self._pick(string.ascii_lowercase + string.digits, 20)

    def completion(self) -> str:
        return "cmpl-" + self._pick(string.ascii_lowercase + string.digits, 20)

    def response(self) -> str:
        return "resp_" + self._pick("0123456789abcdef", 48)

    def item(self, prefix: str) -> str:
        return f"{prefix}_" + self._pick("0123456789abcdef", 32)

    def tool_call(self) -> str:
        return str(self._rng.randrange(10**8, 10**9))


@dataclass(frozen=True, slots=True)
class ToolDef:
    """A tool offered by the request, whatever the API's format."""

    name: str
    parameters: dict[str, Any]


@dataclass(slots=True)
class PlannedCall:
    id: str
    name: str
    arguments: str

    @property
    def fragments(self) -> list[str]:
        """Argument pieces, one per streamed delta (LM Studio sends the name first, arguments after)."""
        return [self.arguments[i : i + 8] for i in range(0, len(self.arguments), 8)]


@dataclass(slots=True)
class Plan:
    """A reply before timing: reasoning tokens, content tokens, native tool calls.

    With the ``think`` mode the reasoning is already inside ``content``.
    """

    reasoning: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    calls: list[PlannedCall] = field(default_factory=list)
    empty_tool_calls: bool = False

    @property
    def finish_reason(self) -> Literal["stop", "tool_calls"]:
        return "tool_calls" if self.calls else "stop"


def _text_call(spec: ToolCallSpec) -> str:
    name = msgspec.json.encode(spec.name).decode()
    return f'[TOOL_REQUEST]{{"name":{name},"arguments":{spec.arguments_json}}}[END_TOOL_REQUEST]'


def _calls_plan(calls: Sequence[ToolCallSpec], style: ToolStyle, content: str, ids: Ids) -> Plan:
    if style == "text":
        return Plan(content=tokenize(content + "".join(_text_call(c) for c in calls)))
    planned = [PlannedCall(c.id or ids.tool_call(), c.name, c.arguments_json) for c in calls]
    return Plan(content=tokenize(content), calls=planned)


def _topic(messages: Sequence[dict[str, Any]]) -> tuple[str, str | None]:
    """The text the reply is about (last user or tool message) and the role it came from."""
    for message in reversed(messages):
        role = message.get("role")
        if role in ("user", "tool"):
            return message_text(message.get("content")), str(role)
    return (message_text(messages[-1].get("content")), None) if messages else ("", None)


def plan_reply(
    turn: Turn | None,
    spec: SimModel,
    messages: Sequence[dict[str, Any]],
    tools: Sequence[ToolDef],
    reasoning_on: bool,
    json_schema: dict[str, Any] | None,
    ids: Ids,
    fault: Fault | None = None,
) -> Plan:
    """What the model says to this request: the scripted turn, or the default reply."""
    topic, role = _topic(messages)
    if fault is not None and fault.kind is FaultKind.MALFORMED_TOOL_CALL:
        tool = tools[0] if tools else ToolDef("unknown_tool", {})
        good = msgspec.json.encode(sample_from_schema(tool.parameters) or {"value": "example"}).decode()
        return _calls_plan([ToolCallSpec(tool.name, good[:-1])], "native", "", ids)
    if isinstance(turn, Raw):
        return Plan(content=tokenize(turn.text))
    if isinstance(turn, CallTools):
        return _calls_plan(turn.calls, turn.style, turn.content, ids)
    if isinstance(turn, Say):
        plan = Plan(content=tokenize(turn.text))
        scripted_reasoning = turn.reasoning
    elif json_schema is not None:
        text = msgspec.json.encode(sample_from_schema(json_schema)).decode()
        plan = Plan(content=[text[i : i + 8] for i in range(0, len(text), 8)])
        scripted_reasoning = None
    elif spec.auto_tool_calls and tools and role != "tool":
        tool = tools[0]
        call = ToolCallSpec(tool.name, sample_from_schema(tool.parameters) or {})
        plan = _calls_plan([call], spec.tool_style, "", ids)
        scripted_reasoning = None
    else:
        lead = "Noted tool result:" if role == "tool" else "Reply to:"
        plan = Plan(content=tokenize(_words_reply(lead, topic, spec.reply_tokens)))
        scripted_reasoning = None
    plan.empty_tool_calls = fault is not None and fault.kind is FaultKind.EMPTY_TOOL_CALLS
    if spec.reasoning is None or not reasoning_on or scripted_reasoning == "" or not spec.reasoning_tokens:
        return plan
    if scripted_reasoning is not None:
        reasoning = tokenize(scripted_reasoning)
    else:
        reasoning = tokenize(_words_reply("Thinking about:", topic, spec.reasoning_tokens))
    if spec.reasoning == "think":
        plan.content = ["<think>", *reasoning, "</think>\n\n", *plan.content]
    else:
        plan.reasoning = reasoning
    return plan
