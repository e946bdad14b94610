"""The simulator's command line, config files and out-of-process use."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import msgspec
import pytest

from bridge.sim import FaultKind, SimConfig, SimModel, default_config, load_config
from bridge.sim.cli import build_parser, config_from_args, main
from bridge.sim.testing import sim_process


def test_flags_build_the_config() -> None:
    """Command-line flags override the default config, model knobs apply to every model."""
    args = build_parser().parse_args(
        ["--port", "0", "--no-jit", "--latency", "0.5", "--reply-tokens", "2", "--fault", "drop=0.1", "--seed", "3"]
    )
    config = config_from_args(args)
    assert (config.port, config.jit, config.seed) == (0, False, 3)
    assert config.fault_rates == {FaultKind.DROP: 0.1}
    assert {(m.latency, m.reply_tokens) for m in config.models} == {(0.5, 2)}
    assert [m.id for m in config.models] == [m.id for m in default_config().models]


def test_models_flag() -> None:
    """--models serves just those ids; ids with 'embed' are embedding models."""
    config = config_from_args(build_parser().parse_args(["--models", "a/chat, b/text-embed"]))
    assert [(m.id, m.type) for m in config.models] == [("a/chat", "llm"), ("b/text-embed", "embeddings")]


def test_config_file_round_trip(tmp_path: Path) -> None:
    """A JSON config file loads into the same SimConfig."""
    config = SimConfig(
        models=(SimModel(id="x", parallel=2, reasoning="think"),), fault_rates={FaultKind.STALL: 0.2}, seed=5
    )
    path = tmp_path / "sim.json"
    path.write_bytes(msgspec.json.encode(config))
    assert load_config(path) == config
    args = build_parser().parse_args(["--config", str(path), "--port", "0"])
    assert config_from_args(args).models == config.models


@pytest.mark.parametrize(
    "argv",
    [
        ["--fault", "nonsense=1"],
        ["--fault", "drop"],
        ["--parallel", "0"],
        ["--fault", "drop=0.8", "--fault", "stall=0.8"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid settings exit with status 2 and say what is wrong."""
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("lmstudio-bridge sim: ")


def test_bad_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config with an unknown field is rejected with the file named."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"models": [{"id": "x", "speed": 3}]}))
    assert main(["--config", str(path)]) == 2
    assert "bad.json" in capsys.readouterr().err


async def test_out_of_process_server(tmp_path: Path, anyio_backend_name: str) -> None:
    """A child process serves on a free port, is driven over /__sim/ routes, and exits 0 on SIGTERM."""
    port_file = tmp_path / "port"
    args = ["--backend", anyio_backend_name, "--models", "m", "--reply-tokens", "3", "--port-file", str(port_file)]
    async with sim_process(args) as child, httpx.AsyncClient(base_url=child.url) as http:
        assert int(port_file.read_text()) == child.port
        scripted = await http.post("/__sim/script", json={"model": "m", "turns": [{"type": "say", "text": "hi!"}]})
        assert scripted.json() == {"model": "m", "pending": 1}
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        first = (await http.post("/v1/chat/completions", json=body)).json()
        second = (await http.post("/v1/chat/completions", json=body)).json()
        assert first["choices"][0]["message"]["content"] == "hi!"
        assert second["usage"]["completion_tokens"] == 3
        stats = (await http.get("/__sim/stats")).json()
        assert (stats["models"]["m"]["completed"], stats["models"]["m"]["loads"]) == (2, 1)
        seen = (await http.get("/__sim/requests", params={"model": "m"})).json()
        assert [r["messages"] for r in seen] == [body["messages"]] * 2
        bad = await http.post("/__sim/script", json={"model": "m", "turns": [{"type": "shout"}]})
        assert bad.status_code == 400
        await http.post("/__sim/reset")
        assert (await http.get("/__sim/stats")).json()["models"]["m"]["completed"] == 0
    assert child.process.returncode == 0
