"""The vocabulary tools are declared with: argument types with their descriptions, and tool annotations.

Shared by the default tools and the compat profile's aliases, so an argument means the same everywhere.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from mcp.types import ToolAnnotations
from pydantic import Field

__all__ = [
    "AUTONOMOUS",
    "DESTRUCTIVE",
    "MAX_RUN_ROUNDS",
    "READ_ONLY",
    "STATEFUL",
    "Images",
    "MaxTokens",
    "RunAllow",
    "RunBudget",
    "RunDeny",
    "RunModel",
    "RunReasoning",
    "RunRounds",
    "RunTaskText",
    "RunTokens",
    "token_count",
]

Images = Annotated[
    list[str] | None,
    Field(
        description="Images for a vision model, each a file path (under the working directory), an http(s) URL, "
        "base64 or a data: URI."
    ),
]

MaxTokens = Annotated[
    Annotated[int, Field(gt=0)] | Literal["auto"] | None,
    Field(description='Most tokens to generate; omit or "auto" for the room the model\'s context leaves.'),
]


def token_count(max_tokens: int | str | None) -> int | None:
    """``max_tokens`` as sent: ``"auto"`` is the same as leaving it out (the worker fits it to the context)."""
    return max_tokens if isinstance(max_tokens, int) else None


READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
"""Status and listing tools, and inference: they change nothing a caller could see afterwards."""
STATEFUL = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)


RunTaskText = Annotated[str, Field(description="What the local model should do, in plain words.")]
RunModel = Annotated[str | None, Field(description="Model id; omit for the default model.")]
MAX_RUN_ROUNDS: Final = 100
"""Most rounds a run takes: a larger ``max_rounds`` (the older bridge's default was 10,000) is cut to it."""
RunRounds = Annotated[
    int, Field(description="Most model turns (each may call tools); more than 100 is cut to 100.", ge=1)
]
RunTokens = Annotated[Annotated[int, Field(gt=0)] | str, Field(description='Most tokens per model turn, or "auto".')]
"""A positive count, checked here: the planner reports an error of the model's turn as the run's, not the call's."""
RunBudget = Annotated[
    float | None, Field(description="Seconds the run may take (default: jobs.time_budget, an hour).", gt=0)
]
RunAllow = Annotated[list[str] | None, Field(description="Only tools matching these patterns (tool or server__tool).")]
RunDeny = Annotated[list[str] | None, Field(description="Never tools matching these patterns.")]
RunReasoning = Annotated[bool, Field(description="Include the model's reasoning in the result.")]


AUTONOMOUS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True)
"""A local model calls other servers' tools: anything those tools do can happen."""
