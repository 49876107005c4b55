"""The model contract: config round trip, outputs, errors, charges, training gradients."""

import json

import pytest
import torch
from ase.build import molecule
from torch_geometric.data import Batch

from molsym import testing
from molsym.data.graph import atoms_to_graph
from molsym.errors import ConfigError, InputError
from molsym.models import MODEL_CLASSES, predict_batch
from tests.models.conftest import CONFIGS, build_model, ethanol, periodic_water


def batch_of(structures, cutoff=3.5, dtype=torch.float64):
    return Batch.from_data_list([atoms_to_graph(a, cutoff, dtype=dtype) for a in structures])


def test_model_classes_allowlist():
    assert set(MODEL_CLASSES) == {"equivariant", "invariant"}
    for name, cls in MODEL_CLASSES.items():
        assert cls.model_name == name


@pytest.mark.parametrize("config", list(CONFIGS))
def test_config_round_trip_rebuilds_the_same_model(config):
    model = build_model(config, torch.float64)
    cfg = json.loads(json.dumps(model.config()))
    rebuilt = type(model)(**cfg).double()
    rebuilt.load_state_dict(model.state_dict())
    state = model.state_dict()
    assert state["r_max"].item() == pytest.approx(model.cutoff)
    assert state["atomic_numbers"].tolist() == model.elements
    b = batch_of([ethanol(), molecule("H2O")])
    a, r = predict_batch(model, b), predict_batch(rebuilt, b)
    assert set(a) == {"energy", "forces", "dipole", "charges", "gap"}
    for key in a:
        torch.testing.assert_close(a[key], r[key], rtol=0, atol=0)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_output_shapes_and_flags(config):
    model = build_model(config, torch.float32)
    structures = [ethanol(), periodic_water()]
    b = batch_of(structures, dtype=torch.float32)
    out = predict_batch(model, b, compute_forces=True, compute_stress=True)
    n = sum(len(a) for a in structures)
    assert out["energy"].shape == (2,) and out["forces"].shape == (n, 3)
    assert out["stress"].shape == (2, 3, 3) and out["dipole"].shape == (2, 3)
    assert out["gap"].shape == (2,) and out["charges"].shape == (n,)
    assert torch.all(out["stress"][0] == 0)  # molecule: no volume, no stress
    assert torch.any(out["stress"][1] != 0)
    no_forces = predict_batch(model, b, compute_forces=False)
    assert "forces" not in no_forces and "stress" not in no_forces
    torch.testing.assert_close(no_forces["energy"], out["energy"])


def test_predict_batch_accepts_a_single_graph():
    model = build_model("equivariant-l1", torch.float64)
    graph = atoms_to_graph(ethanol(), 3.5, dtype=torch.float64)
    single = predict_batch(model, graph)
    batched = predict_batch(model, Batch.from_data_list([graph]))
    for key in batched:
        torch.testing.assert_close(single[key], batched[key])


def test_stress_needs_a_cell():
    model = build_model("invariant", torch.float64)
    b = batch_of([ethanol()])
    with pytest.raises(ValueError, match="cell"):
        model(b.z, b.pos, b.edge_index, b.batch, 1, compute_stress=True)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_unknown_element_is_a_clear_error(config):
    model = build_model(config, torch.float64)
    with pytest.raises(InputError, match=r"Cl.*not supported") as info:
        predict_batch(model, batch_of([molecule("CH3Cl")]))
    assert isinstance(info.value, ValueError)


def test_bad_configs():
    cls = MODEL_CLASSES["equivariant"]
    with pytest.raises(ConfigError, match="Z=\\[8\\]"):
        cls(elements=[1, 6, 8], atomic_energies={"1": -13.6, "6": -1029.0})
    with pytest.raises(ConfigError, match="3 values"):
        cls(elements=[1, 6], atomic_energies=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="l_max"):
        cls(l_max=3)
    with pytest.raises(ConfigError, match="distinct"):
        cls(elements=[1, 1])


@pytest.mark.parametrize("config", list(CONFIGS))
def test_charges_sum_to_total_charge(config):
    model = build_model(config, torch.float64)
    b = batch_of([ethanol(), molecule("H2O")])
    out = predict_batch(model, b)
    sums = torch.zeros(2, dtype=torch.float64).index_add_(0, b.batch, out["charges"])
    torch.testing.assert_close(sums, torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    b.total_charge = torch.tensor([1.0, -1.0], dtype=torch.float64)
    out = predict_batch(model, b)
    sums = torch.zeros(2, dtype=torch.float64).index_add_(0, b.batch, out["charges"])
    torch.testing.assert_close(sums, b.total_charge, atol=1e-12, rtol=0)


def test_energy_scale_zero_gives_the_atomic_reference_energies():
    model = MODEL_CLASSES["equivariant"](
        cutoff=3.5, elements=[1, 6, 8], l_max=1, num_channels=8, energy_scale=0.0,
        atomic_energies=[-13.6, -1029.0, -2042.0],
    ).double()
    out = testing.evaluate(model, [molecule("CH3CH2OH")])
    # parameters start in float32: the references are exact to float32 precision
    assert out["energy"].item() == pytest.approx(6 * -13.6 + 2 * -1029.0 - 2042.0, abs=1e-4)
    assert out["forces"].abs().max() == 0


def test_property_denormalisation():
    model = build_model("equivariant-l1", torch.float64)
    with torch.no_grad():
        for p in model.property_heads["gap"].parameters():
            p.zero_()
    out = testing.evaluate(model, [ethanol()])
    assert out["gap"].item() == pytest.approx(6.0)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_force_loss_trains_every_weight(config):
    model = build_model(config, torch.float32).train()
    b = batch_of([ethanol(), molecule("H2O")], dtype=torch.float32)
    out = predict_batch(model, b)
    assert out["forces"].requires_grad
    out["forces"].pow(2).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None and "shift" not in n
               and "head" not in n]
    assert not missing


def test_no_grad_outputs_are_plain_tensors():
    model = build_model("equivariant-l2", torch.float32).eval()
    with torch.no_grad():
        out = predict_batch(model, batch_of([ethanol()], dtype=torch.float32))
    assert not any(v.requires_grad for v in out.values())
    assert out["forces"].numpy().shape == (9, 3)


def test_inference_mode_gives_a_clear_error_for_forces():
    model = build_model("invariant", torch.float32).eval()
    b = batch_of([ethanol()], dtype=torch.float32)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match="inference_mode"):
            predict_batch(model, b)
        out = predict_batch(model, b, compute_forces=False)
    assert out["energy"].shape == (1,)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_traceable_path_matches_autograd_path(config, monkeypatch):
    """The torch.func.grad path used under torch.compile gives the same outputs and the same
    parameter gradients of a force + stress loss (checked eagerly, no compile needed)."""
    model = build_model(config, torch.float64).train()
    b = batch_of([ethanol(), periodic_water()])

    def run():
        model.zero_grad()
        out = predict_batch(model, b, compute_stress=True)
        (out["forces"].pow(2).sum() + out["stress"].pow(2).sum() + out["dipole"].sum()).backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    ref, ref_grads = run()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    got, got_grads = run()
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-10, atol=1e-12)
    assert set(got_grads) == set(ref_grads)
    for name in ref_grads:
        torch.testing.assert_close(got_grads[name], ref_grads[name], rtol=1e-9, atol=1e-12)
