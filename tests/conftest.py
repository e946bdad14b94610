"""Shared test setup.

anyio's pytest plugin runs every async test on asyncio and on trio (anyio 4.16
parametrizes ``anyio_backend`` over the installed backends). Real peers (the
llama.cpp server, child MCP servers) are started by session fixtures in
``tests/peers.py`` and stopped by pid. Generated-input tests (hypothesis) share one
profile: reproducible in CI (derandomized, no example database), no per-example deadline
(an example starts tool calls against real peers; the tests bound their own waits).
"""

from __future__ import annotations

import compileall
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


def pytest_configure(config: pytest.Config) -> None:
    """Compile the bridge's bytecode once, before any worker or subprocess imports it.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (CI images, this project's own machines), no process
    caches what it compiles: each of the suite's several hundred ``bridge`` subprocesses compiled
    all ~160 modules from source again (about 0.2 s of CPU each). Reading bytecode is still allowed
    there; this writes it, into the ``__pycache__`` folders Python itself would use.
    """
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has done it
        return
    import bridge

    compileall.compile_dir(Path(bridge.__file__).parent, quiet=1)


@pytest.fixture
def errlog(tmp_path: Path) -> Iterator[TextIO]:
    """Where a server subprocess's stderr goes (a real file: the child process writes to it)."""
    with open(tmp_path / "serve-stderr.log", "w", encoding="utf-8") as log:
        yield log
