"""Scanning helpers every parser shares: where JSON, a tag's body and a closing tag end."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["body_end", "consume_closer", "covered", "json_starts", "preview", "scan_json", "skip_space"]


def skip_space(text: str, position: int, *, also: str = "") -> int:
    while position < len(text) and (text[position].isspace() or text[position] in also):
        position += 1
    return position


def covered(position: int, spans: Iterable[tuple[int, int]]) -> bool:
    """Whether ``position`` lies in one of the ``(start, end)`` spans another parser took."""
    return any(start <= position < end for start, end in spans)


def json_starts(text: str, position: int) -> bool:
    """Whether a JSON object, or an array of objects, starts here (``[END_TOOL_REQUEST]`` does not)."""
    if text.startswith("{", position):
        return True
    if not text.startswith("[", position):
        return False
    following = skip_space(text, position + 1)
    return following >= len(text) or text[following] in "{]"


def scan_json(text: str, start: int) -> int | None:
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


def consume_closer(text: str, position: int, closer: str, opener: str | None) -> int:
    """Move past ``closer`` when it is the next thing (or comes before the next ``opener``)."""
    after = skip_space(text, position)
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


def body_end(text: str, position: int, closer: str) -> tuple[int, int, bool]:
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


def preview(text: str, limit: int = 80) -> str:
    """A one-line excerpt for a message to the model."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")
