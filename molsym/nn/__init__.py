"""Tensor-in/tensor-out building blocks of molsym's networks."""

from molsym.nn.cartesian import (
    EquivariantLinear,
    ProductBlock,
    edge_harmonics,
    num_components,
    sym_traceless,
)
from molsym.nn.interaction import CartesianInteraction, CFConvInteraction
from molsym.nn.radial import BesselBasis, PolynomialCutoff, RadialMLP
from molsym.nn.readout import ScalarMLP, VectorReadout
from molsym.nn.scatter import scatter_mean, scatter_sum

__all__ = [
    "BesselBasis",
    "CFConvInteraction",
    "CartesianInteraction",
    "EquivariantLinear",
    "PolynomialCutoff",
    "ProductBlock",
    "RadialMLP",
    "ScalarMLP",
    "VectorReadout",
    "edge_harmonics",
    "num_components",
    "scatter_mean",
    "scatter_sum",
    "sym_traceless",
]
