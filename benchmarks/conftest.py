"""Side-by-side benchmarks: each group has a baseline row and an msrcnn_fast row, measured in
the same run (medians compared). A group states what ours must reach, as one of

* target: a speedup, baseline median / ours >= target (the baseline computes the same thing);
* time_ratio: ours median / baseline median <= time_ratio (targets stated as a fraction of the
  baseline's time, and baselines that are not the same computation: a memory-traffic floor,
  another algorithm; such a ratio is not a speedup);
* limit: ours median <= limit seconds (targets stated as absolute times).

The row that completes a group checks it and fails with a message naming the target and the
measured ratio, so `pytest benchmarks` (`make bench`) fails exactly when a target is missed.
At the end a table lists every group, its ratio and its verdict; with MSRCNN_BENCH_ROWS=PATH the
rows are also appended to PATH as JSON lines (tools/gpu_check.sh's report reads them).
"""

import json
import os

import pytest
import torch

BASELINE = "baseline"
OURS = "msrcnn_fast"

# group -> {impl: median seconds, "requirement": dict}; filled by measure() in this session.
_GROUPS = {}


def pytest_collection_modifyitems(config, items):
    """Benchmarks marked `cuda` skip without a CUDA GPU and the CUDA kernels (as in tests/)."""
    import msrcnn_fast

    if torch.cuda.is_available() and "cuda" in msrcnn_fast.build_info()["backends"]:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and the CUDA kernels (FORCE_CUDA=1 build)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def measure(benchmark, fn, *, impl, group, target=None, time_ratio=None, limit=None, rounds=5, warmup_rounds=1):
    """Times `fn` as row `impl` (BASELINE or OURS) of `group`; returns fn's result.

    target: the speedup over the baseline row ours must reach; time_ratio: the largest
    ours / baseline time allowed (see the module's note); limit: the median time in seconds
    ours must stay under. Give the same requirement to both rows of a group. Once both rows
    have run, the requirement is checked and a miss fails the test that completed the group.
    warmup_rounds: untimed calls first (give both rows the same).
    """
    benchmark.group = group
    benchmark.extra_info.update(impl=impl, target=target, time_ratio=time_ratio, limit=limit)
    result = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)
    if benchmark.stats is not None:  # None under --benchmark-disable
        entry = _GROUPS.setdefault(group, {})
        entry[impl] = benchmark.stats.stats.median
        if target is not None or time_ratio is not None or limit is not None:
            entry["requirement"] = dict(target=target, time_ratio=time_ratio, limit=limit)
        row = _row(group, entry)
        if row is not None and _missed(row):
            pytest.fail(f"{group}: {_measured(row)}, target {_wanted(row)}: MISSED", pytrace=False)
    return result


def _row(group, entry):
    """(group, baseline, ours, requirement) once ours has run, else None."""
    if OURS not in entry:
        return None
    return group, entry.get(BASELINE), entry[OURS], entry.get("requirement", {})


def _missed(row):
    _, base, ours, req = row
    if req.get("limit") is not None and ours > req["limit"]:
        return True
    if base is None:
        return False
    if req.get("target") is not None and base / ours < req["target"]:
        return True
    return req.get("time_ratio") is not None and ours / base > req["time_ratio"]


def _measured(row):
    _, base, ours, req = row
    if base is None:
        return f"ours {ours * 1e3:.1f} ms"
    if req.get("time_ratio") is not None:
        return f"time {ours / base:.2f}x the baseline's ({ours * 1e3:.1f} / {base * 1e3:.1f} ms)"
    return f"speedup {base / ours:.2f}x ({base * 1e3:.1f} / {ours * 1e3:.1f} ms)"


def _wanted(row):
    req = row[3]
    parts = []
    if req.get("target") is not None:
        parts.append(f"speedup >= {req['target']:g}x")
    if req.get("time_ratio") is not None:
        parts.append(f"time <= {req['time_ratio']:.2f}x the baseline's")
    if req.get("limit") is not None:
        parts.append(f"<= {req['limit'] * 1e3:.0f} ms")
    return ", ".join(parts)


def _rows():
    return [row for group, entry in sorted(_GROUPS.items()) if (row := _row(group, entry)) is not None]


def record(group, seconds):
    """A row of ours alone (no baseline, no target), e.g. a latency next to a paper's figure."""
    _GROUPS.setdefault(group, {})[OURS] = seconds


def pytest_sessionfinish(session, exitstatus):
    if any(_missed(row) for row in _rows()) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    path = os.environ.get("MSRCNN_BENCH_ROWS")
    if path:  # the rows as JSON lines, appended (tools/gpu_check.sh runs several sessions into one file)
        with open(path, "a", encoding="utf-8") as file:
            for row in _rows():
                group, base, ours, req = row
                entry = dict(group=group, baseline_s=base, ours_s=ours, requirement=req, missed=_missed(row))
                file.write(json.dumps(entry) + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = _rows()
    if not rows:
        return
    terminalreporter.section("msrcnn_fast against the baseline row of each group (medians, same run)")
    width = max(len(row[0]) for row in rows)
    terminalreporter.write_line(f"{'group':<{width}} {'baseline':>10} {'ours':>10}  {'measured':<19} target")
    for row in rows:
        group, base, ours, req = row
        if base is None:
            measured = ""
        elif req.get("time_ratio") is not None:
            measured = f"time {ours / base:.2f}x base"
        else:
            measured = f"speedup {base / ours:.2f}x"
        wanted = _wanted(row)
        verdict = f"{wanted}: {'MISSED' if _missed(row) else 'ok'}" if wanted else "(no target)"
        base_text = f"{base * 1e3:>8.1f}ms" if base else f"{'-':>10}"
        terminalreporter.write_line(f"{group:<{width}} {base_text} {ours * 1e3:>8.1f}ms  {measured:<19} {verdict}")
