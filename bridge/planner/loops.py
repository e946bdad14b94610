"""Noticing a model that repeats the same tool call.

Small models stuck on a task often make the same call with the same
arguments again and again, each time getting the same result. The planner
records every call and, when one comes back a third time, answers it with
:func:`repeat_message` instead of running it again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any, final

__all__ = ["LoopDetector", "canonical_arguments", "repeat_message"]


def canonical_arguments(arguments: Mapping[str, Any] | str | None) -> str:
    """Arguments as canonical JSON (sorted keys, no spaces), so equal calls compare equal.

    A string that is not JSON (arguments that could not be parsed) is compared
    as written, minus surrounding whitespace.
    """
    if arguments is None:
        return "{}"
    value: Any = arguments
    if isinstance(arguments, str):
        try:
            value = json.loads(arguments)
        except ValueError:
            return arguments.strip()
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@final
class LoopDetector:
    """Counts (tool, canonical arguments) pairs over one run.

    Args:
        limit: The count at which a call is a loop; 3 means the third
            identical call is reported.
    """

    __slots__ = ("_counts", "_limit")

    def __init__(self, limit: int = 3) -> None:
        if limit < 2:
            raise ValueError(f"limit must be at least 2 (the second identical call), got {limit}.")
        self._limit = limit
        self._counts: Counter[tuple[str, str]] = Counter()

    @property
    def limit(self) -> int:
        """The count at which a call is a loop."""
        return self._limit

    def record(self, name: str, arguments: Mapping[str, Any] | str | None) -> bool:
        """Record one call; True when it has now been made ``limit`` times or more."""
        key = (name, canonical_arguments(arguments))
        self._counts[key] += 1
        return self._counts[key] >= self._limit

    def count(self, name: str, arguments: Mapping[str, Any] | str | None) -> int:
        """How many times this call has been recorded."""
        return self._counts[(name, canonical_arguments(arguments))]

    def reset(self) -> None:
        """Forget every call (e.g. after the task changed)."""
        self._counts.clear()


def repeat_message(name: str, count: int) -> str:
    """What to tell the model instead of running a repeated call."""
    return (
        f"You have now called `{name}` {count} times with exactly these arguments; it was not run again "
        "because the result would be the same. Use the result you already have, or try something different."
    )
