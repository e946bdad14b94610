"""The ``lmstudio-bridge`` command line.

``serve`` (the default: Claude Code runs the bare command) speaks MCP over
stdio, alone or (``--shared``) relayed to the user's shared bridge, which
``daemon`` runs, reports on and stops; ``check`` tells a new user whether the bridge reaches its servers and
which models they have; ``demo`` shows the system working against the
built-in simulator; ``sim`` runs the simulated LM Studio.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final

import msgspec

from bridge.config import ENV_VARS, CliFlags, LoadedConfig, load_config
from bridge.errors import BridgeError, ConfigError
from bridge.settings import BridgeSettings

__all__ = ["build_parser", "flags_from_args", "main"]

COMMANDS: Final = ("serve", "daemon", "token", "check", "demo", "sim")
MIN_OUTPUT_CHARS: Final = 1000

_EPILOG: Final = f"""\
Without a command, lmstudio-bridge serves MCP over stdio. What Claude Code runs (one shared
bridge for every session: `serve --shared`):

  claude mcp add lmstudio -- lmstudio-bridge serve --shared
  claude mcp add lmstudio -e LMSTUDIO_BASE_URL=http://gpu-box:1234 -- lmstudio-bridge serve --shared

Settings come from flags, then the environment ({", ".join(ENV_VARS)}),
then the TOML file (--config, $LMSTUDIO_BRIDGE_CONFIG, or ~/.config/lmstudio-bridge/config.toml),
then defaults (LM Studio at http://localhost:1234).
"""


def _version() -> str:
    import bridge

    return str(bridge.__version__)


def _settings_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("settings (override the environment and the config file)")
    group.add_argument("--config", metavar="FILE", help="TOML settings file")
    group.add_argument(
        "--server",
        metavar="URL",
        action="append",
        default=[],
        help="an LLM server's URL (repeatable), e.g. http://localhost:1234",
    )
    group.add_argument("--base-url", metavar="URL", help="one LLM server's base URL (with or without /v1)")
    group.add_argument("--host", help="LM Studio's host (with --port; default localhost)")
    group.add_argument("--port", type=int, help="LM Studio's port (default 1234)")
    group.add_argument("--api-key", metavar="KEY", help="bearer token for servers that do not set their own")
    group.add_argument("--default-model", metavar="ID", help="the model used when a call names none")
    group.add_argument("--call-budget", type=float, metavar="SECONDS", help="time budget of one tool call (default 55)")
    group.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), type=str.upper)
    group.add_argument("--log-format", choices=("plain", "json"), help="log lines on stderr: plain or JSON")
    group.add_argument(
        "--tools", choices=("default", "compat"), help="compat adds the older LM Studio bridge's remaining tools"
    )
    common.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio", help="event loop")
    return common


def _output_limit(text: str) -> int:
    value = int(text)
    if value < MIN_OUTPUT_CHARS:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_OUTPUT_CHARS} characters, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmstudio-bridge",
        description="An MCP server that hands work to local LLMs (LM Studio, Ollama, llama.cpp, vLLM).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _settings_options()
    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="serve MCP over stdio (the default)",
        description=(
            "Serve MCP over stdio until stdin closes or SIGTERM, SIGINT or SIGHUP arrives; either way every "
            "child MCP server's process group is stopped first and the exit status is 0 (2: bad configuration)."
        ),
    )
    serve.add_argument(
        "--no-child-servers",
        action="store_true",
        help="do not read or start the child MCP servers (list_available_mcps shows none)",
    )
    serve.add_argument(
        "--shared",
        action="store_true",
        help="relay this session to the user's shared bridge (started if none runs), so every session "
        "shares the per-model slots, queues and load gate",
    )
    serve.add_argument(
        "--http",
        metavar="[HOST:]PORT",
        help="serve MCP over Streamable HTTP at http://HOST:PORT/mcp instead of stdio (loopback by default; "
        "a bearer token is required: see `lmstudio-bridge token`)",
    )
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="with --http: allow a HOST that is not loopback (the token is then all that guards the bridge)",
    )
    serve.add_argument(
        "--max-output-chars",
        type=_output_limit,
        default=None,
        metavar="N",
        help="characters allowed in one tool result (default 48000, under Claude Code's 25,000-token limit)",
    )
    daemon = commands.add_parser(
        "daemon",
        parents=[common],
        help="the shared bridge behind `serve --shared`: run it, or ask it for its status, or stop it",
        description=(
            "Run the shared bridge for these settings in the foreground (`serve --shared` starts one by itself), "
            "or act on the one that `serve --shared` with the same settings would use."
        ),
    )
    daemon.add_argument("action", nargs="?", choices=("run", "status", "stop"), default="run")
    daemon.add_argument("--json", action="store_true", help="status: one line of JSON")
    daemon.add_argument("--detach", action="store_true", help=argparse.SUPPRESS)  # the relay's way to start it
    daemon.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    for parser_with_idle in (serve, daemon):
        parser_with_idle.add_argument(
            "--idle-exit",
            type=float,
            metavar="SECONDS",
            help="shared bridge: exit after this long with no session (default 600)",
        )
    commands.add_parser(
        "token",
        help="print the bearer token of `serve --http` (made on first use), and how to give it to Claude Code",
    )
    check = commands.add_parser(
        "check",
        parents=[common],
        help="can the bridge reach its LLM servers, and which models do they have?",
        description="Check the LLM servers and list their models; exit status 1 if none is reachable.",
    )
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    demo = commands.add_parser("demo", help="show the bridge working against the built-in simulated LM Studio")
    demo.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio", help="event loop")
    commands.add_parser("sim", help="run the simulated LM Studio (see `lmstudio-bridge sim --help`)", add_help=False)
    return parser


def flags_from_args(args: argparse.Namespace) -> CliFlags:
    return CliFlags(
        config=args.config,
        servers=tuple(args.server),
        base_url=args.base_url,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        default_model=args.default_model,
        call_budget=args.call_budget,
        log_level=args.log_level,
        log_format=args.log_format,
        tools=args.tools,
    )


def _with_default_command(argv: list[str]) -> list[str]:
    if not argv:
        return ["serve"]
    first = argv[0]
    if first in COMMANDS or first in ("-h", "--help", "--version"):
        return argv
    return ["serve", *argv]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args_list = _with_default_command(list(sys.argv[1:] if argv is None else argv))
    if args_list[0] == "sim":
        from bridge.sim.cli import main as sim_main

        return sim_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command == "demo":
        from bridge.demo import main as demo_main

        return demo_main(["--backend", args.backend])
    if args.command == "daemon" and args.detach:
        return _daemon_detached(args)
    if args.command == "token":
        return _token()
    try:
        config = load_config(flags_from_args(args))
    except ConfigError as exc:
        print(f"lmstudio-bridge: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        return _check(config, backend=args.backend, as_json=args.json)
    settings = config.settings
    if getattr(args, "idle_exit", None) is not None:
        settings = msgspec.structs.replace(settings, idle_exit=args.idle_exit)
    if args.command == "daemon":
        return _daemon(settings, args)
    if args.http is not None:
        return _serve_http(settings, args)
    if args.shared:
        from bridge.logs import configure_logging
        from bridge.shared._commands import run_relay

        configure_logging(settings.log_level, settings.log_format)
        return run_relay(
            settings,
            child_servers=not args.no_child_servers,
            output_limit=args.max_output_chars,
            backend=args.backend,
        )
    return _serve(config, args)


def _serve_http(settings: BridgeSettings, args: argparse.Namespace) -> int:
    import os

    import anyio

    from bridge.frontend import DEFAULT_OUTPUT_LIMIT, configure_logging
    from bridge.frontend._http import parse_listen_address, serve_http
    from bridge.http_token import http_token

    configure_logging(settings.log_level, settings.log_format)
    if args.backend != "asyncio":
        print("lmstudio-bridge: --http runs on asyncio (its web server, uvicorn, does)", file=sys.stderr)
        return 2
    try:
        host, port = parse_listen_address(args.http)
        token = http_token(os.environ)

        async def run() -> None:
            await serve_http(
                settings,
                host=host,
                port=port,
                token=token,
                allow_remote=args.allow_remote,
                child_servers=not args.no_child_servers,
                output_limit=args.max_output_chars or DEFAULT_OUTPUT_LIMIT,
                on_listening=lambda url: print(f"lmstudio-bridge: serving MCP at {url}", file=sys.stderr, flush=True),
            )

        anyio.run(run)
    except ConfigError as exc:
        print(f"lmstudio-bridge: {exc}", file=sys.stderr)
        return 2
    return 0


def _token() -> int:
    import os

    from bridge.http_token import http_token, token_path

    try:
        token = http_token(os.environ)
    except ConfigError as exc:
        print(f"lmstudio-bridge token: {exc}", file=sys.stderr)
        return 1
    print(f"# the bearer token of `lmstudio-bridge serve --http`, kept in {token_path(os.environ)}")
    print("# claude mcp add --transport http lmstudio http://127.0.0.1:8765/mcp \\")
    print('#   --header "Authorization: Bearer $(lmstudio-bridge token | tail -n 1)"')
    print(token)
    return 0


def _daemon(settings: BridgeSettings, args: argparse.Namespace) -> int:
    from bridge.logs import configure_logging
    from bridge.shared._commands import run_daemon

    configure_logging(settings.log_level, settings.log_format)
    try:
        return run_daemon(settings, command=args.action, backend=args.backend, ready_fd=None, as_json=args.json)
    except BridgeError as exc:
        print(f"lmstudio-bridge daemon: {exc}", file=sys.stderr)
        return 1


def _daemon_detached(args: argparse.Namespace) -> int:
    """Started by a relay: the settings come whole on stdin (never on the command line: keys)."""
    from bridge.logs import configure_logging
    from bridge.settings import BridgeSettings
    from bridge.shared._commands import detach, run_daemon

    settings = msgspec.json.decode(sys.stdin.buffer.read(), type=BridgeSettings)
    detach()
    configure_logging(settings.log_level, settings.log_format)
    return run_daemon(settings, command="run", backend=args.backend, ready_fd=args.ready_fd, as_json=False)


def _serve(config: LoadedConfig, args: argparse.Namespace) -> int:
    import anyio

    from bridge.frontend import DEFAULT_OUTPUT_LIMIT, configure_logging, serve_stdio

    settings = config.settings
    configure_logging(settings.log_level, settings.log_format)
    limit = args.max_output_chars or DEFAULT_OUTPUT_LIMIT
    try:
        anyio.run(
            lambda: serve_stdio(settings, child_servers=not args.no_child_servers, output_limit=limit),
            backend=args.backend,
        )
    except KeyboardInterrupt:
        return 130  # only before serve_stdio handles the signals, when no child can have started yet
    # A signal is an orderly stop like stdin EOF (children stopped, nothing left behind): 0, not 128+signum.
    return 0


def _check(config: LoadedConfig, *, backend: str, as_json: bool) -> int:
    import anyio

    from bridge.frontend import configure_logging

    settings = config.settings
    configure_logging("ERROR" if config.origin("log_level") == "default" else settings.log_level, settings.log_format)
    try:
        report: dict[str, object] = anyio.run(_check_report, config, backend=backend)
    except BridgeError as exc:
        print(f"lmstudio-bridge check: {exc}", file=sys.stderr)
        return 1
    reachable = report["reachable"]
    if as_json:
        import json

        print(json.dumps(report, indent=2, default=str))
    else:
        print(_check_text(report))
    return 0 if reachable else 1


async def _check_report(config: LoadedConfig) -> dict[str, object]:
    import msgspec

    from bridge.app import open_bridge
    from bridge.messages import CheckHealth, ResolveModel

    settings = config.settings
    async with open_bridge(settings, child_servers=False) as bridge:
        health = await bridge.registry.ask(CheckHealth(), timeout=settings.listing_timeout + 5.0)
        default: dict[str, object]
        try:
            entry = await bridge.registry.ask(ResolveModel(), timeout=settings.listing_timeout + 5.0)
            default = {"model": entry.id}
        except BridgeError as exc:
            default = {"error": str(exc.code), "message": exc.message}
    return {
        "version": _version(),
        "config_file": str(config.file) if config.file else None,
        "servers": [msgspec.to_builtins(s) for s in health.servers],
        "models": [msgspec.to_builtins(m) for m in health.models],
        "default_model": default,
        "reachable": sum(1 for s in health.servers if s.reachable),
    }


def _check_text(report: dict[str, object]) -> str:
    lines = [f"lmstudio-bridge {report['version']}"]
    lines.append(f"settings: {report['config_file'] or 'no config file (flags, environment, defaults)'}")
    servers = report["servers"]
    models = report["models"]
    assert isinstance(servers, list)
    assert isinstance(models, list)
    lines.append("")
    lines.append("LLM servers:")
    for s in servers:
        if s.get("reachable"):
            api = "LM Studio native API" if s.get("lmstudio_native_api") else "OpenAI-compatible API"
            lines.append(
                f"  ok    {s['name']}  {s['url']}  {api}, {s['models']} models, {len(s.get('loaded') or [])} loaded"
            )
        else:
            error = s.get("last_error") or {}
            lines.append(f"  FAIL  {s['name']}  {s['url']}")
            lines.append(f"        {error.get('code', 'unknown')}: {error.get('message', 'no answer')}")
    lines.append("")
    lines.append(f"Models ({len(models)}):")
    for m in models:
        state = "loaded" if m.get("loaded") else ("not loaded" if m.get("loaded") is False else "")
        ctx = f"context {m['context_length']}" if m.get("context_length") else ""
        lines.append("  " + "  ".join(p for p in (m["id"], m.get("type", ""), state, ctx) if p))
    default = report["default_model"]
    assert isinstance(default, dict)
    if report["reachable"]:
        lines.append("")
        if "model" in default:
            lines.append(f"Default model: {default['model']}")
        else:
            lines.append(f"Default model: none ({default.get('error')}: {default.get('message')})")
    lines.append("")
    if report["reachable"]:
        lines.append(
            "Ready. Add the bridge to Claude Code with:  claude mcp add lmstudio -- lmstudio-bridge serve --shared"
        )
    else:
        lines.append(
            "No LLM server is reachable. Start LM Studio's server (Developer tab, or `lms server start`), "
            "or point the bridge at yours with --base-url / LMSTUDIO_BASE_URL."
        )
    return "\n".join(lines)
