"""Side-by-side benchmarks: each group has a baseline row and an msrcnn_fast row, measured in
the same run. At the end a table gives the speedups (baseline median / ours); a group with a
target (minimum speedup) below it fails the run."""

import pytest

BASELINE = "baseline"
OURS = "msrcnn_fast"


def measure(benchmark, fn, *, impl, group, target=None, rounds=5):
    """Times `fn` as row `impl` of `group`; `target` is the speedup ours must reach."""
    benchmark.group = group
    benchmark.extra_info.update(impl=impl, target=target)
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)


def _speedups(config):
    session = getattr(config, "_benchmarksession", None)
    if session is None:
        return []
    groups = {}
    for bench in session.benchmarks:
        if bench and "impl" in bench.extra_info:
            groups.setdefault(bench.group, {})[bench.extra_info["impl"]] = bench
    rows = []
    for group, impls in sorted(groups.items()):
        if BASELINE in impls and OURS in impls:
            base, ours = impls[BASELINE].stats.median, impls[OURS].stats.median
            rows.append((group, base, ours, base / ours, impls[OURS].extra_info.get("target")))
    return rows


def pytest_sessionfinish(session, exitstatus):
    missed = [row for row in _speedups(session.config) if row[4] is not None and row[3] < row[4]]
    if missed and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = _speedups(config)
    if not rows:
        return
    terminalreporter.section("speedup of msrcnn_fast over the baseline (medians, same run)")
    terminalreporter.write_line(f"{'group':<58} {'baseline':>10} {'ours':>10} {'speedup':>8}  target")
    for group, base, ours, speedup, target in rows:
        verdict = "" if target is None else f"{target:.1f}x {'ok' if speedup >= target else 'MISSED'}"
        terminalreporter.write_line(
            f"{group:<58} {base * 1e3:>8.1f}ms {ours * 1e3:>8.1f}ms {speedup:>7.2f}x  {verdict}"
        )
