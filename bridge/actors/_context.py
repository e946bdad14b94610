"""Fitting a request to the model's context length before it is sent.

Servers report an overflow inconsistently (a 400, an error inside a 200 stream, an empty stream, a crash),
so a request that cannot fit is refused here, with the numbers, and one that names no ``max_tokens`` gets
the room that is left. The prompt's size is estimated from its characters with two calibrated ratios: an
optimistic one (few tokens) decides a refusal, so a prompt that might fit is never refused; a pessimistic
one (many tokens) sizes ``max_tokens``, so the room given is there. Where the two cannot decide (the prompt
might not fit), the server's own tokenizer counts it if it has one (llama.cpp's server). An image counts as
nothing for a refusal and as a large image for the room (``IMAGE_TOKENS``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Final

import anyio
import msgspec

from bridge.errors import BridgeError, ContextOverflowError
from bridge.llm import ChatMessage, LLMClient, Tool
from bridge.tokens import ANSWER_START_TOKENS, FEWEST_CHARS_PER_TOKEN, IMAGE_TOKENS, MOST_CHARS_PER_TOKEN, TURN_TOKENS

__all__ = ["PromptSize", "TokenCounter", "fitted_max_tokens", "prompt_size"]

log = logging.getLogger(__name__)

MIN_ROOM: Final = 16
"""Fewest tokens worth generating: with less room, the request is refused instead."""
COUNT_TIMEOUT: Final = 5.0
"""Longest wait for a server's token count; past it, the estimate decides."""


class PromptSize:
    """A prompt's tokens: ``low`` (at least) and ``high`` (at most, within reason); equal once ``counted``."""

    __slots__ = ("counted", "high", "images", "low")

    def __init__(self, chars: int, turns: int, images: int = 0) -> None:
        self.images = images
        self.low = math.floor(chars / MOST_CHARS_PER_TOKEN) + TURN_TOKENS[0] * turns + IMAGE_TOKENS[0] * images
        self.high = (
            math.ceil(chars / FEWEST_CHARS_PER_TOKEN)
            + TURN_TOKENS[1] * turns
            + IMAGE_TOKENS[1] * images
            + ANSWER_START_TOKENS
        )
        self.counted = False

    @classmethod
    def exact(cls, tokens: int) -> PromptSize:
        """A size the server's tokenizer counted."""
        size = cls(0, 0)
        size.low = size.high = tokens
        size.counted = True
        return size

    def undecided(self, context_length: int) -> bool:
        """Whether the estimate cannot tell if the prompt fits: then a count is worth its round trip."""
        return self.low + MIN_ROOM <= context_length < self.high + MIN_ROOM


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
    images = sum(
        1 for m in messages if isinstance(m.content, list) for part in m.content if part.get("type") == "image_url"
    )
    return PromptSize(chars, len(messages), images)


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
        "counted_by_server": size.counted,
    }
    if size.low + MIN_ROOM > context_length:
        how = "counted by the server's tokenizer" if size.counted else "estimated from its length"
        raise ContextOverflowError(
            f"the prompt does not fit {model}'s context of {context_length} tokens: it is at least {size.low} "
            f"tokens ({how}), so nothing was sent. Shorten the prompt, or load the model with "
            "a larger context (load_model(context_length=N))",
            details={**numbers, "model": model, "sent": False},
        )
    if max_tokens is not None:
        # As asked, even past the room left: LM Studio's rolling window and llama.cpp's context shift
        # generate past the context, and a server that cannot says so itself.
        return max_tokens
    room = context_length - size.high
    return room if room >= MIN_ROOM else None


class TokenCounter:
    """Counts prompts with the model's servers' tokenizers, remembering which servers have none.

    Owned by one worker: asking a server that has no tokenizer costs one request, once.
    """

    __slots__ = ("_without",)

    def __init__(self) -> None:
        self._without: set[str] = set()

    async def size(
        self,
        messages: list[ChatMessage] | str,
        tools: Sequence[Tool] | None,
        context_length: int,
        clients: Sequence[tuple[str, LLMClient]],
        deadline: float,
    ) -> PromptSize:
        """The estimate, or the server's count where the estimate cannot decide and a server can count."""
        estimate = prompt_size(messages, tools)
        if not estimate.undecided(context_length) or estimate.images:  # a template renders no image
            return estimate
        for server, client in clients:
            if server in self._without:
                continue
            tokens: int | None = None
            with anyio.move_on_after(min(COUNT_TIMEOUT, max(0.0, deadline - anyio.current_time()))):
                try:
                    tokens = await client.count_prompt_tokens(messages, tools)
                except BridgeError as error:  # a hint: the estimate stands
                    log.info("%s could not count a prompt's tokens: %s", server, error)
                    return estimate
                if tokens is None:
                    self._without.add(server)
                    continue
            if tokens is None:  # out of time
                return estimate
            return PromptSize.exact(tokens)
        return estimate
