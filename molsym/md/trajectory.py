"""An extxyz trajectory written one frame at a time so that a killed run leaves a readable file.

Each frame is formatted in memory and appended with a single ``os.write`` on a file opened with
``O_APPEND``: a process killed between two writes (``kill -9``, Ctrl-C, a time limit) leaves
only whole frames behind. A restart of the same command replaces the file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import ase
import ase.io
from ase.calculators.singlepoint import SinglePointCalculator


class TrajectoryWriter:
    """Appends frames (positions, momenta, energy, forces, ``info``) to ``path`` (extxyz)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self.frames = 0

    def write(self, atoms: ase.Atoms, energy: float, forces, info: dict) -> None:
        frame = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                          pbc=atoms.pbc, momenta=atoms.get_momenta())
        frame.info.update(info)
        frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces)
        buffer = io.StringIO()
        ase.io.write(buffer, frame, format="extxyz")
        data = buffer.getvalue().encode()
        written = 0
        while written < len(data):  # one call for a frame of a few kB; loop for safety
            written += os.write(self._fd, data[written:])
        self.frames += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
