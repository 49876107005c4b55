"""The epoch means of the training losses that MolsymModule logs once per epoch are the numbers
that ``self.log(..., on_epoch=True, batch_size=B)`` at every step gave, the progress line
still shows them, and an epoch cut short logs them too."""

from __future__ import annotations

import copy
import io

import pytest
import pytorch_lightning as pl
import torch
from torch_geometric.loader import DataLoader

from molsym.data.graph import atoms_to_graph
from molsym.data.readers import read_file
from molsym.training import MolsymModule
from molsym.training.logs import EpochLines
from tests.cli.cli_helpers import write_emt_frames
from tests.training.small_module import small_module


class StepLogging(MolsymModule):
    """The former training step: three ``self.log`` calls per step."""

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        pred = self(batch)
        loss, terms = self.loss_fn(pred, batch)
        bs = int(batch.num_graphs)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=bs, sync_dist=True)
        for name, value in terms.items():
            self.log(f"train/loss_{name}", value, on_step=False, on_epoch=True,
                     batch_size=bs, sync_dist=True)
        return loss


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    path = write_emt_frames(tmp_path_factory.mktemp("frames") / "f.extxyz", n=7, seed=5)
    return [atoms_to_graph(a, 4.0) for a in read_file(path)]


def _module(cls, graphs):
    torch.manual_seed(0)
    return small_module(graphs, cls)


def _fit(module, graphs, stream=None, **trainer_kwargs):
    callbacks = [EpochLines(stream=stream)] if stream is not None else []
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False,
                         enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=stream is not None, callbacks=callbacks,
                         limit_val_batches=0, **trainer_kwargs)
    # batch 3 over 7 frames: batches of 3, 3, 1 (the weights of the mean differ)
    trainer.fit(module, DataLoader(graphs, batch_size=3, shuffle=False))
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}


def test_epoch_means_equal_lightnings_per_step_logging(graphs):
    new, old = _module(MolsymModule, graphs), _module(StepLogging, graphs)
    old.load_state_dict(copy.deepcopy(new.state_dict()))
    stream = io.StringIO()
    logged_new = _fit(new, graphs, stream=stream)
    logged_old = _fit(old, graphs)
    assert set(logged_new) == {"train/loss", "train/loss_energy", "train/loss_forces"}
    assert logged_new == pytest.approx(logged_old, rel=1e-6, abs=0.0)
    for p_new, p_old in zip(new.parameters(), old.parameters(), strict=True):
        assert torch.equal(p_new, p_old)  # logging never touches the training
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and all("train/loss" in line for line in lines)
    assert f"train/loss {logged_new['train/loss']:.4g}" in lines[-1]


def test_an_epoch_cut_short_logs_its_mean(graphs):
    new, old = _module(MolsymModule, graphs), _module(StepLogging, graphs)
    old.load_state_dict(copy.deepcopy(new.state_dict()))
    # 4 steps: the second epoch stops after its first batch, before its last
    logged_new = _fit(new, graphs, max_steps=4)
    logged_old = _fit(old, graphs, max_steps=4)
    assert logged_new and logged_new == pytest.approx(logged_old, rel=1e-6, abs=0.0)


def test_training_step_outside_a_fit_returns_the_loss(graphs):
    from torch_geometric.data import Batch

    module = _module(MolsymModule, graphs)
    batch = Batch.from_data_list(graphs[:2])
    loss = module.training_step(batch, 0)
    expected, _ = module.loss_fn(module(batch), batch)
    assert torch.allclose(loss, expected)
