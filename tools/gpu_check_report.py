"""Writes the report of tools/gpu_check.sh: every figure of a GPU check in one markdown file.

    python tools/gpu_check_report.py LOG_DIR REPORT.md

LOG_DIR is the check's folder: info.txt (machine, versions, build_info, kernels), steps.txt
(each step's time and exit status), cuda_tests.log and cpu_tests.log (pytest), rows_*.jsonl
(benchmark rows, benchmarks/conftest.py with MSRCNN_BENCH_ROWS), demo50.log and
demo50/metrics.jsonl (the 50-iteration AMP training run of the demo config on the GPU, then
its evaluation). A part that did not run is reported as missing, not left out.
"""

import json
import os
import re
import statistics
import sys

ROW_FILES = {
    "rows_cuda.jsonl": "CUDA benchmarks (ours against the baseline in the same run)",
    "rows_cpu_avx2.jsonl": "CPU benchmarks, AVX2 build, 2 cores",
    "rows_cpu_avx512.jsonl": "CPU benchmarks, AVX-512 build, 2 cores",
}
TEST_LOGS = {"cuda_tests.log": "CUDA tests (`-m cuda`)", "cpu_tests.log": "CPU op and kernel tests"}


def _read(path):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as file:
        return file.read()


def _pytest_summary(text):
    """The last line pytest prints ("== 12 passed, 1 failed in 3.2s ==") without its rulers."""
    for line in reversed(text.strip().splitlines()):
        if re.search(r"\b(passed|failed|error|errors|skipped|deselected|no tests ran)\b", line):
            return line.strip("= ").strip()
    return "no pytest summary (cut short?)"


def _failures(text, limit=20):
    lines = [line.strip() for line in text.splitlines() if re.match(r"^(FAILED|ERROR) ", line)]
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def tests_section(log_dir):
    out = ["## Tests", ""]
    for name, title in TEST_LOGS.items():
        text = _read(os.path.join(log_dir, name))
        if text is None:
            out.append(f"- {title}: did not run")
            continue
        out.append(f"- {title}: {_pytest_summary(text)}")
        out += [f"  - {line}" for line in _failures(text)]
    return out + [""]


def _ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.2f} ms"


def _measured(row):
    base, ours, req = row.get("baseline_s"), row["ours_s"], row.get("requirement") or {}
    if base is None:
        return ""
    if req.get("time_ratio") is not None:
        return f"time {ours / base:.2f}x"
    return f"speedup {base / ours:.2f}x"


def _target(row):
    req = row.get("requirement") or {}
    parts = []
    if req.get("target") is not None:
        parts.append(f">= {req['target']:g}x")
    if req.get("time_ratio") is not None:
        parts.append(f"time <= {req['time_ratio']:g}x")
    if req.get("limit") is not None:
        parts.append(f"<= {req['limit'] * 1e3:g} ms")
    if not parts:
        return "(no target)"
    return ", ".join(parts) + (": **MISSED**" if row.get("missed") else ": ok")


def rows_section(log_dir):
    out = []
    for name, title in ROW_FILES.items():
        text = _read(os.path.join(log_dir, name))
        out += [f"## {title}", ""]
        if text is None:
            out += ["did not run", ""]
            continue
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        out += ["| group | baseline | ours | measured | target |", "|---|---:|---:|---|---|"]
        for row in rows:
            measured, target = _measured(row), _target(row)
            out.append(
                f"| {row['group']} | {_ms(row.get('baseline_s'))} | {_ms(row['ours_s'])} | {measured} | {target} |"
            )
        missed = sum(1 for row in rows if row.get("missed"))
        out += ["", f"{len(rows)} rows, {missed} missed", ""]
    return out


def training_section(log_dir):
    out = ["## Training: 50 iterations of the demo config on the GPU (AMP), then its evaluation", ""]
    metrics = _read(os.path.join(log_dir, "demo50", "metrics.jsonl"))
    log = _read(os.path.join(log_dir, "demo50.log"))
    if metrics is None:
        out += ["did not run" if log is None else "no metrics were written; the end of its log:", ""]
        if log is not None:
            out += ["```", *log.strip().splitlines()[-15:], "```", ""]
        return out
    records = [json.loads(line) for line in metrics.splitlines() if line.strip()]
    steady = [r["seconds_per_iter"] for r in records[1:]] or [r["seconds_per_iter"] for r in records]
    last = records[-1]
    losses = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.startswith("loss"))
    out += [
        f"- iterations: {last['iteration']}; seconds per iteration (median after the first log): "
        f"{statistics.median(steady):.3f}",
        f"- losses at the end: {losses}",
    ]
    table = _evaluation_table(log or "")
    out += ["", "```", *table, "```", ""] if table else ["- evaluation: no table in demo50.log", ""]
    return out


def _evaluation_table(log):
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("AP") and "AP50" in line:
            return [raw.rstrip() for raw in lines[i : i + 8] if raw.strip()]
    return []


def write_report(log_dir, report_path):
    info = _read(os.path.join(log_dir, "info.txt"))
    steps = _read(os.path.join(log_dir, "steps.txt"))
    out = ["# GPU check", ""]
    out += ["## Machine and build", "", "```", *(info or "info.txt missing").strip().splitlines(), "```", ""]
    out += ["## Steps", "", "```", *(steps or "steps.txt missing").strip().splitlines(), "```", ""]
    out += tests_section(log_dir) + rows_section(log_dir) + training_section(log_dir)
    os.makedirs(os.path.dirname(os.path.abspath(report_path)), exist_ok=True)
    with open(report_path, "w", encoding="utf-8") as file:
        file.write("\n".join(out).rstrip() + "\n")
    return report_path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python tools/gpu_check_report.py LOG_DIR REPORT.md", file=sys.stderr)
        return 2
    print(f"wrote {write_report(argv[0], argv[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
