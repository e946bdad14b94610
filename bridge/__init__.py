"""lmstudio-bridge: an MCP server that hands work to local LLMs, run by supervised actors on anyio."""

from __future__ import annotations

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("lmstudio-bridge")
        except PackageNotFoundError:  # running from a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'bridge' has no attribute {name!r}")
