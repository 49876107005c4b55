"""`molsym export`: the artifact runs without molsym and agrees with the Python model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from torch_geometric.data import Batch

from molsym.cli.export import main as export_main
from molsym.data.graph import atoms_to_graph
from molsym.deploy import load_model, save_model
from molsym.deploy.export import INPUT_NAMES, export_model, load_artifact
from molsym.errors import ConfigError
from molsym.models import MODEL_CLASSES, predict_batch

ROOT = Path(__file__).resolve().parents[2]
ELEMENTS = [1, 6, 7, 8]
CUTOFF = 3.5


def small_model(name: str = "equivariant", outputs=("energy", "forces", "dipole", "gap"),
                **kwargs) -> torch.nn.Module:
    """A small model with random (non-default) weights, float64."""
    extra = dict(num_channels=8, num_layers=1, l_max=2) if name == "equivariant" else {}
    extra.update(kwargs)
    model = MODEL_CLASSES[name](
        cutoff=CUTOFF, elements=ELEMENTS, outputs=list(outputs),
        num_radial=6, radial_hidden=16, readout_hidden=8, avg_num_neighbors=6.0,
        atomic_energies={"1": -13.6, "6": -1029.0, "7": -1485.0, "8": -2042.0}, **extra,
    )
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model.double()


def structures() -> list[list[Atoms]]:
    """Batches of structures: molecules of several sizes, rMD17 ethanol frames, a lone atom,
    a three-molecule batch and a periodic cell."""
    npz = np.load(ROOT / "data" / "rmd17_ethanol" / "rmd17_ethanol_test_01.npz")
    ethanol = [Atoms(numbers=npz["nuclear_charges"], positions=npz["coords"][i]) for i in (0, 500)]
    crystal = Atoms("CH2O", positions=[[0, 0, 0], [1.1, 0, 0], [-0.4, 1.0, 0], [0, 0, 1.2]],
                    cell=[[3.2, 0, 0], [0.3, 3.0, 0], [0, 0.2, 3.4]], pbc=True)
    return [
        [molecule("CH4")], [molecule("C6H6")], [molecule("HCN")], [molecule("CH3CH2OH")],
        ethanol, [Atoms("C", positions=[[0, 0, 0]])],
        [molecule("H2O"), molecule("NH3"), molecule("CH3OH")], [crystal],
    ]


def as_inputs(atoms_list: list[Atoms]) -> tuple[Batch, tuple[torch.Tensor, ...]]:
    graphs = [atoms_to_graph(a, CUTOFF, dtype=torch.float64) for a in atoms_list]
    b = Batch.from_data_list(graphs)
    return b, tuple(b[name] for name in INPUT_NAMES)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A model saved as a deploy file and exported through the CLI."""
    tmp = tmp_path_factory.mktemp("export")
    save_model(small_model(), tmp / "model.pt")
    out = tmp / "model.pt2"
    args = ["--model", str(tmp / "model.pt"), "-o", str(out), "--dtype", "float64"]
    assert export_main(args) == 0
    return out, load_model(tmp / "model.pt", dtype=torch.float64)


@pytest.fixture(scope="module")
def artifact(exported) -> tuple:
    """The exported file loaded in this process with plain torch: (callable, metadata)."""
    return load_artifact(exported[0])


STANDALONE = textwrap.dedent("""
    import json, sys
    sys.modules["molsym"] = None  # any import of molsym now fails
    import torch
    files = {"molsym_metadata.json": ""}
    run = torch.export.load(sys.argv[1], extra_files=files).module()
    inputs = torch.load(sys.argv[2], weights_only=True)
    with torch.inference_mode():
        outs = [dict(run(*args)) for args in inputs]
    torch.save(outs, sys.argv[3])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "molsym" and sys.modules[m])
    print(json.dumps({"metadata": json.loads(files["molsym_metadata.json"]),
                      "molsym_modules": loaded}))
""")


def test_artifact_matches_python_model_without_molsym(exported, tmp_path):
    path, model = exported
    batches = [as_inputs(s) for s in structures()]
    torch.save([list(args) for _, args in batches], tmp_path / "inputs.pt")
    script = tmp_path / "standalone.py"
    script.write_text(STANDALONE)
    res = subprocess.run(
        [sys.executable, str(script), str(path), str(tmp_path / "inputs.pt"),
         str(tmp_path / "outputs.pt")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["molsym_modules"] == []
    assert report["metadata"]["cutoff"] == CUTOFF and report["metadata"]["elements"] == ELEMENTS
    outs = torch.load(tmp_path / "outputs.pt", weights_only=True)
    largest_force = 0.0
    for (batch, _), got in zip(batches, outs, strict=True):
        ref = predict_batch(model, batch)
        assert set(got) == {"energy", "forces", "dipole", "charges", "gap"}
        for key in got:
            want = ref[key].detach()
            scale = max(float(want.abs().max()), 1.0)
            assert got[key].dtype == torch.float64 and got[key].shape == want.shape
            assert torch.allclose(got[key], want, rtol=0, atol=1e-10 * scale), key
        largest_force = max(largest_force, float(ref["forces"].abs().max()))
    assert largest_force > 1e-2  # forces are really compared


def test_forces_are_the_energy_gradient(artifact):
    """The exported forces are -dE/dpos of the exported energy (central differences)."""
    run, _ = artifact
    _, args = as_inputs([molecule("CH3CH2OH")])
    forces = run(*args)["forces"]
    pos, h = args[1], 1e-5
    for atom, axis in [(0, 0), (3, 1), (8, 2)]:
        plus, minus = pos.clone(), pos.clone()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        e_plus = run(args[0], plus, *args[2:])["energy"].sum()
        e_minus = run(args[0], minus, *args[2:])["energy"].sum()
        numeric = -(e_plus - e_minus) / (2 * h)
        assert abs(float(numeric - forces[atom, axis])) < 1e-6


def test_metadata_inside_and_beside(exported, artifact):
    path, model = exported
    _, inside = artifact
    beside = json.loads(path.with_name(path.name + ".json").read_text())
    for meta in (inside, beside):
        assert meta["format"] == "export" and meta["dtype"] == "float64"
        assert meta["cutoff"] == model.cutoff and meta["elements"] == model.elements
        assert meta["units"]["energy"] == "eV" and meta["units"]["forces"] == "eV/Angstrom"
        assert [i["name"] for i in meta["inputs"]] == list(INPUT_NAMES)
    assert beside["check_max_rel_deviation"] < 1e-8


def test_unknown_element_is_refused(artifact):
    run, _ = artifact
    atoms = Atoms("CF", positions=[[0, 0, 0], [1.35, 0, 0]])  # F is not a model element
    graphs = Batch.from_data_list([atoms_to_graph(atoms, CUTOFF, dtype=torch.float64)])
    with pytest.raises(RuntimeError, match="not among the model's elements"):
        run(*(graphs[name] for name in INPUT_NAMES))


def test_invariant_model_without_forces_exports(tmp_path):
    """The other model class, and a property model (no forces output: none exported)."""
    model = small_model("invariant", outputs=("energy", "gap"), num_channels=8, num_layers=1)
    meta = export_model(model, tmp_path / "inv.pt2")
    assert meta["check_max_rel_deviation"] < 1e-8 and meta["model_class"] == "invariant"
    assert meta["outputs"] == ["energy", "gap"]


def test_cli_errors(tmp_path, capsys):
    assert export_main(["--model", str(tmp_path / "missing.pt"), "-o", "x.pt2"]) == 2
    assert "neither a model file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_main(["--model", "x.pt", "-o", "y.pt2", "--format", "onnx"])
    with pytest.raises(ConfigError, match="unknown export format"):
        export_model(small_model(), tmp_path / "m.pt2", format="torchscript")
    (tmp_path / "junk.pt2").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="not a molsym export artifact"):
        load_artifact(tmp_path / "junk.pt2")


@pytest.mark.gpu
def test_aoti_on_cuda(tmp_path):
    """AOTInductor package for CUDA agrees with the Python model (float64)."""
    model = small_model()
    meta = export_model(model, tmp_path / "m.pt2", format="aoti", device="cuda")
    assert meta["check_max_rel_deviation"] < 1e-8
    run, inside = load_artifact(tmp_path / "m.pt2")
    assert inside["format"] == "aoti" and inside["device"] == "cuda"
    batch, args = as_inputs([molecule("C6H6"), molecule("CH3CH2OH")])
    got = run(*(a.cuda() for a in args))
    ref = predict_batch(model.cuda().eval(), batch.cuda())
    assert torch.allclose(got["forces"], ref["forces"], rtol=0, atol=1e-9)
