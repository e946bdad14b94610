"""The first line on a shared bridge's socket: who is attaching, and what for.

A relay sends one JSON object before the MCP messages it relays: its working
directory, environment and child-server settings, so the shared bridge can give
the session the child servers it would have alone. The bridge answers one line,
``{"attached": n, "pid": p}``, before any MCP message: a relay that gets no such
line reached a listener that is going away (a bridge killed a moment ago) and
looks again. ``status`` and ``stop`` ask the bridge itself and get one JSON line back.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from bridge.settings import ChildSettings

__all__ = ["ATTACH_LIMIT", "Attach", "decode_attach", "encode_attach"]

ATTACH_LIMIT = 1 << 20
"""Bytes the attach line may take (an environment is a few KB)."""


class Attach(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a connection to the shared bridge is for.

    Attributes:
        kind: ``session`` (MCP messages follow), ``status`` or ``stop``.
        cwd: The relay's working directory: where its ``./.mcp.json`` is and its children run.
        environ: The relay's environment, for ``${VAR}`` expansion in its child-server files.
        children: Its child-server settings; ``None``: no child servers (``--no-child-servers``).
        output_limit: Characters allowed in one tool result of this session (``None``: the default).
        tools: The session's tool profile (``default`` or ``compat``).
        pid: The relay's pid, for ``daemon status``.
    """

    kind: Literal["session", "status", "stop"] = "session"
    cwd: str = "/"
    environ: dict[str, str] = msgspec.field(default_factory=dict)
    children: ChildSettings | None = None
    output_limit: int | None = None
    tools: Literal["default", "compat"] = "default"
    pid: int = 0


def encode_attach(attach: Attach) -> bytes:
    return msgspec.json.encode(attach) + b"\n"


def decode_attach(line: bytes) -> Attach:
    """Raises ``msgspec.ValidationError`` (a ``ValueError``) on anything else."""
    return msgspec.json.decode(line, type=Attach)
