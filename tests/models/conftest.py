import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from molsym.models import MODEL_CLASSES

ELEMENTS = [1, 6, 7, 8]
OUTPUTS = ["energy", "forces", "stress", "dipole", "gap"]

#: Every model configuration the symmetry and physics suite runs on (small and fast). full_paths
#: at l_max 2 runs every extra path (tests/nn/test_blocks.py checks l_max 1 with it, per path).
CONFIGS = {
    "equivariant-l1": ("equivariant", dict(num_channels=8, num_layers=2, l_max=1)),
    "equivariant-l2": ("equivariant", dict(num_channels=8, num_layers=2, l_max=2)),
    "equivariant-l2-full": ("equivariant", dict(num_channels=8, num_layers=2, l_max=2,
                                                full_paths=True)),
    # with the non-default options: element mixing and element-weighed products, a deeper
    # radial MLP, trained Bessel frequencies (perturbed with the other weights), another
    # envelope exponent and the extra 4-body scalars
    "equivariant-l2-species-radial3": ("equivariant", dict(num_channels=8, num_layers=2, l_max=2,
                                                           species_linear=True,
                                                           radial_layers=3,
                                                           trainable_basis=True,
                                                           envelope_exponent=5,
                                                           more_scalars=True,
                                                           species_products=True)),
    # rank-3 terms in the neighbour density (with the 4-body scalars they add)
    "equivariant-l2-rank3": ("equivariant", dict(num_channels=8, num_layers=2, l_max=2,
                                                 rank3_density=True, more_scalars=True)),
    "invariant": ("invariant", dict(num_channels=16, num_layers=2)),
}


def build_model(config: str, dtype: torch.dtype, cutoff: float = 3.5) -> torch.nn.Module:
    name, kwargs = CONFIGS[config]
    model = MODEL_CLASSES[name](
        cutoff=cutoff,
        elements=ELEMENTS,
        outputs=OUTPUTS,
        num_radial=6,
        radial_hidden=16,
        readout_hidden=8,
        avg_num_neighbors=6.0,
        atomic_energies={"1": -13.6, "6": -1029.0, "7": -1485.0, "8": -2042.0},
        energy_scale=0.5,
        property_mean={"gap": 6.0},
        property_std={"gap": 1.5},
        **kwargs,
    )
    _randomise(model)
    return model.to(dtype)


def _randomise(model: torch.nn.Module) -> None:
    """Perturb every parameter so that no path is trivially zero at initialisation."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p) * (p.abs().mean() + 0.1))


DTYPES = {"float64": (torch.float64, 1e-10), "float32": (torch.float32, 2e-4)}


@pytest.fixture(params=list(CONFIGS), scope="module")
def config(request):
    return request.param


@pytest.fixture(params=list(DTYPES), scope="module")
def dtype_tol(request):
    return DTYPES[request.param]


def ethanol(seed: int = 0) -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=seed)
    return atoms


def periodic_water() -> Atoms:
    atoms = molecule("H2O")
    atoms.set_cell(np.diag([3.1, 3.3, 3.6]) + 0.2 * np.eye(3)[::-1])
    atoms.pbc = True
    atoms.center()
    atoms.rattle(0.05, seed=3)
    return atoms
