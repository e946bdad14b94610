"""Shared test setup.

anyio's pytest plugin runs every async test on asyncio and on trio (anyio 4.16
parametrizes ``anyio_backend`` over the installed backends). Real peers (the
llama.cpp server, child MCP servers) are started by session fixtures in
``tests/peers.py`` and stopped by pid.
"""

from __future__ import annotations

pytest_plugins = ["tests.peers", "tests.peers_llama_cpp_python"]
