"""Losses, metrics, EMA and LR schedules against hand computations."""

import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from molsym import units
from molsym.errors import ConfigError
from molsym.training import ErrorAccumulator, ExponentialMovingAverage, Loss, WarmupCosineLR


def _batch(n_atoms=(2, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    graphs = [
        Data(z=torch.ones(n, dtype=torch.long), pos=torch.randn(n, 3, generator=g),
             num_atoms=torch.tensor([n]), energy=torch.randn(1, generator=g),
             forces=torch.randn(n, 3, generator=g), num_nodes=n)
        for n in n_atoms
    ]
    return Batch.from_data_list(graphs)


def test_loss_is_weighted_sum_of_per_atom_energy_and_force_mse():
    batch = _batch()
    pred = {"energy": batch.energy + torch.tensor([0.2, -0.3]),
            "forces": batch.forces + 0.1}
    total, terms = Loss({"energy": 2.0, "forces": 5.0})(pred, batch)
    e_term = ((0.2 / 2) ** 2 + (0.3 / 3) ** 2) / 2
    assert terms["energy"].item() == pytest.approx(e_term, rel=1e-5)
    assert terms["forces"].item() == pytest.approx(0.01, rel=1e-4)
    assert total.item() == pytest.approx(2.0 * e_term + 5.0 * 0.01, rel=1e-5)


def test_huber_is_quadratic_inside_delta_and_linear_outside():
    batch = _batch()
    small = {"forces": batch.forces + 0.001}
    big = {"forces": batch.forces + 1.0}
    loss = Loss({"forces": 1.0}, kind="huber", huber_delta=0.01)
    assert loss(small, batch)[0].item() == pytest.approx(0.5 * 0.001**2, rel=1e-3)
    assert loss(big, batch)[0].item() == pytest.approx(0.01 * (1.0 - 0.005), rel=1e-3)
    with pytest.raises(ConfigError):
        Loss(kind="l7")


def test_loss_without_common_target_is_a_config_error():
    with pytest.raises(ConfigError, match="no target"):
        Loss()({"homo": torch.zeros(2)}, _batch())


def test_metrics_in_mev_and_exact_over_batches():
    a, b = _batch(seed=1), _batch((4,), seed=2)
    acc = ErrorAccumulator()
    errs = []
    for batch, de in ((a, 0.010), (b, -0.004)):
        pred = {"energy": batch.energy + de, "forces": batch.forces + 2 * de}
        acc.update(pred, batch)
        errs.append(torch.full((batch.num_graphs,), de))
    m = acc.compute()
    e = torch.cat(errs)
    assert m["energy"]["unit"] == "meV"
    assert m["energy"]["mae"] == pytest.approx(e.abs().mean().item() / units.MEV, rel=1e-5)
    assert m["energy"]["rmse"] == pytest.approx(e.pow(2).mean().sqrt().item() * 1e3, rel=1e-5)
    per_atom = torch.tensor([0.010 / 2, 0.010 / 3, 0.004 / 4])
    assert m["energy_per_atom"]["mae"] == pytest.approx(per_atom.mean().item() * 1e3, rel=1e-5)
    f = torch.tensor([0.02] * (5 * 3) + [0.008] * (4 * 3))  # every component counts
    assert m["forces"]["mae"] == pytest.approx(f.mean().item() * 1e3, rel=1e-5)
    assert m["forces"]["unit"] == "meV/Angstrom"


def test_ema_follows_the_formula_and_swaps_back():
    model = torch.nn.Linear(3, 1)
    ema = ExponentialMovingAverage(model, decay=0.9, warmup=False)
    w0 = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    expected = 0.9 * w0 + 0.1 * (w0 + 1.0)
    with ema.average_parameters(model):
        assert torch.allclose(model.weight, expected)
    assert torch.allclose(model.weight, w0 + 1.0)
    state = ema.state_dict()
    assert "shadow_0" in state and int(state["num_updates"]) == 1


def test_ema_keeps_frozen_parameters_and_follows_replaced_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    ema = ExponentialMovingAverage(model, decay=0.5, warmup=False)
    ema.update(model)  # fills update()'s cached parameter list
    model[0].weight.requires_grad_(False)  # frozen after the first update (finetune.freeze)
    frozen = ema.shadow_0.clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    assert torch.equal(ema.shadow_0, frozen)  # frozen: the average is left alone
    assert torch.allclose(ema.shadow_2, model[1].weight - 0.5)  # trainable: averaged
    # .to() gives the EMA new buffer tensors (as a move to a GPU or float64 does): updates
    # must land in them, not in the tensors of before
    ema.to(torch.float64)
    model.to(torch.float64)
    before = ema.shadow_2.clone()
    with torch.no_grad():
        model[1].weight.add_(2.0)
    ema.update(model)
    assert ema.shadow_2.dtype == torch.float64
    assert torch.allclose(ema.shadow_2, 0.5 * before + 0.5 * model[1].weight)


def test_zero_grad_clears_every_gradient():
    from molsym.models import EquivariantModel
    from molsym.training.module import MolsymModule

    module = MolsymModule(EquivariantModel(num_channels=4, num_layers=1, l_max=1))
    optimizer = module.configure_optimizers()
    for p in module.model.parameters():
        p.grad = torch.ones_like(p)
    module.optimizer_zero_grad(0, 0, optimizer)
    assert all(p.grad is None for p in module.model.parameters())


def test_warmup_cosine_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosineLR(opt, total_steps=110, warmup_steps=10, min_lr_ratio=0.1)
    lrs = []
    for _ in range(120):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1 / 11)
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 10
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[115] == pytest.approx(0.1)
    assert all(x >= y - 1e-12 for x, y in zip(lrs[10:], lrs[11:], strict=False))


def test_cosine_follows_a_wall_clock_budget_and_keeps_it_across_a_resume(monkeypatch):
    from molsym.training import schedules

    clock = [100.0]
    monkeypatch.setattr(schedules.time, "monotonic", lambda: clock[0])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosineLR(opt, total_steps=10_000, min_lr_ratio=0.1, time_budget_s=60.0)
    opt.step()
    clock[0] += 30.0  # half the budget after one of 10,000 steps: the clock leads
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 + 0.9 * 0.5)
    state = sched.state_dict()
    assert state["elapsed_s"] == pytest.approx(30.0) and "_clock_start" not in state
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    resumed = WarmupCosineLR(opt2, total_steps=10_000, min_lr_ratio=0.1, time_budget_s=60.0)
    resumed.load_state_dict(state)
    clock[0] += 1000.0  # time between the runs does not count
    opt2.step()
    resumed.step()
    clock[0] += 30.0
    opt2.step()
    resumed.step()  # 30 s before + 30 s now: the whole budget
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="time_budget_s"):
        WarmupCosineLR(opt2, total_steps=10, time_budget_s=0)


def test_train_restores_process_wide_torch_state(tmp_path):
    """`train` flushes denormals and may set threads while it runs, and restores both."""
    from molsym.training.run import train
    from tests.cli.cli_helpers import tiny_train_config, write_emt_frames

    data = write_emt_frames(tmp_path / "frames.extxyz", n=20)
    cfg = tiny_train_config(data, tmp_path / "run", "data.num_train=8", "data.num_val=4",
                            "num_threads=1", f"+data.cache_dir={tmp_path / 'cache'}")
    torch.set_num_threads(2)
    train(cfg, tmp_path / "run")
    assert torch.get_num_threads() == 2
    tiny = torch.tensor([1e-40], dtype=torch.float32)  # subnormal in float32
    assert (tiny * 1.0).item() != 0.0  # not flushed any more


def test_weight_decay_spares_the_per_element_energy_shifts_and_scales():
    """AdamW decays the network's weights but not the energy shifts (hundreds of eV) and
    scales: one step with zero gradients shrinks only the former, by exactly 1 - lr * wd."""
    import functools

    from molsym.models import EquivariantModel
    from molsym.training import MolsymModule

    model = EquivariantModel(cutoff=4.0, elements=[1, 6], num_channels=8, num_layers=1,
                             l_max=1, radial_hidden=8, atomic_energies=[-13.6, -1030.0],
                             energy_scale=0.5)
    module = MolsymModule(model, optimizer=functools.partial(torch.optim.AdamW, lr=0.1,
                                                             weight_decay=0.5))
    opt = module.configure_optimizers()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in model.named_parameters():
        if name in ("atomic_energy_shift", "atomic_energy_scale"):
            assert torch.equal(p.detach(), before[name]), name
        else:
            torch.testing.assert_close(p.detach(), before[name] * (1 - 0.1 * 0.5))
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_without_weight_decay_the_optimizer_has_one_group_in_parameter_order():
    """Adam (no decay) keeps the single group of ``model.parameters()`` that checkpoints
    written before the decay groups existed expect, so they still resume."""
    from molsym.models import EquivariantModel
    from molsym.training import MolsymModule

    model = EquivariantModel(cutoff=4.0, elements=[1, 6], num_channels=8, num_layers=1,
                             l_max=1, radial_hidden=8)
    opt = MolsymModule(model).configure_optimizers()
    assert len(opt.param_groups) == 1
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in model.parameters()]
