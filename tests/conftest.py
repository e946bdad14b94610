"""Shared test setup.

anyio's pytest plugin runs every async test on asyncio and on trio (anyio 4.16
parametrizes ``anyio_backend`` over the installed backends). Real peers (the
llama.cpp server, child MCP servers) are started by session fixtures in
``tests/peers.py`` and stopped by pid. Generated-input tests (hypothesis) share one
profile: reproducible in CI (derandomized, no example database), no per-example deadline
(an example starts tool calls against real peers; the tests bound their own waits).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "bridge",
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("bridge")

pytest_plugins = ["tests.peers", "tests.peers_llama_cpp_python"]


@pytest.fixture
def errlog(tmp_path: Path) -> Iterator[TextIO]:
    """Where a server subprocess's stderr goes (a real file: the child process writes to it)."""
    with open(tmp_path / "serve-stderr.log", "w", encoding="utf-8") as log:
        yield log
