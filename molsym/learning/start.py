"""Round 0: RDKit ETKDG conformers of each SMILES plus rattled copies of each conformer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from molsym.errors import InputError


def smiles_list(smiles: str | Sequence[str]) -> list[str]:
    """The SMILES of ``smiles``: one string, several separated by commas (no SMILES holds a
    comma), a list, or a ``.smi``/``.csv`` file of them."""
    if isinstance(smiles, str) and "," in smiles:
        return smiles_list([s.strip() for s in smiles.split(",") if s.strip()])
    if isinstance(smiles, str):
        path = Path(smiles)
        if path.suffix.lower() in (".smi", ".csv"):
            if not path.is_file():
                raise InputError(f"{smiles}: SMILES file not found")
            from molsym.data.readers import read_file

            return [str(a.info["smiles"]) for a in _read_unique(read_file, path)]
        return [smiles]
    out = [str(s) for s in smiles]
    if not out:
        raise InputError("smiles: no SMILES given")
    return out


def _read_unique(read_file, path: Path) -> list[Atoms]:
    seen: dict[str, Atoms] = {}
    for atoms in read_file(str(path), num_conformers=1):  # embedding errors raise, one line
        seen.setdefault(str(atoms.info["smiles"]), atoms)
    return list(seen.values())


def start_structures(smiles: Sequence[str], num_conformers: int, rattled_copies: int,
                     rattle_stdev: float, seed: int) -> list[Atoms]:
    """Conformers (``num_conformers`` per SMILES, ETKDG + MMFF) and ``rattled_copies``
    Gaussian-rattled copies (``rattle_stdev`` Angstrom) of each; ids name SMILES, conformer
    and copy. Raises :class:`InputError` (one line) for a SMILES that RDKit cannot read or
    embed."""
    from molsym.data.readers import read_smiles

    errors: list = []
    conformers = read_smiles(list(smiles), num_conformers=num_conformers, seed=seed,
                             num_workers=1, on_error="skip", errors=errors, source="smiles")
    if errors:
        first = errors[0]
        reason = getattr(first, "reason", None) or str(first)
        raise InputError(f"smiles: {reason}" + (f" (and {len(errors) - 1} more)"
                                                 if len(errors) > 1 else ""))
    rng = np.random.default_rng(seed)
    out: list[Atoms] = []
    for atoms in conformers:
        base = str(atoms.info.get("id", f"smiles:{len(out)}"))
        atoms = atoms.copy()
        atoms.info["id"] = f"{base}:start"
        out.append(atoms)
        for copy in range(rattled_copies):
            rattled = atoms.copy()
            rattled.positions = atoms.positions + rng.normal(0.0, rattle_stdev,
                                                             atoms.positions.shape)
            rattled.info["id"] = f"{base}:rattled{copy}"
            out.append(rattled)
    return out
