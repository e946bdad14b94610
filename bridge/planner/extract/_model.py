"""What extraction gives back, and what its parsers hand to each other."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import Any, TypeAlias

import msgspec

from bridge.planner.tools import ToolCatalog

__all__ = ["Block", "CallForm", "ExtractedCall", "Extraction", "KnownTools", "RawCall"]

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


class RawCall(msgspec.Struct, frozen=True, kw_only=True):
    """A call before its id, which is numbered once every block is found and in order (fields: ExtractedCall)."""

    name: str
    arguments: dict[str, Any] | str
    error: str | None = None
    truncated: bool = False
    repairs: tuple[str, ...] = ()
    form: CallForm


class ExtractedCall(RawCall, frozen=True, kw_only=True):
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


class Block(msgspec.Struct, kw_only=True):
    """A span of call markup, cut from the text, with what was read from it."""

    start: int
    end: int
    calls: list[RawCall] = msgspec.field(default_factory=list)
    unreadable: list[str] = msgspec.field(default_factory=list)
