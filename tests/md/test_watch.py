"""Stop conditions of `molsym md`: broken bonds (minimum image in a cell), non-finite values."""

import numpy as np
from ase import Atoms
from ase.build import molecule

from molsym.md.watch import BondWatch, nonfinite_problem


def test_a_bond_stretched_past_the_factor_is_named():
    atoms = molecule("H2O")
    watch = BondWatch(atoms, max_stretch=1.5)
    assert len(watch.pairs) == 2 and watch.problem(atoms) == ""  # O-H twice, no H-H bond
    atoms.positions[1] += 1.0 * (atoms.positions[1] - atoms.positions[0])  # O-H doubled
    message = watch.problem(atoms)
    assert message.startswith("bond O0-H1 stretched to 1.9") and "falls apart" in message
    assert BondWatch(molecule("H2O"), max_stretch=0).problem(atoms) == ""  # 0: never


def test_a_bond_across_the_cell_boundary_is_measured_by_minimum_image():
    atoms = Atoms("H2", positions=[[0.2, 2, 2], [9.45, 2, 2]], cell=[10, 10, 10], pbc=True)
    watch = BondWatch(atoms)
    assert len(watch.pairs) == 1 and np.isclose(watch.length0[0], 0.75)
    atoms.positions[1, 0] = 0.95 - 10.0 + 10.0  # the same bond, unwrapped to the other side
    assert watch.problem(atoms) == ""
    atoms.positions[1, 0] = 3.0  # 2.8 Angstrom: broken
    assert "H0-H1" in watch.problem(atoms)


def test_non_finite_energy_or_forces_are_reported():
    forces = np.zeros((3, 3))
    assert nonfinite_problem(-1.0, forces) == ""
    assert "energy is not finite" in nonfinite_problem(float("nan"), forces)
    forces[2, 1] = np.inf
    assert nonfinite_problem(-1.0, forces) == ("forces on 1 atom(s) are not finite "
                                                "(first: atom 2)")
