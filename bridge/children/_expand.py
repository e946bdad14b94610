"""``${VAR}`` and ``${VAR:-default}`` expansion, the way Claude Code reads ``.mcp.json``.

Claude Code's rule (``envExpansion.ts``): ``${...}`` is split once on ``:-``; the
variable's value is used whenever it is *set*, even to the empty string; the
default is used only when it is unset. ``$VAR`` without braces is literal, and
there is no recursion (a value that itself contains ``${...}`` stays as is).

Where we differ, on purpose: Claude Code keeps an unset ``${VAR}`` (no default)
as literal text and only warns, so a server starts with ``${TOKEN}`` as its
token and fails later in a confusing way. We report the missing names and the
caller turns them into a :class:`~bridge.errors.ConfigError` for that server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["expand_vars"]

_REFERENCE = re.compile(r"\$\{([^}]+)\}")


def expand_vars(value: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand every ``${...}`` reference in ``value``.

    Returns:
        The expanded text and the names of unset variables that had no default
        (their references are left in the text as written).
    """
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, sep, default = match.group(1).partition(":-")
        if name in environ:
            return environ[name]
        if sep:
            return default
        missing.append(name)
        return match.group(0)

    return _REFERENCE.sub(replace, value), missing
