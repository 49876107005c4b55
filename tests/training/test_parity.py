"""Parity plots: energies relative to their mean, a density plot for many points, an error
histogram, and no per-atom energy panel for a single composition."""

import numpy as np
from ase.build import molecule

from molsym.data.graph import atoms_to_graph
from molsym.models import EquivariantModel
from molsym.training import evaluate as ev


def _graphs(names):
    graphs = []
    for k, name in enumerate(names):
        atoms = molecule(name)
        atoms.positions += np.random.default_rng(k).normal(0, 0.05, atoms.positions.shape)
        atoms.info["energy"] = -10.0 * len(atoms) + 0.1 * k
        graphs.append(atoms_to_graph(atoms, 4.0))
    return graphs


def test_per_atom_energy_only_for_several_compositions():
    model = EquivariantModel(cutoff=4.0, elements=[1, 6, 8], num_channels=8, num_layers=1,
                             l_max=1, outputs=["energy"])
    _, pairs = ev.evaluate(model, _graphs(["H2O"] * 3))
    assert set(pairs) == {"energy"}
    metrics, pairs = ev.evaluate(model, _graphs(["H2O", "CH4", "H2O"]))
    assert set(pairs) == {"energy", "energy_per_atom"} and "energy_per_atom" in metrics


def test_plots_relative_energies_density_and_error_histogram(tmp_path, monkeypatch):
    import matplotlib.figure

    rng = np.random.default_rng(0)
    ref = -97_000_000.0 + rng.normal(0, 50, 3000)  # meV: totals far from 0, many points
    pairs = {"energy": (ref, ref + rng.normal(0, 5, ref.size)),
             "forces": (rng.normal(0, 1e3, 300), rng.normal(0, 1e3, 300))}
    metrics = {"energy": {"mae": 4.0, "rmse": 5.0, "unit": "meV"},
               "forces": {"mae": 800.0, "rmse": 1000.0, "unit": "meV/Angstrom"}}
    figures = []
    saved = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda self, *a, **k: (figures.append(self), saved(self, *a, **k))[1])
    paths = ev.parity_plots(pairs, metrics, tmp_path, "metrics")
    assert [p.name for p in paths] == ["metrics_parity_energy.png", "metrics_parity_forces.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    energy, forces = ([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
                      for fig in figures)
    parity, hist = energy[0], energy[1]
    assert abs(np.mean(parity.get_xlim())) < 1000  # relative: around 0, not -9.7e7
    assert parity.collections and type(parity.collections[0]).__name__ == "PolyCollection"
    assert len(parity.get_xticks()) <= 7 and hist.patches  # few ticks; histogram bars
    assert type(forces[0].collections[0]).__name__ == "PathCollection"  # scatter: few points
