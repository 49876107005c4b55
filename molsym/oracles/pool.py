"""Worker processes that run an oracle, one structure at a time, under a per-structure
timeout. A worker that hangs past the timeout is killed, one that dies (segfault, out of
memory) is reported; either is replaced by a fresh process and the run goes on.

Each worker gets its own pipe: the parent sends ``(key, atoms, charge, multiplicity)`` and
gets back ``(key, "ok", (energy, forces), seconds)`` or ``(key, "error", reason, seconds)``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
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


@contextlib.contextmanager
def _main_hidden(oracle: Oracle) -> Iterator[None]:
    """Start workers without re-running the parent's ``__main__`` (spawn imports it: a
    script that imports torch costs seconds per worker). Kept when the oracle needs it."""
    main = sys.modules.get("__main__")
    if main is None or b"__main__" in pickle.dumps(oracle):
        yield
        return
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class _Slot:
    """One worker process and the task it is working on."""

    def __init__(self, ctx, oracle: Oracle):
        self.ctx_name = ctx.get_start_method()
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, oracle), daemon=True)
        with _main_hidden(oracle):
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
        self.conn.send(task)

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

    ``timeout_s`` is per structure (wall clock, None for no limit). Closing the generator
    early (or an exception in the caller) kills the workers.
    """
    pending = deque(tasks)
    if not pending:
        return
    ctx = mp.get_context(start_method)
    slots: list[_Slot] = []
    try:
        for _ in range(max(1, min(int(workers), len(pending)))):
            slots.append(_Slot(ctx, oracle))
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
                    slots[k] = _Slot(ctx, oracle)
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
