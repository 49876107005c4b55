"""Symmetry and physics assertions for any molsym-style model (shipped for users' models too).

Every helper takes a model with the molsym contract (``cutoff`` attribute, forward as in
:class:`molsym.models.AtomisticModel`) and ``ase.Atoms``; it builds graphs with
:func:`molsym.data.graph.atoms_to_graph` in the model's dtype, runs the model in eval mode and
raises ``AssertionError`` with the largest deviation when a property does not hold.
Default tolerances depend on the dtype: 1e-10 (float64) or 1e-4 (float32), relative to the
largest magnitude of the reference values, plus the same absolute amount.
"""

from __future__ import annotations

import ase
import numpy as np
import torch
from torch_geometric.data import Batch

from molsym import keys
from molsym.data.graph import atoms_to_graph
from molsym.dtypes import model_dtype
from molsym.models import predict_batch

_VECTOR_OUTPUTS = (keys.FORCES, keys.DIPOLE)
_SKIP = (keys.CHARGES,)


def default_tolerance(model: torch.nn.Module) -> float:
    """1e-10 for float64 models, 1e-4 otherwise."""
    return 1e-10 if model_dtype(model) == torch.float64 else 1e-4


def evaluate(
    model: torch.nn.Module,
    structures: list[ase.Atoms],
    compute_forces: bool = True,
    compute_stress: bool = False,
) -> dict[str, torch.Tensor]:
    """Outputs of ``model`` on a batch of ``structures`` (eval mode, detached tensors)."""
    graphs = [atoms_to_graph(a, model.cutoff, dtype=model_dtype(model)) for a in structures]
    batch = Batch.from_data_list(graphs)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = predict_batch(model, batch, compute_forces, compute_stress)
    finally:
        model.train(was_training)
    return {k: v.detach() for k, v in out.items()}


def assert_close(actual, expected, tol: float, what: str) -> None:
    """``|actual - expected| <= tol * (1 + max|expected|)`` elementwise, else AssertionError."""
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}")
    bound = tol * (1.0 + float(expected.abs().max()) if expected.numel() else 1.0)
    err = float((actual - expected).abs().max()) if expected.numel() else 0.0
    if not err <= bound:
        raise AssertionError(f"{what}: max deviation {err:.3e} > tolerance {bound:.3e}")


def random_orthogonal(rng: np.random.Generator, proper: bool = True) -> np.ndarray:
    """A random 3x3 rotation (det +1) or, with ``proper=False``, an improper one (det -1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q = -q
    return q if proper else -q


def transformed(atoms: ase.Atoms, rotation: np.ndarray, shift=(0.0, 0.0, 0.0)) -> ase.Atoms:
    """Copy of ``atoms`` with positions ``R r + shift`` (and the cell rotated too)."""
    out = atoms.copy()
    out.set_cell(atoms.cell[:] @ rotation.T, scale_atoms=False)
    out.positions = atoms.positions @ rotation.T + np.asarray(shift)
    return out


def _compare_transformed(model, atoms, rotations, shifts, tol, stress: bool) -> None:
    ref = evaluate(model, [atoms], compute_stress=stress)
    moved = [transformed(atoms, r, s) for r, s in zip(rotations, shifts, strict=True)]
    outs = evaluate(model, moved, compute_stress=stress)
    n = len(atoms)
    for k, rot in enumerate(rotations):
        rt = torch.as_tensor(rot, dtype=torch.float64)
        for key, value in ref.items():
            if key in _SKIP:
                continue
            got = outs[key][k * n : (k + 1) * n] if key == keys.FORCES else outs[key][k : k + 1]
            want = value.double()
            if key in _VECTOR_OUTPUTS:
                want = want @ rt.T
            elif key == keys.STRESS:
                want = rt @ want @ rt.T
            kind = "proper" if np.linalg.det(rot) > 0 else "improper"
            assert_close(got, want, tol, f"{key} under {kind} rotation #{k}")


def assert_invariant_energy(
    model, atoms: ase.Atoms, trials: int = 3, tol: float | None = None, seed: int = 0
) -> None:
    """Energy and scalar outputs unchanged under rotations, reflections and translations;
    forces, dipoles (polar vectors) and stress transform with R (checked at the same time)."""
    assert_e3_equivariant(model, atoms, trials, tol, seed)


def assert_equivariant_forces(
    model, atoms: ase.Atoms, trials: int = 3, tol: float | None = None, seed: int = 0
) -> None:
    """Forces and dipoles rotate as polar vectors under proper and improper rotations."""
    assert_e3_equivariant(model, atoms, trials, tol, seed)


def assert_e3_equivariant(
    model, atoms: ase.Atoms, trials: int = 3, tol: float | None = None, seed: int = 0
) -> None:
    """All outputs transform correctly under ``trials`` random proper and ``trials`` improper
    rotations combined with random translations (periodic cells: stress too)."""
    tol = default_tolerance(model) if tol is None else tol
    rng = np.random.default_rng(seed)
    rotations = [random_orthogonal(rng, proper=k % 2 == 0) for k in range(2 * trials)]
    shifts = [rng.normal(scale=3.0, size=3) for _ in rotations]
    _compare_transformed(model, atoms, rotations, shifts, tol, stress=bool(atoms.pbc.any()))


def assert_permutation_equivariant(
    model, atoms: ase.Atoms, tol: float | None = None, seed: int = 0
) -> None:
    """Permuting the atoms permutes the forces and charges and leaves everything else."""
    tol = default_tolerance(model) if tol is None else tol
    perm = np.random.default_rng(seed).permutation(len(atoms))
    ref = evaluate(model, [atoms])
    out = evaluate(model, [atoms[perm]])
    for key, value in ref.items():
        want = value[torch.as_tensor(perm)] if key in (keys.FORCES, keys.CHARGES) else value
        assert_close(out[key], want, tol, f"{key} under atom permutation")


def assert_batch_consistent(model, structures: list[ase.Atoms], tol: float | None = None) -> None:
    """A batch gives the same outputs as each structure on its own."""
    tol = default_tolerance(model) if tol is None else tol
    batched = evaluate(model, structures)
    start = 0
    for k, atoms in enumerate(structures):
        single = evaluate(model, [atoms])
        n = len(atoms)
        for key, value in single.items():
            per_atom = key in (keys.FORCES, keys.CHARGES)
            got = batched[key][start : start + n] if per_atom else batched[key][k : k + 1]
            assert_close(got, value, tol, f"{key} of structure {k} in a batch")
        start += n


def assert_forces_match_finite_differences(
    model, atoms: ase.Atoms, step: float = 1e-4, tol: float = 1e-6, atom_indices=None
) -> None:
    """Forces equal ``-(E(r + h) - E(r - h)) / 2h`` (central differences, h in Angstrom).

    Meaningful in float64; in float32 use ``step`` ~1e-2 and ``tol`` ~1e-2.
    """
    indices = range(len(atoms)) if atom_indices is None else atom_indices
    forces = evaluate(model, [atoms])[keys.FORCES].double()
    displaced = []
    for i in indices:
        for c in range(3):
            for sign in (1.0, -1.0):
                moved = atoms.copy()
                moved.positions[i, c] += sign * step
                displaced.append(moved)
    energy = evaluate(model, displaced, compute_forces=False)[keys.ENERGY].double()
    fd = -(energy[0::2] - energy[1::2]) / (2 * step)
    assert_close(forces[list(indices)].reshape(-1), fd, tol, "forces vs finite differences")


def assert_stress_matches_finite_differences(
    model, atoms: ase.Atoms, step: float = 1e-5, tol: float = 1e-6
) -> None:
    """Stress equals ``(1/V) dE/d(strain)`` by central differences of symmetric strains."""
    stress = evaluate(model, [atoms], compute_stress=True)[keys.STRESS][0].double()
    strained = []
    for a in range(3):
        for b in range(3):
            for sign in (1.0, -1.0):
                eps = np.zeros((3, 3))
                eps[a, b] += 0.5 * sign * step
                eps[b, a] += 0.5 * sign * step
                moved = atoms.copy()
                moved.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
                strained.append(moved)
    energy = evaluate(model, strained, compute_forces=False)[keys.ENERGY].double()
    fd = ((energy[0::2] - energy[1::2]) / (2 * step) / atoms.get_volume()).view(3, 3)
    assert_close(stress, fd, tol, "stress vs finite differences of strain")


def assert_separable(
    model, first: ase.Atoms, second: ase.Atoms, tol: float | None = None
) -> None:
    """Two structures further apart than the cutoff: energy is the sum, forces unchanged."""
    tol = default_tolerance(model) if tol is None else tol
    gap = model.cutoff + 1.0
    offset = first.positions[:, 0].max() - second.positions[:, 0].min() + gap
    far = second.copy()
    far.positions[:, 0] += offset
    both = first + far
    out = evaluate(model, [both])
    parts = evaluate(model, [first, second])
    assert_close(out[keys.ENERGY], parts[keys.ENERGY].sum().view(1), tol, "energy of the pair")
    if keys.FORCES in parts:
        assert_close(out[keys.FORCES], parts[keys.FORCES], tol, "forces of the pair")


def assert_smooth_at_cutoff(
    model, atoms: ase.Atoms, probe: int = 1, delta: float = 1e-3, tol: float = 1e-5
) -> None:
    """An atom of element ``probe`` crossing the cutoff of ``atoms`` changes energy and forces
    continuously: outputs at ``cutoff - delta`` and ``cutoff + delta`` differ by < ``tol``.

    The probe approaches along +x the atom with the largest x, so that atom's cutoff sphere is
    the first one it enters.
    """
    k = int(np.argmax(atoms.positions[:, 0]))
    results = []
    for dist in (model.cutoff - delta, model.cutoff + delta):
        both = atoms + ase.Atoms(numbers=[probe], positions=[atoms.positions[k] + [dist, 0, 0]])
        results.append(evaluate(model, [both]))
    below, above = results
    assert_close(below[keys.ENERGY], above[keys.ENERGY], tol, "energy across the cutoff")
    if keys.FORCES in below:
        assert_close(below[keys.FORCES], above[keys.FORCES], tol, "forces across the cutoff")
