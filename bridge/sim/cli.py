"""``lmstudio-bridge sim`` / ``python -m bridge.sim``: run the simulated LM Studio until SIGINT or SIGTERM.

For a server in a separate process (benchmarks), start it with ``--port 0``
and read the port from ``--port-file PATH`` (written atomically once
listening) or from the ``LISTENING <port>`` line on stdout. The URL goes to
stderr. Drive it over HTTP: ``GET /__sim/stats``, ``POST /__sim/script``,
``GET /__sim/requests?model=…``, ``POST /__sim/reset``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import msgspec

from bridge.sim._config import FaultKind, SimConfig, SimModel, default_config, load_config
from bridge.sim.server import SimServer

__all__ = ["build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmstudio-bridge sim",
        description="Serve a simulated LM Studio (OpenAI-compatible and native API) for tests, demos and benchmarks.",
    )
    parser.add_argument("--host", default=None, help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="TCP port; 0 picks a free one (default 1234)")
    parser.add_argument("--port-file", type=Path, help="write the bound port to this file once listening")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="JSON file with a SimConfig (fields as in bridge.sim.SimConfig)")
    source.add_argument(
        "--models", help="comma-separated model ids to serve instead of the default set (ids containing 'embed' embed)"
    )
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio", help="event loop")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None, help="JIT-load on first use")
    parser.add_argument(
        "--auto-evict", action=argparse.BooleanOptionalAction, default=None, help="a JIT load unloads other JIT models"
    )
    parser.add_argument("--duplicate-jit-loads", action="store_true", help="concurrent first requests load key:N")
    parser.add_argument("--api-token", help="require 'Authorization: Bearer TOKEN'")
    parser.add_argument("--basic-auth", metavar="USER:PASSWORD", help="require this HTTP Basic auth (a proxy's)")
    parser.add_argument("--seed", type=int, default=None, help="seed for random faults and ids")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"random fault rate per request, repeatable; kinds: {', '.join(k.value for k in FaultKind)}",
    )
    parser.add_argument("--fault-seconds", type=float, default=None, help="length of a random stall (default 1)")
    parser.add_argument("--latency", type=float, help="every model takes exactly this many seconds per request")
    parser.add_argument("--ttft", type=float, help="seconds to first token, for every model")
    parser.add_argument("--tokens-per-s", type=float, help="output speed, for every model (0: instant)")
    parser.add_argument("--reply-tokens", type=int, help="default reply length in tokens, for every model")
    parser.add_argument("--parallel", type=int, help="slots per loaded instance, for every model")
    parser.add_argument("--jit-load-delay", type=float, help="seconds a load takes, for every model")
    parser.add_argument("--empty-tool-calls", action="store_true", help="plain replies carry tool_calls: []")
    return parser


def _parse_faults(items: Sequence[str]) -> dict[FaultKind, float]:
    rates: dict[FaultKind, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            kind = FaultKind(name.strip())
            rate = float(value)
        except ValueError:
            kinds = ", ".join(k.value for k in FaultKind)
            message = f"--fault {item!r}: expected KIND=RATE with KIND one of {kinds} and RATE in [0, 1]"
            raise ValueError(message) from None
        if not sep:
            raise ValueError(f"--fault {item!r}: expected KIND=RATE")
        rates[kind] = rate
    return rates


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The :class:`SimConfig` the command line describes (file or defaults, then flags on top)."""
    if args.config is not None:
        config = load_config(args.config)
    elif args.models:
        ids = [m.strip() for m in args.models.split(",") if m.strip()]
        config = SimConfig(models=tuple(SimModel(id=i, type="embeddings" if "embed" in i else "llm") for i in ids))
    else:
        config = default_config(port=1234)
    model_changes = {
        name: getattr(args, name)
        for name in ("latency", "ttft", "tokens_per_s", "reply_tokens", "parallel", "jit_load_delay")
        if getattr(args, name) is not None
    }
    if model_changes:
        config = msgspec.structs.replace(
            config, models=tuple(msgspec.structs.replace(m, **model_changes) for m in config.models)
        )
    changes: dict[str, object] = {}
    for name in ("host", "port", "jit", "auto_evict", "api_token", "basic_auth", "seed", "fault_seconds"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.duplicate_jit_loads:
        changes["duplicate_jit_loads"] = True
    if args.empty_tool_calls:
        changes["empty_tool_calls"] = True
    if args.fault:
        changes["fault_rates"] = _parse_faults(args.fault)
    # Rebuild through msgspec so __post_init__ checks the result (replace() does not validate).
    return msgspec.convert(msgspec.to_builtins(msgspec.structs.replace(config, **changes)), SimConfig)


def _write_port_file(path: Path, port: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, path)  # readers never see a half-written file


async def _serve(config: SimConfig, port_file: Path | None) -> None:
    async with SimServer(config) as sim:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            if port_file is not None:
                _write_port_file(port_file, sim.port)
            models = ", ".join(m.id for m in config.models) or "none"
            print(f"lmstudio-bridge sim: serving {models}", file=sys.stderr)
            print(f"lmstudio-bridge sim: listening on {sim.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
            print(f"LISTENING {sim.port}", flush=True)
            async for _ in signals:
                break


def main(argv: list[str] | None = None) -> int:
    """Run the simulator from the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, OSError, msgspec.ValidationError) as exc:
        print(f"lmstudio-bridge sim: {exc}", file=sys.stderr)
        return 2
    try:
        anyio.run(_serve, config, args.port_file, backend=args.backend)
    except OSError as exc:
        print(f"lmstudio-bridge sim: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return 130
    return 0
