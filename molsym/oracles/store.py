"""The output folder of a labelling run: ``labels.extxyz`` and ``failures.jsonl``.

Only the parent process writes. Each finished structure is one extxyz frame, written with a
single ``write`` on a file opened for appending and then ``fsync``-ed, so after a crash or a
kill only the last frame can be incomplete; on restart such a torn frame (missing lines, no
final newline, NUL bytes from the file system) is cut off and reported. Damage anywhere else
is an error, never silently dropped. ``failures.jsonl`` holds one JSON object per failed
structure (``key``, ``id``, ``reason``, ``oracle``, ``oracle_config``, ``seconds``), with
the same torn-tail rule. A lock file keeps two runs from writing to one folder.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from molsym.oracles.base import OracleError

LABELS = "labels.extxyz"
FAILURES = "failures.jsonl"
LOCK = ".label.lock"

log = logging.getLogger(__name__)
_KEY = re.compile(rb"(?:^|\s)label_key=(\S+)")
_CONFIG = re.compile(rb'(?:^|\s)oracle_config="((?:[^"\\]|\\.)*)"')


def _scan_frames(data: bytes) -> tuple[list[tuple[str, bytes]], int, str | None]:
    """``([(label_key, raw oracle_config)], end of the last good frame, problem)``;
    ``problem`` is None for a clean file, else what is wrong after the last good frame."""
    frames: list[tuple[str, bytes]] = []
    pos, line_no = 0, 1
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return frames, pos, f"line {line_no}: incomplete line"
        head = data[pos:nl].strip()
        if not head:
            pos, line_no = nl + 1, line_no + 1
            continue
        if not head.isdigit() or int(head) <= 0:
            return frames, pos, f"line {line_no}: expected an atom count, got {head[:40]!r}"
        end = nl
        for _ in range(int(head) + 1):
            end = data.find(b"\n", end + 1)
            if end < 0:
                return frames, pos, f"line {line_no}: incomplete frame"
        comment = data[nl + 1 : data.find(b"\n", nl + 1)]
        key, config = _KEY.search(comment), _CONFIG.search(comment)
        if b"\x00" in data[pos : end + 1]:
            return frames, pos, f"line {line_no}: NUL bytes"
        if key is None or config is None:
            return frames, pos, f"line {line_no + 1}: frame without label_key/oracle_config"
        frames.append((key.group(1).decode(), config.group(1)))
        pos, line_no = end + 1, line_no + int(head) + 2
    return frames, pos, None


def _is_tail(rest: bytes) -> bool:
    """Whether damaged bytes after the last good frame hold at most one (the torn) frame."""
    return len(re.findall(rb"label_key=", rest)) <= 1


def _unescape(raw: bytes) -> Any:
    return json.loads(re.sub(rb"\\(.)", rb"\1", raw).decode())


class LabelStore:
    """Open (and lock) ``out_dir``; :meth:`recover` reads what earlier runs finished."""

    def __init__(self, out_dir: str | os.PathLike):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.labels_path = self.dir / LABELS
        self.failures_path = self.dir / FAILURES
        self._lock = _lock(self.dir / LOCK)

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def recover(self, oracle_config: dict) -> tuple[set[str], dict[str, dict]]:
        """Keys already labelled and failures recorded under ``oracle_config`` (key ->
        record). Cuts torn tails; raises OracleError for labels of another oracle config or
        damage that is not a torn tail."""
        labelled: set[str] = set()
        if self.labels_path.exists():
            data = self.labels_path.read_bytes()
            frames, end, problem = _scan_frames(data)
            if problem is not None and not _is_tail(data[end:]):
                raise OracleError(f"{self.labels_path} is damaged at {problem}; move it aside")
            if problem is not None:
                self._cut(self.labels_path, end, len(data) - end, "frame")
            same: set[bytes] = set()  # raw configs already found equal (parse each once)
            for key, raw in frames:
                if raw not in same:
                    if _unescape(raw) != oracle_config:
                        raise OracleError(
                            f"{self.labels_path} holds labels of another oracle config "
                            f"({_unescape(raw)}); label into another folder"
                        )
                    same.add(raw)
                labelled.add(key)
        failed: dict[str, dict] = {}
        if self.failures_path.exists():
            data = self.failures_path.read_bytes()
            pos = 0
            for line_no, line in enumerate(data.splitlines(keepends=True), 1):
                try:
                    record = json.loads(line) if line.endswith(b"\n") else None
                except ValueError:
                    record = None
                if record is None:
                    if pos + len(line) < len(data):
                        raise OracleError(f"{self.failures_path} is damaged at line {line_no}")
                    self._cut(self.failures_path, pos, len(line), "failure record")
                    break
                pos += len(line)
                if record.get("oracle_config") == oracle_config and "key" in record:
                    failed[record["key"]] = record
        return labelled, failed

    @staticmethod
    def _cut(path: Path, end: int, dropped: int, what: str) -> None:
        log.warning("%s: dropping a torn last %s (%d bytes) left by an interrupted run",
                    path, what, dropped)
        with open(path, "r+b") as fh:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())

    def add_frame(self, atoms: Atoms) -> None:
        """Append one labelled frame (extxyz, one write, fsync)."""
        from ase.io import write

        text = io.StringIO()
        write(text, atoms, format="extxyz")
        _append(self.labels_path, text.getvalue().encode())

    def add_failure(self, record: dict) -> None:
        """Append one failure record (a JSON line, one write, fsync)."""
        _append(self.failures_path, (json.dumps(record, default=_json_default) + "\n").encode())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(path: Path) -> int | None:
    """An exclusive lock on ``path`` (released when the process ends); None where the
    platform has no ``fcntl``."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OracleError(f"another labelling run is writing to {path.parent}") from None
    return fd
