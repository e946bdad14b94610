"""Shared test setup.

anyio's pytest plugin runs every async test on asyncio and on trio (anyio 4.16
parametrizes ``anyio_backend`` over the installed backends). Real peers (the
llama.cpp server, child MCP servers) are started by session fixtures in
``tests/peers.py`` and stopped by pid.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.peers"]

# One real llama.cpp server per xdist worker would put several 2-thread servers on a 2-core machine;
# the tests that use one run on one worker instead (``--dist loadgroup``), so one server serves them all.
_PEER_GROUPS = {
    "llama_server": "llama.cpp",
    "llama_embedding_server": "llama.cpp",
    "smollm2_gguf": "llama.cpp",
    "llama_cpp_python_server": "llama-cpp-python",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        groups = {_PEER_GROUPS[name] for name in getattr(item, "fixturenames", ()) if name in _PEER_GROUPS}
        if groups:
            item.add_marker(pytest.mark.xdist_group(sorted(groups)[0]))
