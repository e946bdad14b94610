"""An incremental Server-Sent Events decoder, fed one line at a time.

Follows the SSE rules (``event:``/``data:`` fields, ``:`` comments, a blank
line ends an event, multi-line data joined with newlines) and tolerates what
some servers do instead: a bare JSON line with no ``data:`` field is taken as
a whole event.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEEvent"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: ``event`` is ``"message"`` unless the server named it."""

    event: str
    data: str
    lines: tuple[str, ...]


class SSEDecoder:
    """Feed lines (without their line ending); get an event back when one completes."""

    __slots__ = ("_data", "_event")

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        if line.startswith(("{", "[")) and not self._data:
            # A bare JSON line (NDJSON-style servers): one complete event.
            event, self._event = self._event, ""
            return SSEEvent(event=event or "message", data=line, lines=(line,))
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        # ``id`` and ``retry`` mean nothing to an LLM client; unknown fields are ignored by the spec.
        return None

    def flush(self) -> SSEEvent | None:
        """The event left over when the stream ends without a final blank line."""
        return self._dispatch()

    def _dispatch(self) -> SSEEvent | None:
        event, self._event = self._event, ""
        lines, self._data = tuple(self._data), []
        if not lines:
            return None
        return SSEEvent(event=event or "message", data="\n".join(lines), lines=lines)
