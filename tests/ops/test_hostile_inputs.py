"""Hostile inputs for every public op (issue 12): each case in its own process, 10 s at most.

A case ends in an exception that names the offending argument or in the result the op's
docstring documents; never a crash, never a hang. The cases are in hostile_cases.py, the
harness (a forkserver child per case) in hostile_harness.py.
"""

import pytest

from tests.ops.hostile_cases import CASES
from tests.ops.hostile_harness import run_case


@pytest.mark.parametrize(("op", "case"), [(c.op, c.name) for c in CASES.values()])
def test_hostile(op, case):
    outcome = run_case("tests.ops.hostile_cases", "CASES", f"{op}-{case}")
    assert outcome.ok, str(outcome)


def probe(name, timeout=10.0):
    return run_case("tests.ops.hostile_cases", "PROBES", f"probe-{name}", timeout=timeout)


def test_harness_reports_a_hang():
    outcome = probe("hang", timeout=1.5)
    assert outcome.verdict == "hang" and outcome.seconds < 5, str(outcome)


@pytest.mark.parametrize(("name", "signal_name"), [("segfault", "SIGSEGV"), ("abort", "SIGABRT")])
def test_harness_reports_a_crash(name, signal_name):
    outcome = probe(name)
    assert outcome.verdict == "crash" and signal_name in outcome.detail, str(outcome)


def test_harness_reports_an_exit_without_a_verdict():
    outcome = probe("exit_without_verdict")
    assert outcome.verdict == "died" and "code 3" in outcome.detail, str(outcome)


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("wrong_result", "wrong result"),
        ("unnamed_argument", "does not name boxes"),
        ("missing_error", "returned instead of raising ValueError"),
    ],
)
def test_harness_reports_a_failed_case(name, detail):
    outcome = probe(name)
    assert outcome.verdict == "fail" and detail in outcome.detail, str(outcome)


def test_children_import_this_checkout():
    outcome = probe("imports_this_checkout")
    assert outcome.ok, str(outcome)
