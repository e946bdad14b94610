"""The ``lmstudio-bridge`` command line.

``serve`` (the default) speaks MCP over stdio; ``demo`` shows the system
working against the built-in simulator; ``sim`` runs the simulated LM Studio;
``check`` tells a new user whether the bridge can reach its servers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _version() -> str:
    import bridge

    return str(bridge.__version__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmstudio-bridge",
        description="An MCP server that hands work to local LLMs (LM Studio, Ollama, llama.cpp, vLLM).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("demo", help="show the bridge working against the built-in simulated LM Studio")
    sim = commands.add_parser("sim", help="run the simulated LM Studio", add_help=False)
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "sim":
        from bridge.sim.cli import main as sim_main

        return sim_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command == "demo":
        from bridge.demo import main as demo_main

        return demo_main()
    parser.print_help(sys.stderr)
    return 2
