"""Train and evaluate mace-torch (the peer venv under peers/mace) under a wall-clock budget.

MACE has no time limit option, so training runs under a timeout; the run is then finished
with ``--restart_latest`` and ``--max_num_epochs 1`` (no more epochs: MACE loads its best
checkpoint, evaluates and writes the ``.model`` file). Test errors are computed here from
``mace_eval_configs`` predictions, the same way for every peer.

Energies and forces in float32 or float64 (the symmetry study) come from ``predict``, run with
the python of the mace venv:

    peers/mace/bin/python -m scripts.benchmarks.mace_peer predict mace.model frames.traj \
        out.npz 50 float64
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import ase.io
import numpy as np

from scripts.benchmarks.common import PEERS, error_metrics, run_logged

MACE_BIN = PEERS / "mace" / "bin"
THIS = Path(__file__).resolve()
#: A CPU-sized MACE, about the size of molsym's default flagship (2 layers, 32 channels).
#: The cutoff (``--r_max``) is :func:`train`'s ``r_max``, 5 Angstrom unless given.
MACE_ARGS = ["--model", "MACE", "--hidden_irreps", "32x0e + 32x1o", "--max_L", "1",
             "--correlation", "3", "--num_interactions", "2", "--num_radial_basis", "8"]


def available() -> bool:
    """Whether the mace-torch venv exists."""
    return (MACE_BIN / "mace_run_train").is_file()


def write_extxyz(structures: list[ase.Atoms], path: Path) -> Path:
    """Labelled structures as extxyz with ``REF_energy`` / ``REF_forces`` (eV, eV/Angstrom)."""
    out = []
    for atoms in structures:
        a = ase.Atoms(atoms.numbers, atoms.positions)
        a.info["REF_energy"] = float(atoms.info["energy"])
        a.arrays["REF_forces"] = np.asarray(atoms.arrays["forces"], dtype=float)
        out.append(a)
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, out, format="extxyz")
    return path


def train(run_dir: Path, train_xyz: Path, valid_xyz: Path, budget_s: float | None,
          batch_size: int = 5, e0s: str = "average", forces_weight: float = 100.0,
          seed: int = 0, max_epochs: int = 100000, eval_interval: int = 1,
          patience: int = 1000, r_max: float = 5.0, model_args: list[str] | None = None,
          finish: bool = True) -> dict[str, Any]:
    """Train MACE for ``budget_s`` seconds (None: no cap) or ``max_epochs`` epochs, whichever
    ends first; returns {"model", "wall_s", "epochs_to_best", "command"}. ``patience`` counts
    validations (every ``eval_interval`` epochs) without improvement; ``r_max`` is the cutoff
    in Angstrom; ``model_args``: the model's flags instead of :data:`MACE_ARGS`. ``finish``:
    after the first call, finish a run that the budget stopped (a second call, see the module
    docstring); a run that ends by ``max_epochs`` writes its model in the first call."""
    run_dir.mkdir(parents=True, exist_ok=True)
    model = run_dir / "mace.model"
    args = [str(MACE_BIN / "mace_run_train"), "--name", "mace", "--work_dir", str(run_dir),
            "--train_file", str(train_xyz), "--valid_file", str(valid_xyz),
            "--energy_key", "REF_energy", "--forces_key", "REF_forces", "--E0s", e0s,
            *(MACE_ARGS if model_args is None else model_args), "--r_max", f"{r_max:g}",
            "--batch_size", str(batch_size),
            "--valid_batch_size", "25",
            "--energy_weight", "1.0", "--forces_weight", str(forces_weight), "--lr", "0.01",
            "--ema", "--ema_decay", "0.99", "--eval_interval", str(eval_interval),
            "--patience", str(patience),
            "--device", "cpu", "--default_dtype", "float32", "--seed", str(seed),
            "--num_workers", "0", "--restart_latest"]
    log = run_dir / "bench.log"
    wall = None
    if not model.is_file():
        _, wall = run_logged(args + ["--max_num_epochs", str(max_epochs)], log, timeout=budget_s)
        if finish:
            run_logged(args + ["--max_num_epochs", "1"], log)
        found = sorted(run_dir.rglob("mace*.model"))
        if found and not model.is_file():
            best = [p for p in found if "compiled" not in p.name]
            (best or found)[0].rename(model)
    ckpts = sorted(run_dir.rglob("*epoch-*.pt"))
    epochs = None
    if ckpts:
        epochs = max(int(p.stem.split("epoch-")[1].split("_")[0]) for p in ckpts) + 1
    return {"model": str(model) if model.is_file() else None, "wall_s": wall,
            "epochs_to_best": epochs, "command": " ".join(args[:1] + [a if " " not in a else
                                                                       repr(a) for a in args[1:]])}


def setup_seconds(run_dir: Path) -> float | None:
    """Seconds from MACE's first log line to the start of its training loop (data loading,
    statistics, model build), read from the time stamps of ``run_dir/logs/*.log``."""
    import re
    from datetime import datetime

    logs = sorted((run_dir / "logs").glob("*.log"))
    if not logs:
        return None
    stamps = []
    for line in logs[0].read_text().splitlines():
        match = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) INFO: (.*)", line)
        if match:
            stamps.append((datetime.fromisoformat(match.group(1)), match.group(2)))
    start = next((t for t, msg in stamps if "TRAINING" in msg), None)
    return (start - stamps[0][0]).total_seconds() if stamps and start else None


def _log_stamps(run_dir: Path) -> list[tuple[float, str]]:
    """(UNIX time, message) of the INFO lines of MACE's first log in ``run_dir/logs``."""
    import re
    from datetime import datetime

    logs = sorted((run_dir / "logs").glob("*.log"))
    stamps = []
    for line in (logs[0].read_text().splitlines() if logs else []):
        match = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) INFO: (.*)", line)
        if match:
            stamps.append((datetime.fromisoformat(match.group(1)).timestamp(), match.group(2)))
    return stamps


def epoch_boundaries(run_dir: Path) -> list[float]:
    """UNIX times of MACE's validation lines in its log: ``Initial`` (before epoch 0), then
    ``Epoch k`` (after epoch k's training and validation; ``eval_interval`` 1), first line of
    each; the epoch clock of ``bench_train``."""
    out: dict[str, float] = {}
    for t, msg in _log_stamps(run_dir):
        head = msg.split(":", 1)[0]
        if (head == "Initial" or head.startswith("Epoch ")) and head not in out:
            out[head] = t
    return list(out.values())


def evaluate(model: Path, test_xyz: Path, out_xyz: Path, log: Path) -> dict[str, Any]:
    """Energy and force MAE/RMSE (meV, meV/Angstrom) of a MACE model on labelled extxyz."""
    cmd = [str(MACE_BIN / "mace_eval_configs"), "--configs", str(test_xyz), "--model",
           str(model), "--output", str(out_xyz), "--default_dtype", "float32",
           "--batch_size", "50"]
    if not out_xyz.is_file():
        run_logged(cmd, log)
    pred = ase.io.read(out_xyz, ":")
    ref = ase.io.read(test_xyz, ":")
    de = np.array([p.info["MACE_energy"] - r.info["REF_energy"]
                   for p, r in zip(pred, ref, strict=True)])
    df = np.concatenate([(p.arrays["MACE_forces"] - r.arrays["REF_forces"]).ravel()
                         for p, r in zip(pred, ref, strict=True)])
    return error_metrics(de, df, [len(r) for r in ref])


def predict(model_path: str, xyz: str, out_npz: str, batch_size: int = 50,
            dtype: str = "float32") -> None:
    """Energies (eV) and forces (eV/Angstrom) of a MACE model on the frames of ``xyz`` (mace
    venv only), frame by frame with MACE's ASE calculator (``MACECalculator``), which casts
    the model to ``default_dtype`` (float32 as trained, or float64). ``batch_size`` is unused
    (the calculator takes one structure); it keeps the ``predict`` signature of the peers."""
    from mace.calculators import MACECalculator

    calc = MACECalculator(model_paths=model_path, device="cpu", default_dtype=dtype)
    energies, forces = [], []
    for atoms in ase.io.read(xyz, ":"):
        a = ase.Atoms(atoms.numbers, atoms.positions)
        a.calc = calc
        energies.append(a.get_potential_energy())
        forces.append(a.get_forces())
    np.savez(out_npz, energy=np.array(energies, dtype=float),
             forces=np.concatenate(forces).astype(float))


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "predict":
        predict(*sys.argv[2:5], *(int(a) for a in sys.argv[5:6]), *sys.argv[6:7])
    else:
        raise SystemExit(f"usage: {sys.argv[0]} predict MODEL XYZ OUT.npz [BATCH] "
                         "[float32|float64]")
