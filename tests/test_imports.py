"""Every module imports on its own in a fresh interpreter (an import cycle can hide behind test order)."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path

import bridge

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(bridge.__path__, prefix="bridge.")
    if not name.endswith("__main__") and name != "bridge.sim.demo_tools"
)


# One interpreter imports every module in turn, each after forgetting every ``bridge`` module imported
# before it: each import starts from no bridge module, as in a fresh interpreter (the third-party
# packages stay loaded, which is what makes this one process instead of one per module).
_IMPORT_EACH_ALONE = """
import importlib, json, sys, traceback
failures = {}
for module in sys.argv[1:]:
    for name in [m for m in sys.modules if m == "bridge" or m.startswith("bridge.")]:
        del sys.modules[name]
    try:
        importlib.import_module(module)
    except BaseException:
        failures[module] = traceback.format_exc()[-2000:]
print(json.dumps(failures))
"""


def test_every_module_imports_alone() -> None:
    """Importing any module first, before anything else of the bridge, works.

    One test rather than one per module: xdist would spread the modules over its workers, and each
    worker would run the whole interpreter again."""
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH_ALONE, *MODULES], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    failures: dict[str, str] = json.loads(proc.stdout)
    assert not failures, "\n\n".join(f"{module}:\n{trace}" for module, trace in failures.items())
    assert len(MODULES) > 100  # the walk found the package's modules, not an empty list


def test_importing_each_module_alone_finds_a_cycle() -> None:
    """The check itself: two modules that import each other's names at import time fail it."""
    with tempfile.TemporaryDirectory() as root:
        package = Path(root, "bridge")
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "a.py").write_text("from bridge.b import B\nA = 1\n")
        (package / "b.py").write_text("from bridge.a import A\nB = 2\n")
        proc = subprocess.run(
            [sys.executable, "-c", _IMPORT_EACH_ALONE, "bridge.a", "bridge.b"],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
            env={**os.environ, "PYTHONPATH": root},
        )
    failures = json.loads(proc.stdout)
    assert sorted(failures) == ["bridge.a", "bridge.b"]
    assert "ImportError" in failures["bridge.a"]


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
