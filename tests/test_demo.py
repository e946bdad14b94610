"""`lmstudio-bridge demo`, the README's first command: it runs the whole system and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_exits_0_and_shows_each_step(backend: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMSTUDIO")}
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "demo", "--backend", backend],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in (
        "simulated LM Studio listening on",
        "initialize answered",
        "list_models -> 6 models",
        "they ran concurrently",
        "4 succeeded, 1 failed",
        "model_not_found",
        "progress @",
        "saw the stream closed",
        "(slot free)",
        "isError=true, code=model_not_found",
        "the simulated server got 1 image part",
        "code=unsupported, before anything was sent",
        "continuing as job job_",
        "nothing generated before the timeout was lost",
        "bridge_status:",
        "exited",
        "done in",
    ):
        assert step in out, f"missing {step!r} in:\n{out}"
