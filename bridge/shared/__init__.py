"""Shared mode: one bridge per user and settings, for every Claude Code session and subagent.

Each session's ``lmstudio-bridge serve --shared`` is a small relay
(:func:`relay`) between its stdio and a Unix socket in the user's private
runtime directory; behind the socket runs one shared bridge
(:mod:`bridge.shared.daemon`, ``lmstudio-bridge daemon``) whose workers, slots,
queues, JIT-load gate and breakers every session shares, so the per-model
limits hold for the machine and not per process. Each session keeps its own
child MCP servers. The relay imports neither the mcp SDK nor the LLM client:
``bridge.shared.daemon`` is imported only where a bridge runs.
"""

from __future__ import annotations

from bridge.shared._attach import Attach as Attach
from bridge.shared._identity import shared_name as shared_name
from bridge.shared._paths import SharedPaths as SharedPaths
from bridge.shared._paths import shared_paths as shared_paths
from bridge.shared._relay import relay as relay
from bridge.shared._start import connect as connect
from bridge.shared._start import locked as locked

__all__ = ["Attach", "SharedPaths", "connect", "locked", "relay", "shared_name", "shared_paths"]
