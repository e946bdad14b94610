"""Recognising the bridge in its own child list, so it never starts itself.

A user who registers lmstudio-bridge in the same ``.mcp.json`` it reads would
otherwise get a bridge that starts a bridge that starts a bridge... Two guards:

* **By command line.** An entry whose command or arguments run the bridge is
  skipped (see :func:`self_reference` for the patterns).
* **By environment.** Every child the bridge starts gets
  :data:`PARENT_PID_ENV` set to the bridge's pid. A bridge that finds it set in
  its own environment, naming a live process other than itself, was started
  (directly or further down) by another bridge: it starts **no** children at
  all, which breaks any recursion the command-line patterns missed (a wrapper
  script, an alias). A stale marker (its pid is gone) is ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

__all__ = ["PARENT_PID_ENV", "nested_parent_pid", "self_reference"]

PARENT_PID_ENV = "LMSTUDIO_BRIDGE_PARENT_PID"
"""Set in every child's environment to the pid of the bridge that started it."""

# `lmstudio-bridge` (or `lmstudio_bridge`, any case) as a whole word: a program
# name, the last part of a path (`/venv/bin/lmstudio-bridge`, `...\lmstudio-bridge.exe`),
# a package spec (`lmstudio-bridge@latest`, `lmstudio-bridge==0.1`), or a word
# inside a shell string (`sh -c "cd x && lmstudio-bridge"`).
_PROGRAM = re.compile(
    r"(?:^|[\s/\\'\"=:;&|(])lmstudio[-_]bridge(?:\.exe)?(?=$|[\s'\";&|)@=<>~!\[]|\.exe)",
    re.IGNORECASE,
)
# The bridge's own modules, as in `python -c "from bridge.cli import main"` or `bridge.cli:main`.
_MODULE = re.compile(r"(?<![\w.])bridge\.(?:cli|__main__)\b")
_MODULE_NAMES = frozenset({"bridge", "bridge.cli", "bridge.__main__"})


def self_reference(command: str, args: Sequence[str]) -> str | None:
    """Why this command line runs lmstudio-bridge itself, or ``None`` if it does not.

    Recognised: a program or path token naming ``lmstudio-bridge`` (so also
    ``uvx lmstudio-bridge``, ``uv run lmstudio-bridge``, ``pipx run
    lmstudio-bridge``, ``uvx --from lmstudio-bridge==0.1 ...``), ``-m bridge``
    / ``-m bridge.cli`` / ``-mbridge``, and any token mentioning ``bridge.cli``.
    A path that merely *ends* in ``lmstudio-bridge`` (a checkout directory given
    to ``--directory``) also matches: a false positive is reported as skipped,
    which is visible; a missed self-reference is a fork bomb.
    """
    tokens = [command, *args]
    for index, token in enumerate(tokens):
        if _PROGRAM.search(token):
            return f"its command line runs lmstudio-bridge ({token!r})"
        if _MODULE.search(token):
            return f"its command line runs the bridge's module ({token!r})"
        module = _module_argument(tokens, index)
        if module in _MODULE_NAMES:
            return f"its command line runs `python -m {module}`"
    return None


def _module_argument(tokens: Sequence[str], index: int) -> str | None:
    token = tokens[index]
    if token == "-m" and index + 1 < len(tokens):
        return tokens[index + 1]
    if token.startswith("-m") and len(token) > 2 and not token.startswith("--"):
        return token[2:]
    return None


def nested_parent_pid(environ: Mapping[str, str], *, own_pid: int | None = None) -> int | None:
    """The pid of the live bridge that started this one, per :data:`PARENT_PID_ENV`.

    ``None`` when the marker is absent, unparseable, names this very process,
    or names a process that no longer exists (a stale marker inherited by a
    shell that outlived its bridge).
    """
    raw = environ.get(PARENT_PID_ENV, "").strip()
    if not raw.isdigit():
        return None
    pid = int(raw)
    if pid <= 0 or pid == (os.getpid() if own_pid is None else own_pid):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, just not ours to signal
    return pid
