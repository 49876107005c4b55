"""Selection: the frames with the largest force disagreement above the threshold, with a
diversity rule so that one event is not picked many times.

Candidates are the frames whose spread exceeds the threshold and the last frame before each
explosion. The latter come first, the others in order of decreasing spread; a frame is
skipped when it lies within ``min_distance`` of a frame already picked or already labelled,
the distance being the RMS change of all interatomic distances (Angstrom; rotation- and
translation-free, compared only between structures of the same atoms in the same order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms


def distance_signature(atoms: Atoms) -> np.ndarray:
    """Upper triangle of the interatomic distance matrix (Angstrom), (N (N - 1) / 2,)."""
    pos = np.asarray(atoms.positions)
    i, j = np.triu_indices(len(atoms), k=1)
    return np.linalg.norm(pos[i] - pos[j], axis=-1)


def is_candidate(frame: Atoms, threshold: float) -> bool:
    """A frame to label: spread above ``threshold``, or the last one before an explosion."""
    return float(frame.info["spread"]) > threshold or bool(frame.info.get("before_explosion"))


def select(frames: Sequence[Atoms], threshold: float, count: int, min_distance: float,
           labelled: Sequence[Atoms] = ()) -> list[Atoms]:
    """Up to ``count`` candidate frames of ``frames`` (:func:`is_candidate`), the last frames
    before explosions first, then by decreasing ``info["spread"]`` (eV/Angstrom), each at
    least ``min_distance`` from the others and from ``labelled`` (see the module doc)."""
    if count <= 0:
        return []
    candidates = sorted((f for f in frames if is_candidate(f, threshold)),
                        key=lambda f: (-int(f.info.get("before_explosion", 0)),
                                       -float(f.info["spread"])))
    kept: dict[bytes, list[np.ndarray]] = {}
    for atoms in labelled:
        kept.setdefault(atoms.numbers.tobytes(), []).append(distance_signature(atoms))
    picked: list[Atoms] = []
    for atoms in candidates:
        sig = distance_signature(atoms)
        others = kept.setdefault(atoms.numbers.tobytes(), [])
        if others and min_distance > 0:
            rms = np.sqrt(np.mean((np.stack(others) - sig) ** 2, axis=1)) if sig.size else [0.0]
            if float(np.min(rms)) < min_distance:
                continue
        others.append(sig)
        picked.append(atoms)
        if len(picked) >= count:
            break
    return picked
