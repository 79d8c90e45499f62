"""Runs one hostile-input case in its own process, with a time limit (issue 12).

A case is a small function registered under (op, name). It either must raise (``raises``:
the exception types allowed, ``names``: the words its message must contain, i.e. the
argument it is about) or must return after checking the op's result itself (shape, dtype,
the values the op's docstring documents), raising :class:`Mismatch` where they differ.

Each case runs in a child of a multiprocessing "forkserver" whose server has imported
torch, torchvision and msrcnn_fast once, so a case costs a fork, not ~3 s of imports. The
child sends its verdict through a pipe; the parent kills it after ``timeout`` seconds
("hang") and reads a negative exit code as a crash ("crash (signal N)").
"""

import functools
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

TIMEOUT = 10.0  # seconds a case may take, the bound
_MESSAGE_LIMIT = 2000  # characters of an exception message sent back (a pipe write must not block)


class Mismatch(Exception):
    """A result that is not the documented one (raised by a case's own checks)."""


@dataclass(frozen=True)
class Case:
    op: str
    name: str
    run: Callable[[], object]
    raises: tuple[type[BaseException], ...] = ()  # empty: the case must return
    names: tuple[str, ...] = ()  # each must appear in the message, as a word or with an index: boxes[0]

    @property
    def key(self) -> str:
        return f"{self.op}-{self.name}"


@dataclass(frozen=True)
class Outcome:
    verdict: str  # "ok", "fail", "hang", "crash", "died"
    detail: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def __str__(self) -> str:
        return f"{self.verdict} after {self.seconds:.2f} s: {self.detail}"


class Registry(dict):
    """Cases by key ("op-name"), registered with the :meth:`case` decorator."""

    def case(self, op: str, name: str, *, raises=(), names=()):
        if isinstance(raises, type):
            raises = (raises,)
        if isinstance(names, str):
            names = (names,)

        def register(fn):
            c = Case(op, name, fn, tuple(raises), tuple(names))
            if c.key in self:
                raise KeyError(f"case {c.key} registered twice")
            self[c.key] = c
            return fn

        return register


def names_argument(message: str, name: str) -> bool:
    """Whether ``message`` names ``name`` as a word (``boxes``, ``boxes[1]``, not ``unboxes``)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message) is not None


def verdict_of(case: Case) -> tuple[str, str]:
    """Runs the case here and judges it: ("ok" | "fail", detail)."""
    try:
        case.run()
    except Mismatch as error:
        return "fail", f"wrong result: {error}"
    except BaseException as error:  # noqa: BLE001 - every exception is a verdict here
        message = f"{type(error).__name__}: {error}"[:_MESSAGE_LIMIT]
        if not case.raises:
            tail = "".join(traceback.format_exception(error)[-3:])[-_MESSAGE_LIMIT:]
            return "fail", f"raised {message}\n{tail}"
        if not isinstance(error, case.raises):
            expected = " or ".join(t.__name__ for t in case.raises)
            return "fail", f"expected {expected}, raised {message}"
        missing = [n for n in case.names if not names_argument(str(error), n)]
        if missing:
            return "fail", f"the message does not name {', '.join(missing)}: {message}"
        return "ok", message
    if case.raises:
        expected = " or ".join(t.__name__ for t in case.raises)
        return "fail", f"returned instead of raising {expected}"
    return "ok", "result as documented"


def _child(conn, registry_module: str, registry_name: str, key: str) -> None:
    import importlib

    registry = getattr(importlib.import_module(registry_module), registry_name)
    try:
        conn.send(verdict_of(registry[key]))
    finally:
        conn.close()
    os._exit(0)  # no interpreter teardown: only the case itself is under test


@functools.cache
def _context():
    ctx = multiprocessing.get_context("forkserver")
    # Imported once by the server; every case forks from it. sys.path travels with the
    # server's start (multiprocessing passes it), so the children import this checkout.
    ctx.set_forkserver_preload(["torch", "torchvision", "msrcnn_fast.ops", "tests.ops.hostile_cases"])
    # Start the server (its imports take seconds) before any case's clock runs.
    warm_up = ctx.Process(target=_noop, name="hostile forkserver warm-up")
    warm_up.start()
    warm_up.join()
    return ctx


def _noop() -> None:
    os._exit(0)


def run_case(registry_module: str, registry_name: str, key: str, timeout: float = TIMEOUT) -> Outcome:
    """Runs registry[key] (the Registry ``registry_name`` of module ``registry_module``) in a
    child process and returns its outcome; never raises for what the child does."""
    ctx = _context()
    reader, writer = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(writer, registry_module, registry_name, key), name=f"hostile {key}")
    start = time.monotonic()
    process.start()
    writer.close()
    try:
        ready = multiprocessing.connection.wait([reader, process.sentinel], timeout)
        report = None
        if reader in ready:
            try:
                report = reader.recv()
            except EOFError:
                report = None
        process.join(max(0.0, timeout - (time.monotonic() - start)))
        seconds = time.monotonic() - start
        if process.exitcode is None:
            process.kill()
            process.join()
            return Outcome("hang", f"no result within {timeout:g} s (killed)", seconds)
        if process.exitcode < 0:
            signame = signal.Signals(-process.exitcode).name
            return Outcome("crash", f"crash (signal {-process.exitcode}, {signame})", seconds)
        if report is None:
            return Outcome("died", f"exited with code {process.exitcode} without a verdict", seconds)
        verdict, detail = report
        return Outcome(verdict, detail, seconds)
    finally:
        reader.close()
