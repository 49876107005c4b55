"""`molsym train init_from=model.pt`: round trip, new elements, frozen layers, refusals."""

import pytest
import torch

from molsym.data.graph import atoms_to_graph
from molsym.data.readers import read_file
from molsym.deploy import load_model, save_model
from molsym.models import EnsembleModel, predict_batch
from tests.cli.cli_helpers import tiny_args, write_emt_frames


def _predict(model, frames):
    out = []
    for atoms in frames:
        pred = predict_batch(model, atoms_to_graph(atoms, model.cutoff))
        out.append((pred["energy"].detach(), pred["forces"].detach()))
    return out


def _state(path):
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def acetamide_xyz(tmp_path_factory):
    """EMT frames of acetamide: H, C, O and nitrogen, which the ethanol model lacks."""
    return write_emt_frames(tmp_path_factory.mktemp("n") / "acetamide.extxyz", n=16,
                            name="CH3CONH2")


def test_zero_epochs_from_a_trained_model_predicts_the_same(trained_run, emt_xyz, tmp_path):
    from molsym.cli.train import main

    init = trained_run / "model.pt"
    assert main(tiny_args(emt_xyz, tmp_path / "ft", "seed=1", f"init_from={init}",
                          "trainer.max_epochs=0")) == 0
    frames = read_file(emt_xyz)[:6]
    before, after = _predict(load_model(init), frames), _predict(
        load_model(tmp_path / "ft" / "model.pt"), frames)
    for (e0, f0), (e1, f1) in zip(before, after, strict=True):
        # same training split: the refits before and after move the shifts by ~0
        assert torch.allclose(e1, e0, atol=1e-4)
        assert torch.allclose(f1, f0, atol=1e-6)
    meta = torch.load(tmp_path / "ft" / "model.pt", weights_only=True)["metadata"]
    assert meta["finetune"]["init_from"] == str(init) and meta["finetune"]["frozen"] == []


def test_new_element_gets_a_fresh_embedding_row_the_others_are_copied(
        trained_run, acetamide_xyz, emt_xyz, tmp_path):
    from molsym.cli.train import main

    init = trained_run / "model.pt"
    args = [a for a in tiny_args(acetamide_xyz, tmp_path / "ft", "seed=1")
            if not a.startswith(("data.num_train", "data.num_val"))]
    assert main([*args, "data.num_train=10", "data.num_val=3", f"init_from={init}",
                 "trainer.max_epochs=0", "finetune.refit_energy_shift=false",
                 "refit_energy_shift=false"]) == 0
    model, old = load_model(tmp_path / "ft" / "model.pt"), load_model(init)
    assert model.elements == [1, 6, 7, 8] and old.elements == [1, 6, 8]
    rows = [model.elements.index(z) for z in old.elements]
    assert torch.equal(model.embedding.weight[rows], old.embedding.weight)
    assert torch.equal(model.atomic_energy_shift[rows], old.atomic_energy_shift)
    nitrogen = model.embedding.weight[model.elements.index(7)]
    assert nitrogen.abs().sum() > 0 and not any(torch.equal(nitrogen, r)
                                                 for r in old.embedding.weight)
    meta = torch.load(tmp_path / "ft" / "model.pt", weights_only=True)["metadata"]
    assert meta["finetune"]["elements_added"] == [7]
    # each layer's per-element channel mixing: old slices copied, nitrogen's zero (identity)
    mixing = [(a.weight, b.weight) for a, b in zip(model.species_mixing, old.species_mixing,
                                                   strict=True)]
    nitrogen_index = model.elements.index(7)
    assert mixing and all(torch.equal(new[:, rows], was) and not new[:, nitrogen_index].any()
                          for new, was in mixing)
    # the radial floor covers the shortest pairs of both data sets (acetamide's C-C, C-O
    # are shorter than ethanol's)
    pairs_old, pairs_new = old.distance_floor.floor, model.distance_floor.floor
    assert torch.all(pairs_new[rows][:, rows] <= pairs_old)
    # ethanol (no nitrogen) is predicted exactly as by the file it started from, given the
    # same floors (the lowered ones move the soft floor's tail by ~1e-5 eV/A)
    pairs_old.copy_(pairs_new[rows][:, rows])
    for (e0, f0), (e1, f1) in zip(_predict(old, read_file(emt_xyz)[:4]),
                                  _predict(model, read_file(emt_xyz)[:4]), strict=True):
        assert torch.allclose(e1, e0, atol=1e-5) and torch.allclose(f1, f0, atol=1e-6)
    # the fresh row trains: one epoch without freezing moves it
    assert main([*args, "data.num_train=10", "data.num_val=3", f"init_from={init}",
                 "finetune.freeze=[interactions]", f"hydra.run.dir={tmp_path / 'ft2'}"]) == 0
    trained = load_model(tmp_path / "ft2" / "model.pt")
    assert not torch.equal(trained.embedding.weight[1:], model.embedding.weight[1:])


def test_frozen_layers_stay_unchanged_the_rest_trains_with_its_own_lr(
        trained_run, emt_xyz, tmp_path):
    from molsym.cli.train import main

    init = trained_run / "model.pt"
    assert main(tiny_args(emt_xyz, tmp_path / "ft", "seed=1", f"init_from={init}",
                          "trainer.max_epochs=2", "finetune.freeze=[embedding,interactions.0]",
                          "finetune.lr=0.002")) == 0
    old, new = _state(init), _state(tmp_path / "ft" / "model.pt")
    frozen = [k for k in old if k == "embedding.weight" or k.startswith("interactions.0.")]
    assert frozen and all(torch.equal(old[k], new[k]) for k in frozen)
    trained = [k for k in old if k.startswith(("interactions.1.", "readouts", "radial"))
               and old[k].is_floating_point()]
    assert any(not torch.equal(old[k], new[k]) for k in trained)
    ckpt = torch.load(tmp_path / "ft" / "checkpoints" / "last.ckpt", weights_only=True)
    group = ckpt["optimizer_states"][0]["param_groups"][0]
    assert group["initial_lr"] == pytest.approx(0.002)
    meta = torch.load(tmp_path / "ft" / "model.pt", weights_only=True)["metadata"]
    assert set(meta["finetune"]["frozen"]) == set(frozen)


@pytest.mark.parametrize("override, words", [
    ("model.num_channels=16", "model.num_channels=16 contradicts"),
    ("model=invariant", "holds a 'equivariant' model"),
    ("cutoff=4.0", "cutoff=5.0"),
    ("targets=[energy]", "targets=[energy,forces]"),
    ("finetune.freeze=[nonsense]", "'nonsense' names no parameter"),
    ("finetune.lr=-1", "finetune.lr must be a positive number"),
    ("ensemble.size=2", "a single model but ensemble.size=2"),
])
def test_contradicting_config_is_refused_naming_the_key(trained_run, emt_xyz, tmp_path, capsys,
                                                        override, words):
    from molsym.cli.train import main

    args = tiny_args(emt_xyz, tmp_path / "ft", "seed=1", f"init_from={trained_run / 'model.pt'}",
                     "trainer.max_epochs=0")
    if override.startswith("model="):
        args = [a for a in args if not a.startswith("model")]
    assert main([*args, override]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
    assert not (tmp_path / "ft" / "model.pt").exists()


def test_a_committee_is_refused_alone_and_fine_tuned_member_by_member(
        trained_run, emt_xyz, tmp_path, capsys):
    from molsym.cli.train import main

    first = load_model(trained_run / "model.pt")
    second = load_model(trained_run / "model.pt")
    with torch.no_grad():
        second.embedding.weight.mul_(0.5)
    committee = save_model(EnsembleModel.from_models([first, second]), tmp_path / "committee.pt")
    args = tiny_args(emt_xyz, tmp_path / "ft", "seed=1", f"init_from={committee}",
                     "trainer.max_epochs=0", "finetune.refit_energy_shift=false",
                     "refit_energy_shift=false")
    assert main(args) == 2
    assert "committee of 2 members; fine-tune it with ensemble.size=2" in capsys.readouterr().err
    assert main([*args, "ensemble.size=2"]) == 0
    for k, source in enumerate((first, second)):
        member = load_model(tmp_path / "ft" / "members" / str(k) / "model.pt")
        assert torch.equal(member.embedding.weight, source.embedding.weight)
    assert main([*args, "finetune.member=1", f"hydra.run.dir={tmp_path / 'one'}"]) == 0
    one = load_model(tmp_path / "one" / "model.pt")
    assert torch.equal(one.embedding.weight, second.embedding.weight)
