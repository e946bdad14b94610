"""Every module imports on its own in a fresh interpreter (an import cycle can hide behind test order)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import bridge

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(bridge.__path__, prefix="bridge.")
    if not name.endswith("__main__") and name != "bridge.sim.demo_tools"
)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module: str) -> None:
    """Importing the module first, before anything else of the bridge, works."""
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


RUNTIME_MUST_NOT_LOAD = ("httpx", "stamina", "mcp", "bridge.llm", "bridge.messages", "bridge.errors", "bridge.actors")


def test_the_runtime_loads_nothing_of_the_domain() -> None:
    """``bridge.runtime`` stands alone: no HTTP client, no retry library, no MCP, no domain messages."""
    probe = (
        "import sys, bridge.runtime, bridge.runtime.errors; "
        "from bridge.runtime import Actor, ActorRef, Supervisor, open_supervisor; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'stamina', 'mcp') "
        f"or m.startswith({RUNTIME_MUST_NOT_LOAD[3:]!r})))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


RELAY_MUST_NOT_LOAD = ("mcp", "httpx", "pydantic", "stamina", "bridge.frontend", "bridge.llm", "bridge.actors")


def test_the_relay_loads_neither_the_sdk_nor_the_llm_client() -> None:
    """``serve --shared`` starts in every session: it must stay small (no mcp SDK, no httpx, no actors)."""
    probe = (
        "import sys, bridge.cli, bridge.shared._commands, bridge.shared._relay; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {RELAY_MUST_NOT_LOAD[:4]!r} "
        f"or m.startswith({RELAY_MUST_NOT_LOAD[4:]!r}) or m == 'bridge.runtime._actor'))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout
