"""Symmetry: measured E(3) equivariance error of molsym's models and the peers (fp32, fp64).

Every molsym model and the peers' aspirin models from the accuracy study (MACE, NequIP,
SchNetPack PaiNN), in float32 and float64, against a non-equivariant control (an MLP on
fixed-order coordinates trained with random O(3) augmentation on the same rMD17 aspirin
frames): built-in vs learned symmetry.

For each of ``--frames`` aspirin test frames and ``--trials`` proper and ``--trials``
improper random rotations with random translations: energy change |E(Qx+t) - E(x)| (meV)
and force deviation max|F(Qx+t) - Q F(x)| (meV/Angstrom). The peers predict in their own
venvs (``<peer>_peer.py predict ... DTYPE``) on the same frames, written exactly
(ase trajectory, float64 positions) to ``runs/benchmarks/symmetry/frames.traj``; a peer
whose venv or trained model is missing is skipped with a note.

    python -m scripts.benchmarks.symmetry --mlp-budget-s 240
    python -m scripts.benchmarks.symmetry --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scripts.benchmarks import common, mace_peer, nequip_peer, schnetpack_peer

ASPIRIN = common.DATA / "rmd17" / "rmd17_aspirin_{}_01.npz"
PEER_MODELS = common.RUNS / "accuracy" / "aspirin"
#: (label, helper module, the peer venv's python, trained model of the accuracy study, dtypes
#: of its ``predict``: NequIP's ``float64+cg`` recomputes the Clebsch-Gordan buffers in float64)
PEERS = [
    ("MACE", mace_peer, mace_peer.MACE_BIN / "python", PEER_MODELS / "mace" / "mace.model",
     ("float32", "float64")),
    ("NequIP", nequip_peer, nequip_peer.NEQUIP_BIN / "python",
     PEER_MODELS / "nequip" / "best.ckpt", ("float32", "float64", "float64+cg")),
    ("SchNetPack PaiNN", schnetpack_peer, schnetpack_peer.SPK_BIN / "python",
     PEER_MODELS / "schnetpack" / "best_model", ("float32", "float64")),
]
CONTROL = "control: MLP on coordinates + O(3) augmentation"


class CoordMLP(torch.nn.Module):
    """Energy from the centred Cartesian coordinates of a fixed-order molecule (not symmetric).

    forward(pos (B, N, 3) Angstrom) -> energy (B,) eV; forces come from autograd.
    """

    def __init__(self, num_atoms: int, hidden: int = 256, e_mean: float = 0.0,
                 e_std: float = 1.0):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3 * num_atoms, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, 1))
        self.register_buffer("e_mean", torch.tensor(e_mean))
        self.register_buffer("e_std", torch.tensor(e_std))

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        x = pos - pos.mean(dim=1, keepdim=True)
        return self.net(x.flatten(1)).squeeze(-1) * self.e_std + self.e_mean

    def energy_forces(self, pos: torch.Tensor, create_graph: bool = False):
        pos = pos.detach().requires_grad_(True)
        energy = self(pos)
        (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=create_graph)
        return energy, -grad


def arrays(structures) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pos = torch.tensor(np.stack([a.positions for a in structures]))
    energy = torch.tensor([a.info["energy"] for a in structures])
    forces = torch.tensor(np.stack([a.arrays["forces"] for a in structures]))
    return pos, energy, forces


def random_o3(gen: torch.Generator, batch: int) -> torch.Tensor:
    """(batch, 3, 3) random orthogonal matrices, half of them improper."""
    q, r = torch.linalg.qr(torch.randn(batch, 3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)
    sign = torch.where(torch.rand(batch, generator=gen) < 0.5, -1.0, 1.0).to(q)
    return q * sign.view(-1, 1, 1)


def train_mlp(train, budget_s: float, seed: int = 0) -> tuple[CoordMLP, int]:
    """Train the control for ``budget_s`` seconds with O(3) augmentation; returns (model, steps)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    pos, energy, forces = (t.float() for t in arrays(train))
    model = CoordMLP(pos.shape[1], e_mean=float(energy.mean()), e_std=float(energy.std()))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    f_scale = float(forces.pow(2).mean().sqrt())
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget_s:
        idx = torch.randint(len(pos), (32,), generator=gen)
        rot = random_o3(gen, len(idx)).float()
        p, f = pos[idx] @ rot.transpose(1, 2), forces[idx] @ rot.transpose(1, 2)
        e_pred, f_pred = model.energy_forces(p, create_graph=True)
        loss = (((e_pred - energy[idx]) / model.e_std) ** 2).mean() + 100 * (
            ((f_pred - f) / f_scale) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return model.eval(), steps


def deviations(energy, forces, rots) -> dict[str, float]:
    """Largest energy change and force deviation (meV, meV/Angstrom) under ``rots``.

    ``energy`` ((T + 1) * F,) eV and ``forces`` ((T + 1) * F * N, 3) eV/Angstrom: F frames of
    N atoms as given, then the same F frames moved by each of the T rotations ``rots``
    (T, 3, 3) (and a translation), in that order. Returns {"energy_meV": max|E_k - E_0|,
    "forces_meV_per_A": max|F_k - Q_k F_0|} over frames, atoms and components."""
    rots = np.asarray(rots, dtype=float)
    energy = np.asarray(energy, dtype=float).reshape(len(rots) + 1, -1)
    forces = np.asarray(forces, dtype=float).reshape(len(rots) + 1, energy.shape[1], -1, 3)
    want = np.einsum("tij,fnj->tfni", rots, forces[0])
    return {"energy_meV": 1e3 * float(np.abs(energy[1:] - energy[0]).max()),
            "forces_meV_per_A": 1e3 * float(np.abs(forces[1:] - want).max())}


def moved(frames, rots, shifts) -> list:
    """``frames``, then ``frames`` moved by each rotation and shift (:func:`deviations`)."""
    from molsym.testing import transformed

    return list(frames) + [transformed(a, r, t) for r, t in zip(rots, shifts, strict=True)
                           for a in frames]


def mlp_errors(model: CoordMLP, frames, rots, shifts, dtype) -> dict[str, float]:
    model = model.to(dtype)
    pos, _, _ = arrays(moved(frames, rots, shifts))
    energy, forces = model.energy_forces(pos.to(dtype))
    return deviations(energy.detach().double().numpy(),
                      forces.detach().double().reshape(-1, 3).numpy(), rots)


def molsym_errors(model, frames, rots, shifts) -> dict[str, float]:
    from molsym.testing import evaluate

    all_frames, nf = moved(frames, rots, shifts), len(frames)
    outs = [evaluate(model, all_frames[i:i + nf]) for i in range(0, len(all_frames), nf)]
    return deviations(torch.cat([o["energy"].double() for o in outs]).numpy(),
                      torch.cat([o["forces"].double() for o in outs]).numpy(), rots)


def peer_errors(frames, rots, shifts, out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of :func:`deviations` for each peer in ``PEERS`` and dtype, predicted in the peer's
    venv on the frames written to ``out/frames.traj``; and a note per skipped peer."""
    import ase.io

    out.mkdir(parents=True, exist_ok=True)
    path = out / "frames.traj"  # float64 positions, unlike extxyz's 8 decimals
    ase.io.write(path, [ase.Atoms(a.numbers, a.positions) for a in moved(frames, rots, shifts)])
    rows, skipped = [], []

    def skip(reason: str) -> None:
        skipped.append(reason)
        print(f"symmetry: skipping {reason}", flush=True)

    for label, helper, python, model, dtypes in PEERS:
        if not helper.available():
            skip(f"{label}: no venv at {rel(python.parents[1])}")
            continue
        if not model.is_file():
            skip(f"{label}: no trained model at {rel(model)} (run "
                 "scripts/benchmarks/accuracy.py first)")
            continue
        key = label.split()[-1].lower()
        try:
            for dtype in dtypes:
                npz = out / f"{key}_{dtype.replace('+', '_')}.npz"
                pred = common.predict_in_venv(python, helper.THIS, label, model, path, npz,
                                              out / f"{key}.log", dtype=dtype)
                rows.append({"model": label, "weights": str(model), "dtype": dtype,
                             **deviations(pred["energy"], pred["forces"], rots)})
        except RuntimeError as err:
            skip(f"{label}: {err}")
    return rows, skipped


def rel(path: Path | str) -> str:
    """``path`` relative to the repository when it lies inside it."""
    return str(path).replace(str(common.REPO) + "/", "")


def molsym_models() -> dict[str, Any]:
    """Trained deploy files where the other studies left them, else fresh models."""
    from molsym.models import MODEL_CLASSES

    found = {}
    for name, cls in MODEL_CLASSES.items():
        kind = "flagship" if name == "equivariant" or "equivariant" in name else "invariant"
        # the newest data-efficiency study's N=950 run (e.g. aspirin-steps8000), then older
        studies = sorted((common.RUNS / "data_efficiency").glob(f"aspirin*/{kind}/950/model.pt"),
                         key=lambda p: p.stat().st_mtime, reverse=True)
        candidates = [*studies, common.RUNS / "accuracy" / "aspirin" / "molsym" / "model.pt"]
        path = next((p for p in candidates if p.is_file() and (
            kind != "invariant" or "accuracy" not in str(p))), None)
        found[name] = path if path is not None else cls(elements=[1, 6, 8])
    return found


def measure(args) -> dict[str, Any]:
    from molsym.data.readers import read_file
    from molsym.deploy import load_model
    from molsym.testing import random_orthogonal

    rng = np.random.default_rng(0)
    frames = read_file(str(ASPIRIN).format("test"))[: args.frames]
    rots = [random_orthogonal(rng, proper=k % 2 == 0) for k in range(2 * args.trials)]
    shifts = [rng.normal(scale=3.0, size=3) for _ in rots]
    rows = []
    for name, src in molsym_models().items():
        for dtype in (torch.float32, torch.float64):
            model = load_model(src, dtype=dtype) if isinstance(src, Path) else (
                src.to(dtype).eval())
            errs = molsym_errors(model, frames, rots, shifts)
            rows.append({"model": f"molsym {name}", "weights": str(src) if isinstance(
                src, Path) else "random init", "dtype": str(dtype).split(".")[-1], **errs})
    skipped: list[str] = []
    if args.peers:
        peer_rows, skipped = peer_errors(frames, rots, shifts, common.RUNS / (
            "quick/symmetry" if args.quick else "symmetry"))
        rows += peer_rows
    else:
        skipped = ["all peers: --no-peers"]
    train = read_file(str(ASPIRIN).format("train"))[:950]
    mlp, steps = train_mlp(train, args.mlp_budget_s)
    pos, energy, forces = arrays(read_file(str(ASPIRIN).format("test")))
    _, f_pred = mlp.float().energy_forces(pos.float())
    test_mae = 1e3 * float((f_pred.double() - forces).abs().mean())
    for dtype in (torch.float32, torch.float64):
        rows.append({"model": CONTROL,
                     "weights": f"{steps} Adam steps, {args.mlp_budget_s:g} s",
                     "dtype": str(dtype).split(".")[-1],
                     **mlp_errors(mlp, frames, rots, shifts, dtype)})
    return {"rows": rows, "skipped_peers": skipped, "mlp_test_force_mae": test_mae,
            "mlp_steps": steps, "frames": args.frames, "trials": args.trials}


SHORT = {"molsym equivariant": "molsym\nflagship", "molsym invariant": "molsym\ninvariant",
         "SchNetPack PaiNN": "PaiNN", CONTROL: "MLP\ncontrol"}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    labels = [f"{SHORT.get(r['model'], r['model'])}\n{r['dtype']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.75 * len(rows)), 3.8))
    x = np.arange(len(rows))
    floor = 1e-12
    ax.bar(x - 0.2, [max(r["forces_meV_per_A"], floor) for r in rows], 0.4,
           label="max force deviation (meV/Å)")
    ax.bar(x + 0.2, [max(r["energy_meV"], floor) for r in rows], 0.4,
           label="max energy change (meV)")
    ax.set_yscale("log")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_title("Equivariance error under random rotations, reflections, translations "
                 "(exact 0 drawn at 1e-12)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def force_rms() -> float:
    """RMS of the reference force components of aspirin test_01 (meV/Angstrom)."""
    from molsym.data.readers import read_file

    _, _, forces = arrays(read_file(str(ASPIRIN).format("test")))
    return 1e3 * float(forces.pow(2).mean().sqrt())


def largest(rows: list[dict[str, Any]], dtype: str, key: str = "forces_meV_per_A"
            ) -> tuple[float, str] | None:
    """The largest ``key`` among the rows of ``dtype`` other than the control, and its model."""
    found = [(r[key], r["model"]) for r in rows if r["dtype"] == dtype and r["model"] != CONTROL]
    return max(found) if found else None


def report(results: dict[str, Any]) -> str:
    rows = [[r["model"], rel(r["weights"]), r["dtype"], r["energy_meV"],
             r["forces_meV_per_A"]] for r in results["rows"]]
    skipped = results.get("skipped_peers", [])
    peers_run = sorted({r["model"] for r in results["rows"]} & {p[0] for p in PEERS})
    lines = [
        f"{results['frames']} rMD17 aspirin test frames, {results['trials']} random proper + "
        f"{results['trials']} improper rotations, each with a random translation; the largest "
        f"deviation over all frames, atoms and transformations. The peers are the aspirin "
        f"models trained in the accuracy study (files in the weights column), evaluated on the "
        f"same frames in their own venvs.", "",
        common.md_table(["model", "weights", "dtype", "max energy change (meV)",
                         "max force deviation (meV/Å)"], rows), ""]
    if skipped:
        lines += ["Not measured: " + "; ".join(skipped) + ".", ""]
    worst = {d: largest(results["rows"], d) for d in ("float32", "float64")}
    if worst["float64"] and worst["float32"]:
        lines += [
            f"Largest force deviation of the models other than the control: "
            f"{worst['float64'][0]:.2g} meV/Å in float64 ({worst['float64'][1]}), "
            f"{worst['float32'][0]:.2g} meV/Å in float32 ({worst['float32'][1]}).", ""]
    lines += [
        f"The control's force MAE on all of test_01 is {results['mlp_test_force_mae']:.0f} "
        f"meV/Å after {results['mlp_steps']} steps, against a force RMS of "
        f"{force_rms():.0f} meV/Å in test_01: in this budget it learned neither the potential "
        f"nor the symmetry (augmentation can only teach the symmetry as far as the fit goes). "
        f"molsym's models are equivariant by construction: their float64 deviations are at "
        f"rounding level. Where the total energy is a float32 number (molsym, MACE), an "
        f"aspirin energy (about -17.6 keV) is resolved to about 2 meV, so a float32 energy "
        f"change is either exactly 0 or at least that; NequIP and SchNetPack add their energy "
        f"shifts in float64 (below).", ""]
    if peers_run:
        lines += [
            "How the peers ran (" + ", ".join(peers_run) + "): `scripts/benchmarks/<peer>_peer.py "
            "predict MODEL frames.traj OUT.npz 50 DTYPE` in the peer's venv, on the frames "
            "written with float64 positions. MACE: its ASE calculator "
            "(`MACECalculator(default_dtype=...)`) casts the whole model, the per-element "
            "reference energies included. NequIP: for float64 the checkpoint's training module "
            "is rebuilt with `model_dtype: float64` and loads the stored weights and buffers; "
            "with `model_dtype: float32` nequip still keeps positions, edge vectors, the shifted "
            "per-atom energies, the total energy and the forces in float64. SchNetPack: for "
            "float64 the saved model (`model.to(torch.float64)`) and its inputs are cast; in "
            "float32 the saved model still adds the mean energy offset in float64 (its "
            "`CastTo64`, `AddOffsets` post-processing).", "",
            "The MACE and NequIP files store the Clebsch-Gordan coefficients of their tensor "
            "products as buffers with float32 values (both models were built in float32; "
            "MACE: `U_matrix_*` of the symmetric contractions and `_w3j`; NequIP: `_w3j`), "
            "and casting the model to float64 keeps those values. The `float64+cg` row is "
            "NequIP in float64 with its `_w3j` buffers taken from a model freshly built in "
            "float64 (same config); MACE's were not recomputed.", ""]
    lines += ["![equivariance error](img/symmetry.png)", "",
              f"Command: `{results['command']}`. {common.env_line(results['env'])}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--mlp-budget-s", type=float, default=240)
    parser.add_argument("--quick", action="store_true", help="3 frames, 10 s MLP")
    parser.add_argument("--no-peers", dest="peers", action="store_false",
                        help="skip MACE, NequIP and SchNetPack")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    name = "symmetry_quick" if args.quick else "symmetry"
    if args.quick:
        args.frames, args.trials, args.mlp_budget_s = 3, 2, 10
    if args.report_only:
        results = common.load_result(name)
    else:
        results = measure(args)
        results.update({"command": "python -m scripts.benchmarks.symmetry " + " ".join(
            argv if argv is not None else sys.argv[1:]),
            # molsym and the control in-process; the peers in subprocesses, OMP_NUM_THREADS=1
            "env": common.environment(peers=("mace", "nequip", "schnetpack"),
                                      threads=torch.get_num_threads())})
        common.save_result(name, results)
    plot(results, common.img_path("symmetry", args.quick))
    if not args.quick:
        common.write_section("Symmetry", report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
