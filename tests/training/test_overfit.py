"""Training drives the loss down on one batch (the model can fit what it sees)."""


from torch_geometric.data import Batch

from molsym.data.graph import atoms_to_graph
from molsym.data.readers import read_file
from tests.cli.cli_helpers import write_emt_frames
from tests.training.small_module import small_module


def test_overfitting_one_batch_drives_the_loss_down(tmp_path):
    frames = read_file(write_emt_frames(tmp_path / "f.extxyz", n=4, seed=3))
    graphs = [atoms_to_graph(a, 4.0) for a in frames]
    module = small_module(graphs, num_channels=16, num_layers=2, radial_hidden=16)
    opt = module.configure_optimizers()
    batch = Batch.from_data_list(graphs)
    losses = []
    for _ in range(150):
        loss, _ = module.loss_fn(module(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        module.ema.update(module.model)
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])
    # the EMA lags behind but also improved on the batch
    with module.ema.average_parameters(module.model):
        ema_loss, _ = module.loss_fn(module(batch), batch)
    assert ema_loss.item() < 0.5 * losses[0]
