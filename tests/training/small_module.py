"""A small flagship in a training module, sized from the training graphs' statistics (the
tests that train a few steps in-process)."""

import functools

import torch

from molsym.data.statistics import compute_statistics
from molsym.models import EquivariantModel
from molsym.training import Loss, MolsymModule


def small_module(graphs, cls=MolsymModule, num_channels: int = 8, num_layers: int = 1,
                 radial_hidden: int = 8):
    """``cls`` (MolsymModule or a subclass) around an l_max 1 flagship, Adam lr 0.01, E:F 1:10."""
    stats = compute_statistics(graphs)
    model = EquivariantModel(cutoff=4.0, elements=stats.elements, num_channels=num_channels,
                             num_layers=num_layers, l_max=1, radial_hidden=radial_hidden,
                             atomic_energies=stats.atomic_energies,
                             avg_num_neighbors=stats.avg_num_neighbors,
                             energy_scale=stats.forces_rms)
    return cls(model, Loss({"energy": 1.0, "forces": 10.0}),
               optimizer=functools.partial(torch.optim.Adam, lr=1e-2))
