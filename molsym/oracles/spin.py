"""Total charge and spin multiplicity of a structure.

molsym's SMILES reader stores the RDKit formal charge in ``info["total_charge"]`` (e). The
multiplicity comes from RDKit's radical electrons of the same SMILES, high spin:
``1 + number of radical electrons`` (``[CH3]`` 2, ``[O][O]`` 3). A structure without SMILES
and without ``info["multiplicity"]`` is a singlet if its electron count is even, a doublet
otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from ase import Atoms

from molsym.errors import InputError


@functools.lru_cache(maxsize=4096)
def multiplicity_from_smiles(smiles: str) -> int:
    """``1 + total radical electrons`` of ``smiles`` (RDKit). Raises InputError if invalid."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise InputError(f"invalid SMILES {smiles!r}")
    return 1 + sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())


def add_multiplicity(structures: Iterable[Atoms]) -> None:
    """Set ``info["multiplicity"]`` from ``info["smiles"]`` where it is missing (in place)."""
    for atoms in structures:
        smiles = atoms.info.get("smiles")
        if "multiplicity" not in atoms.info and isinstance(smiles, str):
            atoms.info["multiplicity"] = multiplicity_from_smiles(smiles)


def charge_and_multiplicity(atoms: Atoms) -> tuple[int, int]:
    """``(total charge, multiplicity)`` of ``atoms`` from its info (see the module doc).

    Raises ValueError (one line) for a non-integer charge or a multiplicity that the
    electron count does not allow.
    """
    raw = float(atoms.info.get("total_charge", 0.0))
    charge = round(raw)
    if abs(raw - charge) > 1e-6:
        raise ValueError(f"total charge {raw} is not an integer")
    electrons = int(atoms.numbers.sum()) - charge
    if "multiplicity" in atoms.info:
        multiplicity = int(atoms.info["multiplicity"])
    elif isinstance(atoms.info.get("smiles"), str):
        multiplicity = multiplicity_from_smiles(atoms.info["smiles"])
    else:
        multiplicity = 1 + electrons % 2
    unpaired = multiplicity - 1
    if electrons < 0 or unpaired < 0 or unpaired > electrons or (electrons - unpaired) % 2:
        raise ValueError(
            f"charge {charge} and multiplicity {multiplicity} are impossible with "
            f"{electrons} electrons"
        )
    return charge, multiplicity
