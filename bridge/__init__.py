"""lmstudio-bridge: an MCP server that hands work to local LLMs, run by supervised actors on anyio."""

from __future__ import annotations

from bridge._version import __version__ as __version__

__all__ = ["__version__"]
