"""A fixed short-range repulsion prior: the ZBL universal screened nuclear repulsion.

Ziegler, Biersack and Littmark's pair potential between nuclei of charges ``Z_i``, ``Z_j``::

    E(r) = k Z_i Z_j / r * phi(r / a),     a = 0.46850 / (Z_i^0.23 + Z_j^0.23) Angstrom,
    phi(x) = 0.18175 e^(-3.19980 x) + 0.50986 e^(-0.94229 x)
             + 0.28022 e^(-0.40290 x) + 0.02817 e^(-0.20162 x),

``k = e^2 / (4 pi eps0)`` in eV Angstrom. It is switched off smoothly (value, first and second
derivatives zero) at the sum of the two atoms' covalent radii, so it acts only where atoms
are closer than a bond: the learned energy keeps the chemistry, and the prior keeps the
energy rising at distances no training set samples (no hole where two atoms meet).
"""

from __future__ import annotations

import torch
from ase import units
from ase.data import covalent_radii
from torch import nn

from molsym.errors import ConfigError
from molsym.nn.radial import PolynomialCutoff
from molsym.nn.scatter import scatter_sum

#: e^2 / (4 pi eps0) in eV Angstrom (Hartree * Bohr).
COULOMB_EV_ANGSTROM = units.Hartree * units.Bohr
_ZBL_COEFFICIENTS = (0.18175, 0.50986, 0.28022, 0.02817)
_ZBL_EXPONENTS = (3.19980, 0.94229, 0.40290, 0.20162)
_ZBL_LENGTH = 0.46850  # Angstrom
_ZBL_POWER = 0.23
#: The closest distance (Angstrom) the prior is evaluated at; nearer pairs get its value there
#: (coincident atoms would divide by zero).
MIN_DISTANCE = 0.05


def zbl_energy(distance: torch.Tensor, z_i: torch.Tensor, z_j: torch.Tensor) -> torch.Tensor:
    """ZBL repulsion (eV) of pairs at ``distance`` (Angstrom) with atomic numbers ``z_i``,
    ``z_j`` (all shape (E,)), not switched off."""
    r = distance.clamp(min=MIN_DISTANCE)
    zi, zj = z_i.to(r.dtype), z_j.to(r.dtype)
    x = r * (zi**_ZBL_POWER + zj**_ZBL_POWER) / _ZBL_LENGTH
    phi = sum(c * torch.exp(-e * x) for c, e in zip(_ZBL_COEFFICIENTS, _ZBL_EXPONENTS, strict=True))
    return COULOMB_EV_ANGSTROM * zi * zj / r * phi


class ZBLRepulsion(nn.Module):
    """Per-atom share (N,) of the switched-off ZBL repulsion over a directed edge list (each
    pair listed in both directions, each direction carrying half of the pair's energy).

    Args:
        elements: atomic numbers, in the model's species order.
        envelope_exponent: p of the polynomial switch (:class:`PolynomialCutoff`) that takes
            the repulsion to zero at ``reach * (r_cov(Z_i) + r_cov(Z_j))``.
        reach: where the switch ends, as a fraction of the covalent distance (1: MACE's
            choice; below 1 the prior stays clear of the bond lengths MD samples).
    """

    def __init__(self, elements: list[int], envelope_exponent: int = 6, reach: float = 1.0):
        super().__init__()
        if not 0 < float(reach):
            raise ConfigError(f"repulsion_reach must be positive, got {reach}")
        z = torch.tensor([int(e) for e in elements], dtype=torch.long)
        radii = float(reach) * torch.tensor([float(covalent_radii[int(e)]) for e in elements],
                             dtype=torch.float64)
        self.register_buffer("atomic_number", z, persistent=False)
        self.register_buffer("covalent_radius", radii, persistent=False)
        self.switch = PolynomialCutoff(1.0, envelope_exponent)

    def forward(self, species: torch.Tensor, distance: torch.Tensor,
                edge_index: torch.Tensor) -> torch.Tensor:
        """Per-atom energies (N, ...) in eV from species indices (N,), edge lengths (E, ...)
        in Angstrom (trailing axes, e.g. a committee's members, broadcast) and the edges
        (2, E), row 0 the centre that receives the half share."""
        centre, neighbour = edge_index[0], edge_index[1]
        s_i, s_j = species.index_select(0, centre), species.index_select(0, neighbour)
        per_edge = [-1] + [1] * (distance.dim() - 1)
        reach = (self.covalent_radius.index_select(0, s_i)
                 + self.covalent_radius.index_select(0, s_j)).to(distance.dtype)
        z_i = self.atomic_number.index_select(0, s_i).view(per_edge)
        z_j = self.atomic_number.index_select(0, s_j).view(per_edge)
        pair = zbl_energy(distance, z_i, z_j) * self.switch(distance / reach.view(per_edge))
        return scatter_sum(0.5 * pair, centre, species.shape[0])
