"""Side-by-side benchmarks: each group has a baseline row and an msrcnn_fast row, measured in
the same run. At the end a table gives the speedups (baseline median / ours); a group with a
target (minimum speedup) below it, or an msrcnn_fast row with a time limit above it, fails
the run."""

import pytest
import torch

BASELINE = "baseline"
OURS = "msrcnn_fast"


def pytest_collection_modifyitems(config, items):
    """Benchmarks marked `cuda` skip without a CUDA GPU and the CUDA kernels (as in tests/)."""
    import msrcnn_fast

    if torch.cuda.is_available() and "cuda" in msrcnn_fast.build_info()["backends"]:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and the CUDA kernels (FORCE_CUDA=1 build)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def measure(benchmark, fn, *, impl, group, target=None, limit=None, rounds=5):
    """Times `fn` as row `impl` of `group`.

    target: the speedup over the baseline row ours must reach; limit: the median time in
    seconds ours must stay under (for targets stated as absolute times).
    """
    benchmark.group = group
    benchmark.extra_info.update(impl=impl, target=target, limit=limit)
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
        if OURS not in impls:
            continue
        ours = impls[OURS].stats.median
        base = impls[BASELINE].stats.median if BASELINE in impls else None
        info = impls[OURS].extra_info
        rows.append((group, base, ours, base / ours if base else None, info.get("target"), info.get("limit")))
    return rows


def _missed(row):
    _, _, ours, speedup, target, limit = row
    return (target is not None and speedup is not None and speedup < target) or (limit is not None and ours > limit)


def pytest_sessionfinish(session, exitstatus):
    if any(_missed(row) for row in _speedups(session.config)) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = _speedups(config)
    if not rows:
        return
    terminalreporter.section("speedup of msrcnn_fast over the baseline (medians, same run)")
    terminalreporter.write_line(f"{'group':<66} {'baseline':>10} {'ours':>10} {'speedup':>8}  target")
    for row in rows:
        group, base, ours, speedup, target, limit = row
        wanted = " ".join(
            ([f">= {target:.1f}x"] if target is not None else []) + ([f"<= {limit * 1e3:.0f}ms"] if limit else [])
        )
        verdict = f"{wanted} {'MISSED' if _missed(row) else 'ok'}" if wanted else ""
        base_text = f"{base * 1e3:>8.1f}ms" if base else f"{'-':>10}"
        speedup_text = f"{speedup:>7.2f}x" if speedup else f"{'-':>8}"
        terminalreporter.write_line(f"{group:<66} {base_text} {ours * 1e3:>8.1f}ms {speedup_text}  {verdict}")
