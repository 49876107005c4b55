"""Run a function over tasks in worker processes, each task with a hard time limit.

RDKit's embedding runs in C++: it neither honours Ctrl-C nor, for every path, its own
``timeout``. Running it in child processes bounds each task (a child past ``timeout`` seconds
is killed and the task gets an error string) and keeps the parent responsive: Ctrl-C raises
``KeyboardInterrupt`` in the parent at once, and the children (which ignore SIGINT) are killed
on the way out; on Linux they also die with the parent when it is killed outright.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any


def _die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent dies, even by SIGKILL (no
    cleanup of the parent's runs then; an orphan would go on embedding for minutes)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))


def _serve(func: Callable[[Any], Any], conn: Connection, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        return
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        if item is None:
            return
        conn.send(func(item))


class _Worker:
    def __init__(self, ctx, func: Callable[[Any], Any]) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(func, child, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.task: int | None = None
        self.started = 0.0

    def submit(self, index: int, item: Any) -> None:
        self.task, self.started = index, time.monotonic()
        self.conn.send(item)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()

    def close(self) -> None:
        """Stop the process: politely when idle, killed when busy or slow to leave."""
        if self.task is None and not self.conn.closed:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.proc.join(timeout=1.0)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


def run_with_timeout(func: Callable[[Any], Any], tasks: Sequence[Any], num_workers: int,
                     timeout: float | None,
                     on_timeout: Callable[[Any], Any],
                     on_crash: Callable[[Any], Any]) -> list[Any]:
    """``[func(t) for t in tasks]`` over ``num_workers`` processes, in task order.

    A task still running after ``timeout`` seconds (None: no limit) has its process killed and
    gets ``on_timeout(task)``; a process that dies (e.g. killed for memory) gives
    ``on_crash(task)``. ``func`` must be a module-level function (picklable for spawn).
    """
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    results: list[Any] = [None] * len(tasks)
    pending = list(range(len(tasks)))[::-1]
    workers = [_Worker(ctx, func) for _ in range(max(1, min(num_workers, len(tasks))))]
    try:
        for w in workers:
            if pending:
                i = pending.pop()
                w.submit(i, tasks[i])
        while any(w.task is not None for w in workers):
            busy = [w for w in workers if w.task is not None]
            wait_s = None
            if timeout is not None:
                wait_s = max(0.0, min(w.started for w in busy) + timeout - time.monotonic())
            ready = wait([w.conn for w in busy], timeout=wait_s)
            for k, w in enumerate(workers):
                if w.task is None:
                    continue
                expired = timeout is not None and time.monotonic() - w.started >= timeout
                if w.conn in ready:
                    try:
                        results[w.task] = w.conn.recv()
                    except (EOFError, OSError):
                        results[w.task] = on_crash(tasks[w.task])
                        w.kill()
                        w = workers[k] = _Worker(ctx, func)
                elif expired:
                    results[w.task] = on_timeout(tasks[w.task])
                    w.kill()
                    w = workers[k] = _Worker(ctx, func)
                else:
                    continue
                w.task = None
                if pending:
                    i = pending.pop()
                    w.submit(i, tasks[i])
    finally:
        for w in workers:
            w.close()
    return results
