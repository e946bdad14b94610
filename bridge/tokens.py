"""Estimating a prompt's tokens from its characters, where no tokenizer is at hand.

One set of ratios for the whole bridge: the worker fits each request to the model's context with them, and
the planner trims an autonomous run's conversation with them, so what the planner keeps is what the worker
lets through.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ANSWER_START_TOKENS", "FEWEST_CHARS_PER_TOKEN", "IMAGE_TOKENS", "MOST_CHARS_PER_TOKEN", "TURN_TOKENS"]

FEWEST_CHARS_PER_TOKEN: Final = 2.5
"""Code and non-English text run near 2.5-3 characters a token: the pessimistic ratio, for making room."""
MOST_CHARS_PER_TOKEN: Final = 6.0
"""English prose runs near 4; few tokenizers pack more than 6 into a token: the optimistic ratio, for refusing."""
TURN_TOKENS: Final = (2, 8)
"""Template tokens a turn adds, at least and at most (role markers, separators)."""
ANSWER_START_TOKENS: Final = 8
"""Template tokens that open the answer's turn, at most."""
IMAGE_TOKENS: Final = (0, 1280)
"""Tokens an image takes, at least and at most within reason: Gemma 3 takes 256, LLaVA 576, Qwen2.5-VL about
1,200 for a 1,000-pixel square (more for larger images, which LM Studio scales down)."""
