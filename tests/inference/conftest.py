import pytest
import torch

from molsym.deploy import save_model
from molsym.models import InvariantModel

ELEMENTS = [1, 6, 7, 8]  # H, C, N, O
OUTPUTS = ["energy", "forces", "dipole", "homo"]


def small_model(dtype: torch.dtype = torch.float64) -> InvariantModel:
    """An untrained but deterministic (seeded) small model: prediction plumbing needs no
    training, only a fixed function of the structure."""
    torch.manual_seed(1)
    model = InvariantModel(cutoff=4.0, elements=ELEMENTS, outputs=OUTPUTS, num_channels=16,
                           num_layers=2, num_radial=8, radial_hidden=16, readout_hidden=16)
    return model.to(dtype).eval()


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(small_model(), path)
    return path
