"""Split inline ``<think>…</think>`` reasoning out of streamed content.

LM Studio leaves reasoning inline when "separate reasoning_content" is off, and
tags arrive split across chunks (``"<thi"`` + ``"nk>"``), so the splitter holds
back any tail that could be the start of a tag until the next piece decides it.
Chat templates that open the think block in the prompt (DeepSeek-R1 style)
produce only a closing tag: text before a first, orphan ``</think>`` is
reasoning too.
"""

from __future__ import annotations

__all__ = ["ThinkSplitter"]

_OPEN = "<think>"
_CLOSE = "</think>"


def _partial_tag_length(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a tag."""
    longest = 0
    for tag in tags:
        for size in range(min(len(tag) - 1, len(text)), longest, -1):
            if text.endswith(tag[:size]):
                longest = size
                break
    return longest


class ThinkSplitter:
    """Feed content pieces; read ``content`` and ``reasoning`` at the end."""

    __slots__ = ("_content", "_inside", "_pending", "_reasoning", "_seen_tag")

    def __init__(self) -> None:
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._pending = ""
        self._inside = False
        self._seen_tag = False

    @property
    def inside(self) -> bool:
        """Whether the text is currently inside a think block."""
        return self._inside

    def feed(self, text: str) -> None:
        buffer = self._pending + text
        self._pending = ""
        while buffer:
            if self._inside:
                end = buffer.find(_CLOSE)
                if end < 0:
                    break
                self._reasoning.append(buffer[:end])
                buffer = buffer[end + len(_CLOSE) :]
                self._inside = False
                continue
            start, end = buffer.find(_OPEN), buffer.find(_CLOSE)
            if start < 0 and end < 0:
                break
            if end >= 0 and (start < 0 or end < start):
                self._close_orphan(buffer[:end])
                buffer = buffer[end + len(_CLOSE) :]
                continue
            self._content.append(buffer[:start])
            buffer = buffer[start + len(_OPEN) :]
            self._inside = self._seen_tag = True
        if not buffer:
            return
        tags = (_CLOSE,) if self._inside else (_OPEN, _CLOSE)
        hold = _partial_tag_length(buffer, tags)
        keep, self._pending = (buffer[:-hold], buffer[-hold:]) if hold else (buffer, "")
        (self._reasoning if self._inside else self._content).append(keep)

    def _close_orphan(self, before: str) -> None:
        if self._seen_tag:
            # A stray closing tag after a proper block: drop the tag, keep the text.
            self._content.append(before)
            return
        # The prompt opened the block: everything so far was reasoning.
        self._reasoning.extend([*self._content, before])
        self._content.clear()
        self._seen_tag = True

    def content_so_far(self) -> str:
        """The content seen so far, as :meth:`finish` would return it (minus a tag cut in half)."""
        content = "".join(self._content)
        return content.lstrip() if self._seen_tag else content

    def finish(self) -> tuple[str, str]:
        """``(content, reasoning)``; an unclosed block (cut off by max_tokens) counts as reasoning."""
        if self._pending:
            (self._reasoning if self._inside else self._content).append(self._pending)
            self._pending = ""
        content, reasoning = "".join(self._content), "".join(self._reasoning)
        if self._seen_tag:
            return content.lstrip(), reasoning.strip()
        return content, reasoning
