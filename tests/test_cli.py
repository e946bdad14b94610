"""The command line: --version, --help, the default command, `check` and `sim`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import bridge
from bridge.cli import _with_default_command, main
from tests._util import free_port


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMSTUDIO")}
    env["HOME"] = str(tmp_path)
    env["XDG_CONFIG_HOME"] = str(tmp_path / ".config")
    return env


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """A simulator in its own process for the `check` commands (each runs its own event loop)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.sim", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("LISTENING "), line
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"lmstudio-bridge {bridge.__version__}"


def test_help_lists_the_commands_and_the_claude_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "check", "demo", "sim"):
        assert command in out
    assert "claude mcp add lmstudio -- lmstudio-bridge serve --shared" in out
    assert "LMSTUDIO_BRIDGE_CONFIG" in out


def test_serve_help_lists_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    for flag in ("--config", "--server", "--base-url", "--host", "--port", "--call-budget", "--log-format"):
        assert flag in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["serve"]),
        (["--base-url", "http://x:1"], ["serve", "--base-url", "http://x:1"]),
        (["--port", "1234"], ["serve", "--port", "1234"]),
        (["check"], ["check"]),
        (["sim", "--port", "0"], ["sim", "--port", "0"]),
        (["--help"], ["--help"]),
        (["--version"], ["--version"]),
    ],
)
def test_serve_is_the_default_command(argv: list[str], expected: list[str]) -> None:
    assert _with_default_command(argv) == expected


def test_sim_delegates_to_the_simulator() -> None:
    result = run_cli("sim", "--help")
    assert result.returncode == 0
    assert "simulated LM Studio" in result.stdout


def test_check_lists_servers_and_models(sim_url: str, tmp_path: Path) -> None:
    result = run_cli("check", "--base-url", sim_url, env=clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"ok    127.0.0.1:{sim_url.rsplit(':', 1)[1]}" in out
    assert "qwen/qwen3-coder-30b" in out
    assert "Default model: qwen/qwen3-coder-30b" in out
    assert "claude mcp add lmstudio -- lmstudio-bridge serve --shared" in out


def test_check_json(sim_url: str, tmp_path: Path) -> None:
    result = run_cli("check", "--json", env={**clean_env(tmp_path), "LMSTUDIO_BASE_URL": sim_url})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["reachable"] == 1
    assert "qwen/qwen3-coder-30b" in {m["id"] for m in report["models"]}
    assert report["servers"][0]["lmstudio_native_api"] is True


def test_check_with_nothing_reachable_exits_1_with_advice(tmp_path: Path) -> None:
    result = run_cli("check", "--port", str(free_port()), env=clean_env(tmp_path))
    assert result.returncode == 1
    assert "FAIL" in result.stdout
    assert "backend_unavailable" in result.stdout
    assert "No LLM server is reachable" in result.stdout


def test_check_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text("[budgets]\nfirst_tokn = 3\n")
    result = run_cli("check", "--config", str(config), env=clean_env(tmp_path))
    assert result.returncode == 2
    assert "budgets.first_tokn" in result.stderr
    assert str(config) in result.stderr
