"""``batch_chat``'s arguments: its items and every prompt on every model, as the chats its job runs."""

from __future__ import annotations

import logging
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.errors import BadRequestError
from bridge.llm import ChatMessage
from bridge.messages import Chat

__all__ = ["MAX_BATCH_ITEMS", "BatchItem", "batch_work", "chat_messages", "none_if_blank"]

log = logging.getLogger("bridge.frontend")

MAX_BATCH_ITEMS: Final = 1000
"""Items one ``batch_chat`` call may carry: enough for a large fan-out, bounded so one call cannot queue
unbounded work (each item still waits its turn within its model's limits and the call's budget)."""


class BatchItem(BaseModel):
    """One prompt of a batch; unset fields come from the call's own arguments."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="The user message.")
    model: str | None = Field(default=None, description="Model id; default: the call's models or the default model.")
    system_prompt: str | None = Field(default=None, description="System prompt for this item.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: Annotated[int, Field(gt=0)] | Literal["auto"] | None = Field(
        default=None, description='Most tokens for this answer; "auto" or omitted: the room the context leaves.'
    )
    images: list[str] | None = Field(
        default=None, description="Images for a vision model: paths, http(s) URLs, base64 or data: URIs."
    )


def _fixed(max_tokens: int | str) -> int | None:
    return max_tokens if isinstance(max_tokens, int) else None  # "auto": fitted to the context by the worker


def chat_messages(prompt: str, system_prompt: str | None) -> list[ChatMessage]:
    """A prompt, after its system prompt if there is one."""
    messages = []
    if system_prompt:
        messages.append(ChatMessage(role="system", content=system_prompt))
    messages.append(ChatMessage(role="user", content=prompt))
    return messages


def none_if_blank(value: str | None) -> str | None:
    return value if value and value.strip() else None


def batch_work(
    prompts: list[str] | None,
    models: list[str] | None,
    items: list[BatchItem] | None,
    *,
    system_prompt: str | None,
    temperature: float | None,
    max_tokens: int | None,
) -> list[tuple[list[str], Chat]]:
    """The (images, message) pairs a ``batch_chat`` call asks for: its items, then every prompt on every model."""
    work: list[tuple[list[str], Chat]] = []
    for item in items or []:
        work.append(
            (
                list(item.images or []),
                Chat(
                    model=item.model,
                    messages=chat_messages(item.prompt, none_if_blank(item.system_prompt or system_prompt)),
                    temperature=item.temperature if item.temperature is not None else temperature,
                    max_tokens=max_tokens if item.max_tokens is None else _fixed(item.max_tokens),
                ),
            )
        )
    targets: list[str | None] = list(models) if models else [None]
    for prompt in prompts or []:
        for model in targets:
            work.append(
                (
                    [],
                    Chat(
                        model=model,
                        messages=chat_messages(prompt, none_if_blank(system_prompt)),
                        temperature=temperature,
                        max_tokens=max_tokens,
                    ),
                )
            )
    if not work:
        raise BadRequestError(
            "nothing to run: pass prompts (each runs on every model in models) or items ([{prompt, model}, ...])"
        )
    if len(work) > MAX_BATCH_ITEMS:
        raise BadRequestError(
            f"{len(work)} items is more than one batch takes ({MAX_BATCH_ITEMS}); split it into several calls",
            details={"items": len(work), "max_items": MAX_BATCH_ITEMS},
        )
    return work
