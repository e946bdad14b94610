"""Where reasoning is in a message: calls planned there are not made, so no parser may see them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

__all__ = ["HARMONY_STOPS", "mask", "reasoning_spans", "split_reasoning"]

_THINK_OPEN = re.compile(r"<(think|thinking)>")
_THINK_CLOSE = re.compile(r"</(think|thinking)>")
_HARMONY_ANALYSIS = re.compile(r"<\|channel\|>\s*analysis\s*<\|message\|>")
HARMONY_STOPS: Final = ("<|end|>", "<|start|>", "<|call|>", "<|return|>")


def split_reasoning(text: str) -> tuple[str, str]:
    """Split a message into its reasoning and the rest.

    Recognizes the same reasoning markup :func:`extract_tool_calls` skips.

    Returns:
        ``(reasoning, content)``: the reasoning blocks' inner text joined by
        blank lines, and the text without them, both stripped.
    """
    spans = reasoning_spans(text)
    reasoning: list[str] = []
    content: list[str] = []
    cursor = 0
    for start, end, inner_start, inner_end in spans:
        content.append(text[cursor:start])
        reasoning.append(text[inner_start:inner_end].strip())
        cursor = end
    content.append(text[cursor:])
    return "\n\n".join(r for r in reasoning if r), "".join(content).strip()


def reasoning_spans(text: str) -> list[tuple[int, int, int, int]]:
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
            stops = [p for p in (text.find(s, header.end()) for s in HARMONY_STOPS) if p >= 0]
            inner_end = min(stops) if stops else len(text)
            end = inner_end + len("<|end|>") if text.startswith("<|end|>", inner_end) else inner_end
            spans.append((start, end, header.end(), inner_end))
        cursor = spans[-1][1]
    return spans


def mask(text: str, spans: Sequence[tuple[int, int, int, int]]) -> str:
    """The text with reasoning blanked out, keeping every other character's position."""
    if not spans:
        return text
    chars = list(text)
    for start, end, _, _ in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)
