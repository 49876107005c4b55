"""EMT-labelled small molecules shared by the data tests."""

from ase.build import molecule
from ase.calculators.emt import EMT

NAMES = ("CH3CH2OH", "H2O", "CH4", "NH3", "CH3OH")


def make_frames(n, seed=0, names=NAMES):
    """``n`` rattled molecules cycling through ``names``, with EMT energies and forces."""
    frames = []
    for i in range(n):
        atoms = molecule(names[i % len(names)])
        atoms.rattle(0.05, seed=seed * 1000 + i)
        atoms.calc = EMT()
        atoms.get_forces()
        frames.append(atoms)
    return frames
