"""The stress suite: end to end through a real MCP client over stdio into ``lmstudio-bridge serve``.

Each scenario is a module with ``main(argv)`` that runs in a fresh interpreter per server backend
(``--backend asyncio|trio``; the load generator itself always runs on asyncio) and prints one JSON
line of figures. :func:`stress_table` runs them all, writes ``benchmarks/results/stress.json`` (and
``stress_throughput.png`` when matplotlib is installed) and returns the tables.

=================  =============================================================================
``throughput``     8 models x 4 slots @ 100 ms, 256 callers: vs the server-bound limit, vs bare
                   httpx, a sweep over callers, and vs a sequential blocking-HTTP MCP server
``latency``        added latency over bare httpx, p50/p99, at 1 and 64 concurrent
``cancel_storm``   1,000 calls cancelled at random points: lost, streams closed, quiesce time
``backpressure``   10,000 calls at once at 16 slots: busy vs queued, peak RSS, none lost
``batch``          ``batch_chat`` fan-out over 8 models
``autonomous``     concurrent autonomous runs over 4 models and two real child servers, vs the slot bound
``chaos``          simulator faults at a rate, child servers killed during autonomous runs: every call
                   ends in a result or a typed error in time
``soak``           steady mixed load: RSS, descriptors, threads, children, tasks sampled; flat or not
=================  =============================================================================
"""

from __future__ import annotations

import math
import string
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks import _report

__all__ = ["SCENARIOS", "format_tables", "stress_table"]

BACKENDS = _report.BACKENDS
Figures = _report.Figures
Row = _report.Row


def _absent(value: Any) -> bool:
    """A figure missing (an older ``stress.json``, a backend left out) or NaN (too few samples)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _both(a: Figures, t: Figures, key: str, fmt: str) -> tuple[str, str]:
    def one(f: Figures) -> str:
        value = f.get(key)
        return "n/a" if _absent(value) else fmt.format(value)

    return one(a), one(t)


def _cell(template: str, f: Figures) -> str:
    """A cell of a scenario's table filled in: one of a single figure reads n/a where that is absent, as in
    :func:`_both`; one of several figures, as :func:`_filled`."""
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    return "n/a" if len(fields) == 1 and _absent(f.get(fields[0])) else template.format_map(f)


def _rows(specs: str) -> Callable[[Figures, Figures], list[Row]]:
    """A scenario's rows from its table, a row a line: figure | cell | goal (see
    :func:`benchmarks._report.parse_specs`)."""
    parsed = _report.parse_specs(specs)
    return lambda a, t: _report.filled_rows(parsed, a, t, _cell)


def _sweep(f: Figures, suffix: str) -> list[tuple[int, float]]:
    """The sweep points ``sweep_<callers><suffix>``, by callers."""
    points = []
    for key, value in f.items():
        parts = key.split("_", 2)
        if parts[0] == "sweep" and parts[1].isdigit() and "_" + parts[2] == suffix:
            points.append((int(parts[1]), float(value)))
    return sorted(points)


def _throughput_rows(a: Figures, t: Figures) -> list[Row]:
    return [
        ("256 callers, 8 models x 4 slots @ 100 ms: req/s", *_both(a, t, "req_per_s", "{:,.0f}"), "320 = limit"),
        ("  ... share of the server-bound limit", *_both(a, t, "ratio_to_limit", "{:.1%}"), ">= 90 %"),
        (
            "  ... worst / best of 3 rounds, req/s",
            *_each(a, t, lambda f: f"{f.get('req_per_s_worst', 0):,.0f} / {f.get('req_per_s_best', 0):,.0f}"),
            "",
        ),
        ("  ... share of bare httpx, same workload", *_both(a, t, "ratio_to_bare_httpx", "{:.1%}"), ""),
        ("  ... bare httpx req/s", *_both(a, t, "bare_httpx_req_per_s", "{:,.0f}"), ""),
        (
            "  ... failed / lost",
            f"{a['failed']:.0f} / {a['lost']:.0f}",
            f"{t['failed']:.0f} / {t['lost']:.0f}",
            "0 / 0",
        ),
        (
            "callers 1/8/32/64/128/256/512: req/s",
            *_each(
                a,
                t,
                lambda f: "/".join(f"{v:.0f}" for _, v in _sweep(f, "_req_per_s")),
            ),
            "plot",
        ),
        ("sequential blocking-HTTP MCP server: req/s", *_both(a, t, "sequential_req_per_s", "{:,.1f}"), ""),
        ("  ... bridge / sequential", *_both(a, t, "ratio_to_sequential", "{:,.1f}x"), ""),
        ("serve RSS after the run", *_both(a, t, "serve_rss_mb", "{:,.0f} MB"), ""),
    ]


_latency_rows = _rows(
    """
1 caller: bare httpx p50 / p99 | {c1_bare_p50_ms:.1f} / {c1_bare_p99_ms:.1f} ms |
1 caller: added p50 | {c1_added_p50_ms:.2f} ms | < 2 ms
1 caller: added p99 | {c1_added_p99_ms:.2f} ms | < 10 ms
64 callers @ 500 ms: bridge p50 / p99 | {c64_bridge_p50_ms:.1f} / {c64_bridge_p99_ms:.1f} ms |
64 callers: bare httpx p50 / p99 | {c64_bare_p50_ms:.1f} / {c64_bare_p99_ms:.1f} ms |
64 callers: added over bare httpx, p50 | {c64_added_p50_ms:.1f} ms | < 2 ms
64 callers: added over bare httpx, p99 | {c64_added_p99_ms:.1f} ms | < 10 ms
64 callers: over the model's 500 ms, p50 | {c64_over_floor_p50_ms:.1f} ms |
64 callers: over the model's 500 ms, p99 | {c64_over_floor_p99_ms:.1f} ms |
lost | {lost:.0f} | 0
"""
)


def _each(a: Figures, t: Figures, fn: Callable[[Figures], str]) -> tuple[str, str]:
    return fn(a), fn(t)


def _filled(a: Figures, t: Figures, template: str) -> tuple[str, str]:
    """``template``'s fields, named after figures, filled in for each backend: a cell reads like its format."""
    return template.format_map(a), template.format_map(t)


_cancel_rows = _rows(
    """
calls cancelled / completed / typed error / lost | \
{cancelled:.0f} / {completed:.0f} / {typed_errors:.0f} / {lost:.0f} | lost 0
simulator: streams closed by the client | {sim_disconnects:.0f} |
simulator: requests still open afterwards | {sim_open_after:.0f} | 0
last cancel -> nothing running or queued | {quiesce_ms:.0f} ms |
afterwards, 32 calls at once (1 per slot): ok, time | {after_ok:.0f}, {after_all_slots_s:.2f} s | 32, ~0.35 s
"""
)


def _backpressure_rows(a: Figures, t: Figures) -> list[Row]:
    def split(f: Figures, p: str) -> str:
        return f"{f[p + '_served']:,.0f} / {f[p + '_busy']:,.0f} / {f[p + '_other_errors']:.0f} / {f[p + '_lost']:.0f}"

    return [
        (
            "all at once, queue 64, 200 ms: served / busy / other / lost",
            split(a, "bounded"),
            split(t, "bounded"),
            "lost 0",
        ),
        ("  ... wall time", *_both(a, t, "bounded_wall_s", "{:.1f} s"), ""),
        ("  ... serve peak RSS", *_both(a, t, "bounded_rss_peak_mb", "{:.0f} MB"), ""),
        (
            f"{a.get('queued_calls', t['queued_calls']):,.0f} at once, queue = burst, 50 ms: "
            "served / busy / other / lost",
            split(a, "queued"),
            split(t, "queued"),
            "all / 0",
        ),
        ("  ... wall time", *_both(a, t, "queued_wall_s", "{:.1f} s"), ""),
        (
            "  ... serve RSS before -> peak",
            *_filled(a, t, "{queued_rss_before_mb:.0f} -> {queued_rss_peak_mb:.0f} MB"),
            "",
        ),
        ("  ... most generating at once (simulator)", *_both(a, t, "queued_sim_max_generating", "{:.0f}"), "<= 16"),
    ]


def _batch_rows(a: Figures, t: Figures) -> list[Row]:
    def split(f: Figures, p: str) -> str:
        counts = [f[p + "_succeeded"], f[p + "_failed"], f[p + "_missing"], f[p + "_lost_calls"]]
        return " / ".join(f"{n:,.0f}" for n in counts)

    def wall(p: str) -> Callable[[Figures], str]:
        return lambda f: f"{f[p + '_s']:.2f} s ({f[p + '_share_of_bound']:.0%} of the slot bound {f['bound_s']:.2f} s)"

    return [
        (
            "ONE batch_chat call: items ok / typed error / missing / lost calls",
            split(a, "single"),
            split(t, "single"),
            "all / 0 / 0 / 0",
        ),
        ("  ... wall time", *_each(a, t, wall("single")), ""),
        (
            f"same items as {a['prompts'] / a['per_call']:.0f} concurrent calls: ok / error / missing / lost",
            split(a, "split"),
            split(t, "split"),
            "all / 0 / 0 / 0",
        ),
        ("  ... wall time", *_each(a, t, wall("split")), ""),
    ]


def _chaos_rows(a: Figures, t: Figures) -> list[Row]:
    def codes(f: Figures) -> str:
        return ", ".join(f"{k[5:]} {v:.0f}" for k, v in sorted(f.items()) if k.startswith("code_")) or "none"

    return [
        (
            "faults: ok / typed error / lost / over budget",
            *_filled(a, t, "{ok:,.0f} / {typed_errors:.0f} / {lost:.0f} / {over_budget:.0f}"),
            "lost 0, over 0",
        ),
        ("  ... typed errors by code", *_each(a, t, codes), ""),
        (
            "  ... faults injected, evictions (simulator)",
            *_filled(a, t, "{sim_faults:.0f}, {sim_evictions:.0f}"),
            "",
        ),
        ("  ... longest call (budget 6 s)", *_both(a, t, "longest_s", "{:.2f} s"), "<= 7 s"),
        (
            "child kills during MCP runs: result / typed error / lost",
            *_filled(a, t, "{runs_result:.0f} / {runs_typed_error:.0f} / {runs_lost:.0f}"),
            "lost 0",
        ),
        (
            "  ... children killed, tool calls failed (typed) of all",
            *_filled(a, t, "{child_kills:.0f}, {tool_calls_failed_typed:.0f} of {tool_calls:.0f}"),
            "",
        ),
        ("  ... longest run (budget 8 s)", *_both(a, t, "runs_longest_s", "{:.2f} s"), "<= 13 s"),
        ("  ... runs over budget + 5 s", *_both(a, t, "runs_over_budget", "{:.0f}"), "0"),
        ("  ... child processes left after serve stopped", *_both(a, t, "leaked_children", "{:.0f}"), "0"),
    ]


_restart_rows = _rows(
    """
calls ok / typed error (actor_crashed) / lost | {ok:,.0f} / {typed_errors:.0f} / {lost:.0f} | lost 0
workers crashed | {crashes:.0f} |
crash -> model serving again, p50 | {recovery_p50_ms:.0f} ms |
crash -> model serving again, max | {recovery_max_ms:.0f} ms |
afterwards, 32 calls at once: ok / lost | {after_ok:.0f} / {after_lost:.0f} | lost 0
"""
)


def _verdict(value: Any) -> str:
    """A soak verdict figure: 1.0 flat, 0.0 grows, None/NaN too few samples to judge (quick runs)."""
    if _absent(value):
        return "too short to judge"
    return "flat" if value else "GROWS"


def _soak_rows(a: Figures, t: Figures) -> list[Row]:
    def trend(key: str, fmt: str) -> Callable[[Figures], str]:
        def one(f: Figures) -> str:
            if key + "_first" not in f:
                return "n/a"
            verdict = _verdict(f.get(key + "_flat"))
            noise = f.get(key + "_noise")
            within = f" of ±{noise:.2f}" if isinstance(noise, float) else ""
            return (
                f"{f[key + '_first']:{fmt}} -> {f[key + '_last']:{fmt}}, "
                f"rise {f[key + '_growth']:+.2f}{within}: {verdict}"
            )

        return one

    def idle(f: Figures) -> str:
        if "tasks_idle_before" not in f:
            return "n/a"
        return f"{f['tasks_idle_before']:.0f} -> {f['tasks_idle_after']:.0f}"

    return [
        (
            "calls ok / cancelled / typed error / lost",
            *_filled(a, t, "{ok:,.0f} / {cancelled:,.0f} / {typed_errors:.0f} / {lost:.0f}"),
            "lost 0",
        ),
        ("serve RSS (MB): first -> last, fitted rise of ± noise", *_each(a, t, trend("rss", ".1f")), "flat"),
        ("open descriptors", *_each(a, t, trend("fds", ".0f")), "flat"),
        ("threads", *_each(a, t, trend("threads", ".0f")), "flat"),
        ("child processes", *_each(a, t, trend("children", ".0f")), "flat (2)"),
        ("tasks in serve's event loop, under load", *_each(a, t, trend("tasks", ".0f")), "flat"),
        ("  ... idle, after a warm-up -> after the load", *_each(a, t, idle), ""),
        (
            "verdict (flat: growth over the steady window within noise, see soak.py)",
            *_each(a, t, lambda f: _verdict(f.get("flat"))),
            "flat",
        ),
    ]


def _autonomous_rows(a: Figures, t: Figures) -> list[Row]:
    return [
        (
            "runs ok / typed error / lost",
            *_filled(a, t, "{runs_ok:.0f} / {runs_typed_error:.0f} / {runs_lost:.0f}"),
            "lost 0",
        ),
        (
            "  ... finished properly (final answer) of all runs",
            *_filled(a, t, "{runs_final_answer:.0f} of {runs_total:.0f}"),
            "all",
        ),
        (
            "  ... rounds per run, min / max",
            *_filled(a, t, "{rounds_min:.0f} / {rounds_max:.0f}"),
            f"{a['rounds'] + 1:.0f} / {a['rounds'] + 1:.0f}",
        ),
        ("wall time vs model-slot bound", *_filled(a, t, "{wall_s:.2f} s vs {bound_s:.2f} s"), ""),
        ("  ... share of the slot bound", *_both(a, t, "share_of_bound", "{:.1%}"), ""),
        ("share of the runs' time not in the model", *_both(a, t, "not_in_model_share", "{:.1%}"), ""),
        (
            "tool calls made / failed",
            *_filled(a, t, "{tool_calls:,.0f} / {tool_calls_failed:.0f}"),
            "failed 0",
        ),
        ("child processes left after serve stopped", *_both(a, t, "leaked_children", "{:.0f}"), "0"),
    ]


SCENARIOS: dict[str, tuple[str, Callable[[Figures, Figures], list[Row]], Callable[[Figures], str]]] = {
    "throughput": (
        "Multi-model throughput through MCP (serve over stdio, simulator out of process)",
        _throughput_rows,
        lambda f: "",
    ),
    "latency": ("Added latency: MCP + serve vs bare httpx, same simulator", _latency_rows, lambda f: ""),
    "cancel_storm": ("Cancellation storm", _cancel_rows, lambda f: f"{f['calls']:,.0f} calls"),
    "backpressure": ("Backpressure: bursts at a model with 16 slots", _backpressure_rows, lambda f: ""),
    "batch": (
        "batch_chat fan-out over 8 models x 4 slots @ 100 ms",
        _batch_rows,
        lambda f: f"{f['prompts']:,.0f} prompts",
    ),
    "restart_storm": (
        "Restart storm: 1 % of requests crash their worker",
        _restart_rows,
        lambda f: f"{f['calls']:,.0f} calls",
    ),
    "autonomous": (
        "Autonomous runs through MCP: 4 models x 4 slots @ 100 ms a turn, two real child servers",
        _autonomous_rows,
        lambda f: f"{f['runs']:.0f} runs x {f['rounds']:.0f} rounds, plus {f['multi_runs']:.0f} over both servers",
    ),
    "chaos": (
        "Chaos: simulator faults at 17 %, child servers killed during autonomous runs",
        _chaos_rows,
        lambda f: f"{f['calls']:,.0f} calls, {f['runs']:.0f} runs",
    ),
    "soak": ("Soak: steady mixed load", _soak_rows, lambda f: f"{f['seconds']:.0f} s, sampled every second"),
}


def _plot(results: dict[str, dict[str, Figures]]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    bounds: list[tuple[int, float]] = []
    for backend, figures in results.get("throughput", {}).items():
        points = _sweep(figures, "_req_per_s")
        ax.plot([c for c, _ in points], [v for _, v in points], marker="o", label=f"bridge (serve on {backend})")
        bounds = _sweep(figures, "_bound_req_per_s")
    ax.plot([c for c, _ in bounds], [v for _, v in bounds], linestyle="--", color="grey", label="server-bound limit")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent MCP callers")
    ax.set_ylabel("requests / s")
    ax.set_title("8 models x 4 slots @ 100 ms, through MCP stdio")
    ax.legend()
    ax.grid(True, alpha=0.3)
    path = _report.RESULTS / "stress_throughput.png"
    _report.RESULTS.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def stress_table(quick: bool, only: list[str] | None = None) -> str:
    """Run every stress scenario on both server backends; return the tables, write the JSON (and plot).

    Full mode runs one scenario process at a time (the figures are about speed). Quick mode proves the
    suite runs and asserts nothing about speed: each scenario on one backend, alternating (see
    :func:`benchmarks._report.backends`), up to four scenario processes at once.
    """
    extra = ["--quick"] if quick else []
    unknown = sorted(set(only or ()) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown stress scenarios {unknown}; there are: {', '.join(SCENARIOS)}")
    names = [n for n in SCENARIOS if not only or n in only]
    order = list(SCENARIOS)
    jobs = [(name, backend) for name in names for backend in _report.backends(quick, order.index(name))]

    def job(name: str, backend: str) -> Figures:
        start = time.perf_counter()
        try:
            figures = _report.run_child(f"benchmarks.stress.{name}", "--backend", backend, *extra)
        except RuntimeError as exc:  # one retry: a scenario process that failed to start serve, say
            print(f"stress: {name} on {backend} failed; retrying once:\n{str(exc)[-800:]}", file=sys.stderr)
            figures = _report.run_child(f"benchmarks.stress.{name}", "--backend", backend, *extra)
            figures["retried"] = 1.0
        figures["scenario_wall_s"] = time.perf_counter() - start
        return figures

    if quick:
        with ThreadPoolExecutor(4) as pool:
            futures = {key: pool.submit(job, *key) for key in jobs}
            done = {key: f.result() for key, f in futures.items()}
    else:
        done = {key: job(*key) for key in jobs}
    results = {n: {b: done[(n, b)] for b in BACKENDS if (n, b) in done} for n in names}
    path = _report.results_dir(quick) / "stress.json"
    payload: dict[str, Any] = {"machine": _report.machine(), "quick": quick, "figures": results, "plot": None}
    if only and path.exists():
        # Re-running some scenarios: keep the others' figures from the last run, and say which are newer.
        previous = _report.read_json(path)
        merged = previous.get("figures", {}) | results
        results = {n: merged[n] for n in SCENARIOS if n in merged}
        rerun = previous.get("rerun", {}) | {n: payload["machine"]["when"] for n in names}
        payload = previous | {"figures": results, "rerun": rerun}
    _report.write_json("stress", payload)
    if "throughput" in results and not quick:
        payload["plot"] = _plot(results)
        _report.write_json("stress", payload)
    return format_tables(results)


def format_tables(results: dict[str, dict[str, Figures]]) -> str:
    """The tables of a run's figures (as in ``benchmarks/results/stress.json``)."""
    tables: list[str] = []
    for name, by_backend in results.items():
        title, rows, note = SCENARIOS[name]
        figures = _report.with_not_run(by_backend)
        a, t = figures["asyncio"], figures["trio"]
        suffix = note(next(iter(by_backend.values())))
        title = f"Stress: {title}" + (f" ({suffix})" if suffix else "")
        tables.append(_report.table(title, rows(a, t), figures))
    return "\n\n".join(tables)
