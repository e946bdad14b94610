"""An incremental Server-Sent Events decoder: bytes to lines, lines to events.

:class:`SSELineSplitter` cuts the raw body into lines (LF, CRLF or CR, as the
spec allows, across chunk boundaries). :class:`SSEDecoder` follows the SSE
rules (``event:``/``data:`` fields, ``:`` comments, a blank line ends an event,
multi-line data joined with newlines) and tolerates what some servers do
instead: a bare JSON line with no ``data:`` field is taken as a whole event.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEEvent", "SSELineSplitter"]


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


class SSELineSplitter:
    """Feed body chunks as they arrive; get back the lines they complete, decoded, without endings.

    A chunk that ends in CR holds that line back until the next byte shows
    whether it is a CRLF (else the LF would read as an extra blank line).
    Invalid UTF-8 is replaced rather than fatal: one bad byte should not lose a stream.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        data = self._pending + chunk if self._pending else chunk
        parts = data.splitlines(keepends=True)
        if parts and not parts[-1].endswith(b"\n"):
            self._pending = parts.pop()
        else:
            self._pending = b""
        return [part.rstrip(b"\r\n").decode("utf-8", "replace") for part in parts]

    def flush(self) -> list[str]:
        """The last line, when the body ends without a line ending."""
        rest, self._pending = self._pending, b""
        return [rest.rstrip(b"\r\n").decode("utf-8", "replace")] if rest else []
