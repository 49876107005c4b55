"""Worker processes that run an oracle, one structure at a time, under a per-structure
timeout. A worker that hangs past the timeout is killed, one that dies (segfault, out of
memory) is reported; either is replaced by a fresh process and the run goes on.

Each worker gets its own pipe: the parent sends ``(key, atoms, charge, multiplicity)`` and
gets back ``(key, "ok", (energy, forces), seconds)`` or ``(key, "error", reason, seconds)``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
import types
from collections import deque
from collections.abc import Iterable, Iterator
from multiprocessing.connection import wait
from typing import Any

from molsym.oracles.base import Oracle, OracleError, describe_error, run_oracle

Task = tuple[str, Any, int, int]  # key, ase.Atoms, charge, multiplicity
Result = tuple[str, str, Any, float]  # key, "ok" | "error", (energy, forces) | reason, seconds
STARTUP_S = 300.0  # a worker that is not ready after this long is an error


def _worker_main(conn, oracle: Oracle) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if task is None:
            return
        key, atoms, charge, multiplicity = task
        start = time.perf_counter()
        try:
            out: Result = (key, "ok", run_oracle(oracle, atoms, charge, multiplicity), 0.0)
        except Exception as err:
            out = (key, "error", describe_error(err), 0.0)
        out = (*out[:3], time.perf_counter() - start)
        try:
            conn.send(out)
        except (BrokenPipeError, OSError):
            return


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _worker_start(oracle: Oracle, threads: int) -> Iterator[None]:
    """While a worker starts: thread variables the user left unset are ``threads``, and the
    parent's ``__main__`` is hidden (spawn would re-run it: a script that imports torch costs
    seconds per worker), unless the oracle refers to it."""
    saved_env = {v: os.environ.get(v) for v in THREAD_VARIABLES}
    for var, value in saved_env.items():
        if value is None:
            os.environ[var] = str(threads)
    main = sys.modules.get("__main__")
    hide = main is not None and b"__main__" not in pickle.dumps(oracle)
    if hide:
        sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if hide:
            sys.modules["__main__"] = main
        for var, value in saved_env.items():
            if value is None:
                os.environ.pop(var, None)


class _Slot:
    """One worker process and the task it is working on."""

    def __init__(self, ctx, oracle: Oracle, threads: int = 1):
        self.ctx_name = ctx.get_start_method()
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, oracle), daemon=True)
        with _worker_start(oracle, threads):
            self.proc.start()
        child.close()
        self.task: Task | None = None
        self.started = 0.0

    def wait_ready(self, timeout_s: float = STARTUP_S) -> None:
        """Block until the worker has started; OracleError (one line) if it cannot."""
        ready = self.conn.poll(timeout_s)
        try:
            message = self.conn.recv() if ready else None
        except (EOFError, OSError):
            message = None
        if message != "ready":
            self.stop(kill=True)
            raise OracleError(
                f"an oracle worker process did not start (exit code {self.proc.exitcode}, "
                f"start method {self.ctx_name!r}); its error is printed above"
            )

    def give(self, task: Task) -> None:
        self.task, self.started = task, time.perf_counter()
        try:
            self.conn.send(task)
        except OSError:  # the worker died while idle: _collect reports it
            pass

    def stop(self, kill: bool = False) -> None:
        if not kill:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


def run_tasks(
    oracle: Oracle,
    tasks: Iterable[Task],
    workers: int = 1,
    timeout_s: float | None = None,
    start_method: str = "spawn",
) -> Iterator[Result]:
    """Yield one result per task, in completion order, from ``workers`` processes.

    ``timeout_s`` is per structure (wall clock, None for no limit). Thread variables
    (``OMP_NUM_THREADS``, ...) that are not set give each worker an equal share of the cores.
    Closing the generator early (or an exception in the caller) kills the workers.
    """
    pending = deque(tasks)
    if not pending:
        return
    ctx = mp.get_context(start_method)
    slots: list[_Slot] = []
    count = max(1, min(int(workers), len(pending)))
    threads = max(1, (os.cpu_count() or 1) // count)
    try:
        for _ in range(count):
            slots.append(_Slot(ctx, oracle, threads))
        for slot in slots:
            slot.wait_ready()
        while True:
            for slot in slots:
                if slot.task is None and pending:
                    slot.give(pending.popleft())
            busy = [s for s in slots if s.task is not None]
            if not busy:
                return
            wait_s = None
            if timeout_s is not None:
                now = time.perf_counter()
                wait_s = max(0.0, min(s.started + timeout_s - now for s in busy))
            wait([x for s in busy for x in (s.conn, s.proc.sentinel)], timeout=wait_s)
            for k, slot in enumerate(slots):
                result = _collect(slot, timeout_s)
                if result is None:
                    continue
                yield result
                if slot.task is not None:  # the worker is gone: replace it
                    slot.stop(kill=True)
                    slots[k] = _Slot(ctx, oracle, threads)
                    slots[k].wait_ready()
    finally:
        for slot in slots:
            slot.stop(kill=slot.task is not None)


def _collect(slot: _Slot, timeout_s: float | None) -> Result | None:
    """The slot's finished result, or an error result when its worker died or timed out
    (``slot.task`` then stays set, so the caller replaces the worker)."""
    if slot.task is None:
        return None
    key = slot.task[0]
    elapsed = time.perf_counter() - slot.started
    if slot.conn.poll():
        try:
            result = slot.conn.recv()
        except (EOFError, OSError):
            result = None
        if result is not None:
            slot.task = None
            return result
    if not slot.proc.is_alive():
        code = slot.proc.exitcode
        return key, "error", f"worker process died (exit code {code})", elapsed
    if timeout_s is not None and elapsed >= timeout_s:
        return key, "error", f"timeout after {timeout_s:g} s", elapsed
    return None
