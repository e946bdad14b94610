"""Entry point of the benchmark suite: ``python -m benchmarks [SCENARIO ...] [--quick]``.

Benchmarks are run on purpose, not by the tests. Each group prints a table and
writes JSON under ``benchmarks/results/``; a run of every group also writes ``run.json``,
the whole run in one file (machine, versions, wall time, every group's parameters and figures).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks import _report


def _run_backends(module: str, quick: bool) -> dict[str, dict[str, Any]]:
    """One fresh interpreter per backend, one after the other; ``--quick`` runs one backend (see
    :func:`benchmarks._report.backends`)."""
    extra = ["--quick"] if quick else []
    index = list(SCENARIOS).index(module.rsplit(".", 1)[-1])
    ran = {b: _report.run_child(module, "--backend", b, *extra) for b in _report.backends(quick, index)}
    return _report.with_not_run(ran)


# Each group's table, a row a line: figure | cell | goal (see benchmarks._report.parse_specs).

_RUNTIME = _report.parse_specs(
    """
ask round trip, median | {ask_rtt_median_us:.1f} µs | < 30 µs (asyncio)
ask round trip, p99 | {ask_rtt_p99_us:.1f} µs |
asks/s, 64 callers, 1 actor | {ask_throughput_per_s_64_callers:,.0f} |
{queued_in_flight_asks:,.0f} asks across 10 actors (64 served each, rest queued): completed / lost | \
{queued_in_flight_completed:,.0f} / {queued_in_flight_lost:.0f} | all / 0
  ... memory per ask (sample of {queued_memory_asks:,.0f}, same share queued) | \
{queued_bytes_per_in_flight_ask_bridge:,.0f} B | < 2 KB
{in_flight_asks:,.0f} asks all accepted at once (a task each): completed / lost | \
{in_flight_completed:,.0f} / {in_flight_lost:.0f} | all / 0
  ... memory per ask (bridge only / incl. caller task) | \
{bytes_per_in_flight_ask_bridge:,.0f} / {bytes_per_in_flight_ask_total:,.0f} B |
crash -> serving again, median | {restart_to_serving_median_us:.1f} µs | < 1 ms
crash -> serving again, p99 | {restart_to_serving_p99_us:.1f} µs |
"""
)

_LLM = _report.parse_specs(
    """
4 models x 4 slots @ 50 ms, 256 callers: req/s | {throughput_req_per_s:,.0f} | 320 = server-bound limit
  ... as share of the server-bound limit | {throughput_ratio:.1%} | >= 95 %
  ... as share of bare httpx on the same workload | {throughput_ratio_to_bare_httpx:.1%} |
  ... failed requests | {throughput_failures:.0f} | 0
cold cache, 100 concurrent validations: listings | {cold_cache_listing_requests:.0f} | 1
cached validation inside the registry, median | {validation_in_registry_median_us:.1f} µs | < 20 µs
cached validation as an ask, median | {validation_ask_median_us:.1f} µs |
cancel -> server sees disconnect, p50 | {cancel_to_disconnect_p50_ms:.2f} ms |
cancel -> server sees disconnect, p99 | {cancel_to_disconnect_p99_ms:.2f} ms | < 20 ms
registry + worker added over bare httpx, median | {added_median_us:.0f} µs | < 300 µs
server down, breaker open: call answered, p50 | {fail_fast_p50_ms:.2f} ms | < 50 ms
server down, breaker open: call answered, p99 | {fail_fast_p99_ms:.2f} ms |
1 model, 1 server x 4 slots @ 100 ms, 128 callers: req/s | {one_server_req_per_s:.0f} | 40 = limit
  ... on 2 servers x 4 slots: req/s | {two_servers_req_per_s:.0f} | 80 = limit
  ... 2 servers over 1 | {two_servers_speedup:.2f} x | >= 1.8 x
  ... failed calls | {two_servers_failures:.0f} | 0
"""
)

_PLANNER = _report.parse_specs(
    """
loop's own time per round, median | {loop_overhead_per_round_median_ms:.2f} ms | < 1 ms
loop's own time per round, p99 | {loop_overhead_per_round_p99_ms:.2f} ms |
runs x rounds (tool calls) | {runs:.0f} x {rounds_per_run:.1f} ({tool_calls:.0f}) |
total time | {total_s:.2f} s |
bound set by the model slots | {slot_bound_s:.2f} s |
share not spent in the model (bridge + tools) | {bridge_share:.1%} |
failed tool calls | {failed_tool_calls:.0f} | 0
"""
)

_CHILDREN = _report.parse_specs(
    """
child killed mid-call -> caller has its error, median | {crash_to_error_ms_median:.1f} ms | < 100 ms
  ... worst | {crash_to_error_ms_max:.1f} ms | < 100 ms
restart -> next call succeeds (0.1 s backoff + start) | {restart_to_call_ok_ms_median:.0f} ms |
kill-and-restart cycles | {kill_cycles:.0f} | 100
  ... leftover processes / lost replies | {kill_cycles_leftover_processes} / {kill_cycles_lost_replies} | 0 / 0
config written -> added server callable, median | {reload_to_callable_ms_median:.0f} ms | < 1 s
64 concurrent call_tool on one child: calls/s (bridge) | {concurrent_throughput_per_s_bridge:,.0f} |
  ... calls/s, plain SDK session (direct) | {concurrent_throughput_per_s_direct:,.0f} |
  ... latency the bridge adds, median | {concurrent_bridge_added_ms_median:.1f} ms |
"""
)

_FRONTEND = _report.parse_specs(
    """
initialize from process start, median (no LLM server) | {initialize_no_server_median_s:.2f} s | <= 1.0 s
  ... worst | {initialize_no_server_max_s:.2f} s |
added over bare httpx at 64 concurrent | stress table | < 2 / 10 ms
8 models x 4 slots @ 100 ms, 64 callers: req/s | {throughput_req_per_s:.0f} |
  ... as share of the server-bound limit | {throughput_ratio:.1%} | >= 90 %
  ... failed calls | {throughput_failures:.0f} | 0
"""
)

_SHARED = _report.parse_specs(
    """
initialize through a relay, warm (attach), median | {initialize_warm_median_ms:.0f} ms | < 100 ms
  ... worst | {initialize_warm_max_ms:.0f} ms |
initialize through a relay, cold (starts the bridge) | {initialize_cold_median_s:.2f} s |
latency a relay adds (bridge_status, p50) | {relay_added_p50_ms:.2f} ms | < 0.5 ms
4 sessions x 64 callers, 8 models x 4 slots @ 100 ms: req/s | {throughput_req_per_s:.0f} |
  ... as share of the server-bound limit (320/s) | {throughput_ratio:.1%} | >= 90 %
  ... most generating at once per model (simulator) | {sim_max_generating_per_model:.0f} | <= 4
  ... most waiting in the simulator's own queue | {sim_max_queued_per_model:.0f} | 0
  ... failed calls | {throughput_failures:.0f} | 0
fairness: session B's wait while A floods a batch, p50 | {fairness_b_wait_p50_service_times:.2f} service times | about 1
  ... worst | {fairness_b_wait_max_service_times:.2f} service times |
  ... first come first served would wait | {fairness_fifo_wait_estimate_service_times:.0f} |
"""
)

_REAL_LLAMA = _report.parse_specs(
    """
bridge's LLMClient: req/s | {bridge_req_per_s:.2f} | within 5 % of bare httpx
  ... bare httpx: req/s | {bare_httpx_req_per_s:.2f} |
bridge's LLMClient: generated tokens/s | {bridge_tokens_per_s:.0f} |
  ... bare httpx: generated tokens/s | {bare_httpx_tokens_per_s:.0f} |
bridge's LLMClient: client CPU per request | {bridge_bridge_cpu_ms_per_req:.1f} ms |
  ... bare httpx: client CPU per request | {bare_httpx_bridge_cpu_ms_per_req:.1f} ms |
failed requests (bridge / bare httpx) | {bridge_failures:.0f} / {bare_httpx_failures:.0f} | 0 / 0
"""
)

_JOBS = _report.parse_specs(
    """
{jobs:,.0f} background chats at once over {models:.0f} models: finished / lost | \
{finished_with_result:,.0f} / {lost:.0f} | all / 0
  ... all submitted (each answered with its job id) | {submit_all_s:.2f} s |
  ... all finished (server-bound limit 3.1 s) | {all_done_s:.2f} s |
job_status under that load, p50 | {status_p50_ms:.1f} ms |
job_status under that load, p99 | {status_p99_ms:.1f} ms |
memory per finished job retained | {retained_bytes_per_job:,.0f} B |
  ... left per job once they expired (pools) | {after_ttl_bytes_per_job:,.0f} B |
"""
)

GROUPS: dict[str, tuple[str, list[_report.Spec]]] = {
    "frontend": ("MCP front end (real stdio: client -> serve -> actors -> HTTP)", _FRONTEND),
    "runtime": ("Actor runtime", _RUNTIME),
    "llm": ("LLM path (registry + workers + client, simulator out of process)", _LLM),
    "planner": ("Autonomous runs (4 models x 4 slots @ 100 ms, 2 real stdio child servers)", _PLANNER),
    "children": ("Child MCP servers (real stdio children)", _CHILDREN),
    "real_llama": (
        "Real llama.cpp server (SmolLM2-135M, {slots:.0f} slots; {requests:.0f} requests x "
        "{tokens_per_request:.0f} tokens, median of {rounds:.0f} interleaved rounds)",
        _REAL_LLAMA,
    ),
    "shared": ("Shared mode (serve --shared relays into one shared bridge)", _SHARED),
    "jobs": ("Jobs (in-process bridge, MCP in-memory client; 8 models x 4 slots @ 100 ms)", _JOBS),
}
"""Each group but stress: its table's title and rows (``{fields}`` in the title and a row's figure are filled in
from a backend that ran, in a row's cell from each backend's figures)."""


def _group(name: str, quick: bool) -> str:
    """Run one group's module on its backends, write its JSON and return its table."""
    results = _run_backends(f"benchmarks.{name}", quick)
    _report.write_json(name, {"machine": _report.machine(), "quick": quick, "figures": results})
    title, specs = GROUPS[name]
    a, t = results["asyncio"], results["trio"]
    return _report.table(title.format_map(_report.ran(a, t)), _report.filled_rows(specs, a, t), results)


def stress(quick: bool, only: list[str] | None = None) -> str:
    from benchmarks.stress import stress_table

    return stress_table(quick, only)


SCENARIOS: dict[str, Callable[[bool], str]] = {name: functools.partial(_group, name) for name in GROUPS}
SCENARIOS["stress"] = stress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], help="default: all")
    parser.add_argument("--quick", action="store_true", help="small sizes: proves the suite runs, not speed")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="STRESS_SCENARIO",
        help="stress: run only these scenarios (e.g. batch soak); the others' figures are kept from the last run",
    )
    args = parser.parse_args(argv)
    names = args.scenarios or list(SCENARIOS)
    groups: dict[str, Callable[[bool], str]] = dict(SCENARIOS)
    if args.only:
        groups["stress"] = functools.partial(stress, only=args.only)
    start = time.perf_counter()

    def timed(name: str) -> str:
        began = time.perf_counter()
        table = groups[name](args.quick)
        print(f"{name}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
        return table

    if args.quick:
        # A smoke run asserts nothing about speed: every group at once, to stay under a minute.
        with ThreadPoolExecutor(len(names)) as pool:
            futures = [pool.submit(timed, name) for name in names]
            tables = [f.result() for f in futures]
    else:
        tables = []
        for name in names:
            tables.append(timed(name))
            print(tables[-1], flush=True)
            print()
    if args.quick:
        print("\n\n".join(tables), flush=True)
    took = time.perf_counter() - start
    folder = _report.results_dir(args.quick)
    print(f"JSON written under {folder}; took {took:.0f} s", file=sys.stderr)
    results = {name: _report.read_json(folder / f"{name}.json") for name in names}
    if not args.scenarios and not args.only:
        whole = {"machine": _report.machine(), "quick": args.quick, "took_s": round(took, 1), "groups": results}
        _report.write_json("run", whole)
    found = [p for name, data in results.items() for p in _report.problems(data, name)]
    if found:
        print("Lost replies or leaked processes:", *found, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
