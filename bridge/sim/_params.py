"""Request validation in LM Studio's zod style ("Required", "Expected number, received string").

Validators raise :class:`Invalid` carrying the 400 reply, so a handler reads
its parameters top to bottom and answers the first problem found.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bridge.sim._generate import ToolDef
from bridge.sim._http import HttpRequest, Response
from bridge.sim._wire import invalid_request

__all__ = [
    "Invalid",
    "chat_messages",
    "chat_tools",
    "json_object",
    "max_tokens",
    "opt_bool",
    "opt_number",
    "response_schema",
]

_JSON_NAMES = {
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


class Invalid(Exception):
    """A parameter is wrong; ``response`` is the 400 to send."""

    def __init__(self, response: Response) -> None:
        super().__init__("invalid request")
        self.response = response


def _kind(value: object) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def wrong_type(param: str, expected: str, value: object) -> Invalid:
    return Invalid(invalid_request(f"Expected {expected}, received {_kind(value)}", param=param, code="invalid_type"))


def required(param: str) -> Invalid:
    return Invalid(invalid_request("Required", param=param, code="missing_required_parameter"))


def required_string(body: dict[str, Any], param: str) -> str:
    """A parameter that must be there and be a string (LM Studio's zod checks, in that order)."""
    value = body.get(param)
    if value is None:
        raise required(param)
    if not isinstance(value, str):
        raise wrong_type(param, "string", value)
    return value


def json_object(request: HttpRequest) -> dict[str, Any]:
    try:
        body = request.json()
    except msgspec.DecodeError as exc:
        raise Invalid(invalid_request(f"Invalid JSON in request body: {exc}", code="invalid_json")) from None
    if not isinstance(body, dict):
        raise wrong_type("body", "object", body)
    return body


def opt_bool(body: dict[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise wrong_type(name, "boolean", value)
    return value


def opt_number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong_type(name, "number", value)
    return float(value)


def max_tokens(body: dict[str, Any], *names: str) -> int | None:
    """The output budget: the first of ``names`` present; ``-1`` (or absent) means no limit."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type(name, "integer", value)
        if value == -1:
            return None
        if value < 1:
            message = f"'{name}' must be a positive integer or -1, got {value}"
            raise Invalid(invalid_request(message, param=name, code="invalid_value"))
        return value
    return None


def chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if messages is None:
        raise required("messages")
    if not isinstance(messages, list):
        raise wrong_type("messages", "array", messages)
    if not messages:
        raise Invalid(invalid_request("'messages' must contain at least one message", param="messages"))
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise wrong_type(f"messages.{i}", "object", message)
        role = message.get("role")
        if role not in ("system", "user", "assistant", "tool", "developer"):
            if role is None:
                raise required(f"messages.{i}.role")
            raise Invalid(
                invalid_request(
                    "Invalid enum value. Expected 'system' | 'user' | 'assistant' | 'tool', received " + repr(role),
                    param=f"messages.{i}.role",
                    code="invalid_enum_value",
                )
            )
    return messages


def opt_array(body: dict[str, Any], name: str) -> list[Any]:
    """An optional array parameter; absent is empty."""
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise wrong_type(name, "array", value)
    return value


def chat_tools(body: dict[str, Any]) -> list[ToolDef]:
    """Chat-format tools: ``{"type":"function","function":{"name", "parameters"}}``."""
    tools = opt_array(body, "tools")
    found: list[ToolDef] = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict):
            raise required(f"tools.{i}.function")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise required(f"tools.{i}.function.name")
        parameters = function.get("parameters")
        found.append(ToolDef(name, parameters if isinstance(parameters, dict) else {}))
    return found


def response_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of ``response_format`` (``json_schema`` type), ``None`` for text; others are 400."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind != "json_schema" or not isinstance(fmt, dict):
        message = "'response_format.type' must be 'json_schema' or 'text'"
        raise Invalid(invalid_request(message, param="response_format.type", code="invalid_value"))
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise required("response_format.json_schema.schema")
    return schema
