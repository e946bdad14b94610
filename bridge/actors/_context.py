"""Fitting a request to the model's context length before it is sent.

Servers report an overflow inconsistently (a 400, an error inside a 200 stream, an empty stream, a crash),
so a request that cannot fit is refused here, with the numbers, and one that names no ``max_tokens`` gets
the room that is left. The prompt's size is estimated from its characters with two calibrated ratios: an
optimistic one (few tokens) decides a refusal, so a prompt that might fit is never refused; a pessimistic
one (many tokens) sizes ``max_tokens``, so the room given is there. Images are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import msgspec

from bridge.errors import ContextOverflowError
from bridge.llm import ChatMessage, Tool
from bridge.tokens import ANSWER_START_TOKENS, FEWEST_CHARS_PER_TOKEN, MOST_CHARS_PER_TOKEN, TURN_TOKENS

__all__ = ["PromptSize", "fitted_max_tokens", "prompt_size"]

MIN_ROOM: Final = 16
"""Fewest tokens worth generating: with less room, the request is refused instead."""


class PromptSize:
    """A prompt's estimated tokens: ``low`` (at least) and ``high`` (at most, within reason)."""

    __slots__ = ("high", "low")

    def __init__(self, chars: int, turns: int) -> None:
        self.low = math.floor(chars / MOST_CHARS_PER_TOKEN) + TURN_TOKENS[0] * turns
        self.high = math.ceil(chars / FEWEST_CHARS_PER_TOKEN) + TURN_TOKENS[1] * turns + ANSWER_START_TOKENS


def _text(content: str | list[dict[str, object]] | None) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    return sum(len(str(part.get("text", ""))) for part in content if part.get("type") == "text")


def prompt_size(messages: list[ChatMessage] | str, tools: Sequence[Tool] | None = None) -> PromptSize:
    """The estimate for chat ``messages`` (with their tools) or a raw completion prompt."""
    if isinstance(messages, str):
        return PromptSize(len(messages), 0)
    chars = sum(_text(m.content) for m in messages)
    chars += sum(len(c.function.arguments) for m in messages for c in m.tool_calls or ())
    if tools:
        chars += len(msgspec.json.encode(tools))
    return PromptSize(chars, len(messages))


def fitted_max_tokens(size: PromptSize, max_tokens: int | None, context_length: int | None, model: str) -> int | None:
    """``max_tokens`` to send: as asked, or the room left when none was asked.

    Raises:
        ContextOverflowError: the prompt itself cannot fit (with room for a few tokens of answer).
    """
    if not context_length:
        return max_tokens
    numbers = {
        "estimated_prompt_tokens": size.low,
        "estimated_prompt_tokens_at_most": size.high,
        "max_tokens": max_tokens,
        "context_length": context_length,
    }
    if size.low + MIN_ROOM > context_length:
        raise ContextOverflowError(
            f"the prompt does not fit {model}'s context of {context_length} tokens: it is at least {size.low} "
            f"tokens (estimated from its length), so nothing was sent. Shorten the prompt, or load the model with "
            "a larger context (load_model(context_length=N))",
            details={**numbers, "model": model, "sent": False},
        )
    if max_tokens is not None:
        # As asked, even past the room left: LM Studio's rolling window and llama.cpp's context shift
        # generate past the context, and a server that cannot says so itself.
        return max_tokens
    room = context_length - size.high
    return room if room >= MIN_ROOM else None
