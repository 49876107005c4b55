"""Edge-chunked evaluation (molsym.nn.chunks) gives the unchunked energies, forces, stress and
parameter gradients (double backward of a training step), periodic and paired graphs alike."""

from pathlib import Path

import pytest
import torch
import yaml
from ase.build import molecule
from torch_geometric.data import Batch

from molsym.data.boxes import molecular_box, water_box
from molsym.data.graph import atoms_to_graph
from molsym.models import EquivariantModel, predict_batch
from molsym.models.compiled import compile_model
from molsym.nn.chunks import edge_chunk_bounds


def _outputs(model, batch, chunk_above, edge_chunk, stress=False):
    model.chunk_above, model.edge_chunk = chunk_above, edge_chunk
    model.zero_grad()
    out = predict_batch(model, batch, compute_forces=True, compute_stress=stress)
    loss = (out["energy"] ** 2).sum() + (out["forces"] ** 2).sum()
    if stress:
        loss = loss + (out["stress"] ** 2).sum()
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return {k: v.detach() for k, v in out.items()}, grads


#: model=default's switches as its yaml sets them (element mixing, extra scalars, trained
#: basis, radial floor, ...; sizes stay the test's), with closest pairs just below ethanol's so
#: that some edges are floored
DEFAULT_OPTIONS = {
    **{k: v for k, v in yaml.safe_load(
        (Path(__file__).parents[2] / "molsym/configs/model/default.yaml").read_text()).items()
       if (isinstance(v, bool) and k != "full_paths")  # the test sets full_paths
       or k in ("envelope_exponent", "repulsion_reach", "radial_floor")},
    "closest_pairs": {"1-1": 2.0, "1-6": 1.3, "1-8": 1.2, "6-6": 1.7, "6-8": 1.6, "8-8": 2.0},
    "rank3_density": True,  # experiment=rmd17's (ignored at l_max 1)
}


@pytest.mark.parametrize("l_max", [1, 2])
@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("options", [{}, DEFAULT_OPTIONS], ids=["class", "default"])
def test_chunked_equals_unchunked_with_training_gradients(l_max, periodic, options):
    atoms = water_box(2) if periodic else molecule("CH3CH2OH")
    batch = Batch.from_data_list([atoms_to_graph(atoms, 4.0, dtype=torch.float64)])
    torch.manual_seed(0)
    model = EquivariantModel(cutoff=4.0, elements=[1, 6, 8], l_max=l_max, num_channels=8,
                             full_paths=l_max == 2, **options).double().train()
    with torch.no_grad():  # the element mixing starts at zero (the identity): make it act
        for mixing in model.species_mixing or []:
            mixing.weight.normal_(0, 0.3)
    edges = batch.edge_index.shape[1]
    ref, ref_grads = _outputs(model, batch, 0, 1, stress=periodic)
    got, got_grads = _outputs(model, batch, edges - 1, 7, stress=periodic)  # odd chunk
    assert len(list(edge_chunk_bounds(edges, 7, not periodic))) > 3
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-10, atol=1e-12)
    assert len(got_grads) == len(ref_grads) > 0
    for a, b in zip(got_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_chunk_bounds_cover_every_edge_once():
    for total, chunk, paired in [(10, 3, False), (10, 3, True), (12, 4, True), (1, 5, False)]:
        bounds = list(edge_chunk_bounds(total, chunk, paired))
        covered = [k for a, b in bounds for k in range(a, b)]
        assert covered == list(range(total // 2 if paired else total))


def test_compiled_model_hands_a_chunked_graph_to_the_eager_model():
    """A graph above ``chunk_above`` is not compiled (a compiled graph holds every edge
    tensor): the compiled wrapper returns exactly the eager, chunked result."""
    atoms = molecular_box(molecule("CH3CH2OH"), 2)
    batch = Batch.from_data_list([atoms_to_graph(atoms, 4.0, dtype=torch.float64)])
    model = EquivariantModel(cutoff=4.0, elements=[1, 6, 8], l_max=1,
                             num_channels=8).double().eval()
    model.chunk_above, model.edge_chunk = 100, 64
    eager = predict_batch(model, batch)
    compiled = predict_batch(compile_model(model), batch)
    assert batch.edge_index.shape[1] > 100
    for key in eager:
        assert torch.equal(eager[key], compiled[key])
