"""Shared output of the benchmarks: machine facts, a table on stdout, one JSON file."""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import os
import platform
import subprocess
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import anyio
import msgspec

RESULTS = Path(__file__).parent / "results"
BACKENDS = ("asyncio", "trio")


class NotRun(dict[str, Any]):
    """The figures of a backend a quick run left out: every figure reads as NaN, the table says so."""

    def __missing__(self, key: str) -> float:
        return math.nan


def backends(quick: bool, index: int) -> tuple[str, ...]:
    """Which server backends a group runs on.

    A full run measures both. A quick run (CI smoke) runs each group or scenario on one, alternating by
    its place in the suite, so that the suite as a whole drives both backends and stays under a minute
    on two cores: every run starts several interpreters, and their imports are most of its CPU.
    """
    return BACKENDS if not quick else (BACKENDS[index % len(BACKENDS)],)


def with_not_run(figures: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Figures for every backend, a :class:`NotRun` for those left out."""
    return {b: figures[b] if b in figures else NotRun() for b in BACKENDS}


def machine() -> dict[str, Any]:
    versions: dict[str, str] = {}
    for package in ("lmstudio-bridge", "anyio", "trio", "mcp", "httpx", "msgspec", "stamina"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "absent"
    return {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions,
    }


def run_child(module: str, *args: str) -> dict[str, Any]:
    """Run one benchmark module in a fresh interpreter and read the JSON line it prints."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, check=False, timeout=1800
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    sys.stderr.write(proc.stderr)  # what a benchmark says of its failed requests, which its figures only count
    last = proc.stdout.strip().splitlines()[-1]
    result: dict[str, Any] = msgspec.json.decode(last)
    return result


def child_parser(prog: str, *, backend_help: str | None = None) -> argparse.ArgumentParser:
    """The flags :func:`run_child` passes a benchmark module, so both sides agree on them."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--backend", choices=list(BACKENDS), required=True, help=backend_help)
    parser.add_argument("--quick", action="store_true")
    return parser


def emit(figures: dict[str, Any]) -> None:
    """The one JSON line a benchmark module prints; :func:`run_child` reads the last line."""
    sys.stdout.write(msgspec.json.encode(figures).decode() + "\n")
    sys.stdout.flush()


def child_main(
    prog: str,
    run_all: Callable[[bool], Awaitable[dict[str, float]]],
    argv: list[str] | None,
    *,
    log_level: int | None = logging.ERROR,
) -> int:
    """``main`` of a module whose bridge runs in-process, so on the event loop ``--backend`` names."""
    args = child_parser(prog).parse_args(argv)
    if log_level is not None:
        logging.basicConfig(level=log_level)
    emit(anyio.run(run_all, args.quick, backend=args.backend))
    return 0


def client_main(
    prog: str,
    description: str,
    run_all: Callable[[bool, str], Awaitable[dict[str, Any]]],
    argv: list[str] | None,
    *,
    backend_help: str,
    log_level: int | None = None,
) -> int:
    """``main`` of a module that starts the bridge in processes of their own, on the loop ``--backend``
    names (asyncio unless given); this process, the MCP client and load generator, runs on asyncio
    whichever it is, as in the stress suite."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--backend", choices=list(BACKENDS), default="asyncio", help=backend_help)
    parser.add_argument("--quick", action="store_true", help="small sizes: proves it runs, not speed")
    args = parser.parse_args(argv)
    if log_level is not None:
        logging.basicConfig(level=log_level)
    emit(anyio.run(run_all, args.quick, args.backend, backend="asyncio"))
    return 0


Figures = dict[str, Any]
Row = tuple[str, str, str, str]
"""A table's row: figure, asyncio's cell, trio's cell, goal."""
Spec = tuple[str, str, str]
"""A row to fill in: the figure, its cell and its goal, with ``{fields}`` named after figures."""


def parse_specs(text: str) -> list[Spec]:
    """A table's rows written one a line as ``figure | cell | goal`` (the goal may be empty; a long row
    goes on with a backslash at the end of the source line). The figure keeps its indent: ``  ...``
    marks a row that details the one above."""
    parsed: list[Spec] = []
    for line in text.strip("\n").splitlines():
        figure, cell, goal = line.split("|")
        parsed.append((figure.rstrip(), cell.strip(), goal.strip()))
    return parsed


def ran(a: Figures, t: Figures) -> Figures:
    """The figures of a backend that ran, for what both share (sizes, counts)."""
    return t if isinstance(a, NotRun) else a


def filled_rows(
    specs: list[Spec], a: Figures, t: Figures, cell: Callable[[str, Figures], str] = str.format_map
) -> list[Row]:
    """Rows filled in: a figure's fields from a backend that ran, a cell's by ``cell`` from each backend's."""
    both = ran(a, t)
    return [(figure.format_map(both), cell(c, a), cell(c, t), goal) for figure, c, goal in specs]


def table(title: str, rows: list[Row], figures: dict[str, Any] | None = None) -> str:
    """rows: (figure, asyncio, trio, goal); a backend whose ``figures`` are :class:`NotRun` reads "not run"."""
    header = ("figure", "asyncio", "trio", "goal")
    skipped = [i + 1 for i, b in enumerate(BACKENDS) if figures is not None and isinstance(figures.get(b), NotRun)]
    if skipped:
        rows = [tuple("not run (quick)" if i in skipped else c for i, c in enumerate(r)) for r in rows]  # type: ignore[misc]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([f"### {title}", "", line, rule, *body])


_MUST_BE_ZERO = frozenset({"lost", "leaked", "leftover"})


def problems(payload: Any, where: str = "") -> list[str]:
    """Figures that say a reply was lost or a process leaked (any number named *lost*, *leaked* or
    *leftover* that is not 0): speed is never checked, but these are correctness, in quick runs too."""
    found: list[str] = []
    if isinstance(payload, dict):
        for key, value in payload.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                if _MUST_BE_ZERO & set(str(key).split("_")) and value != 0:
                    found.append(f"{path} = {value}")
            else:
                found += problems(value, path)
    return found


def results_dir(quick: bool) -> Path:
    """Where a run's files go: a quick run (CI smoke) never overwrites the full run's figures."""
    return RESULTS / "quick" if quick else RESULTS


def _without_not_run(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_not_run(v) for k, v in value.items() if not isinstance(v, NotRun)}
    return value


def write_json(name: str, payload: dict[str, Any]) -> Path:
    payload = _without_not_run(payload)
    folder = results_dir(bool(payload.get("quick")))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(payload), indent=2) + b"\n")
    return path


def read_json(path: Path) -> Any:
    return msgspec.json.decode(path.read_bytes())
