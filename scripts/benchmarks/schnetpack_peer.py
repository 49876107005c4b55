"""Train and evaluate SchNetPack 2 (PaiNN; the peer venv under peers/schnetpack) under a
wall-clock budget.

Training uses SchNetPack's own machinery in its venv: this file, run with the python of the
schnetpack venv (``train`` subcommand), converts the extxyz frames into SchNetPack's
``ASEAtomsData`` database (``data.db`` in the run folder, eV and eV/Angstrom) with a fixed
split file (the same 950/50 frames as the other models), builds an ``AtomsDataModule``, a
``NeuralNetworkPotential`` with a ``PaiNN`` representation, an ``AtomisticTask`` and fits it with
a Lightning ``Trainer`` whose ``max_time`` is the budget (the fit only, as for molsym and
NequIP; database, statistics and model build come before it), with a process timeout as a
backstop. SchNetPack's ``ModelCheckpoint`` writes the best model by validation loss
(``best_model``, EMA weights, with post-processing) and that is the trained model. The settings
are written to ``config.json`` in the run folder.

Test errors are computed here, the same way as for the other peers, from predictions that
this file makes when run with the python of the schnetpack venv:

    peers/schnetpack/bin/python -m scripts.benchmarks.schnetpack_peer predict \
        best_model test.xyz out.npz

Model (``MODEL``): PaiNN as in SchNetPack's rMD17 experiment (``experiment=rmd17``: PaiNN with
128 features, 3 interactions, 20 Gaussian radial functions, cosine cutoff 5 Angstrom; energy
by an ``Atomwise`` sum, forces by autograd with ``Forces``), scaled to the CPU budget by
halving the features to 64: 157k instead of 589k parameters and twice the steps per second
(92 vs 196 ms per training step, batch of 10 aspirin frames, one thread), so about 60 epochs
of 950 frames fit a 15-minute budget instead of 30. Training as in that experiment: MSE
losses of energy and forces weighted 0.01 : 0.99, Adam (SchNetPack's AdamW with weight decay 0)
lr 1e-3, batch 10, EMA 0.995 (SchNetPack's callback: validation and the saved model use the
averaged weights), energy mean per atom removed (``RemoveOffsets``/``AddOffsets``), float32;
ReduceLROnPlateau (factor 0.5) on the validation loss with the patience cut from 75 to 10
epochs for the short budget (about 60 epochs in 15 minutes).

SchNetPack 2.1.1 predates torch 2.13: its ``pip install`` pins sympy<=1.12 (which torch 2.13
does not allow, so pip falls back to a CUDA torch 2.4) and its loader imports
``torch.utils.data.dataloader.T_co`` (now ``_T_co``); ``ensure_venv`` installs schnetpack without
its pins and ``_import_schnetpack`` restores the alias. SchNetPack's own ReduceLROnPlateau
passes ``verbose``, which torch 2.13 no longer accepts, so torch's class (the same schedule,
without SchNetPack's optional smoothing, which its config leaves off) is used.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import ase.io
import numpy as np

from scripts.benchmarks.common import (
    PEERS,
    REPO,
    epochs_to_best,
    evaluate_in_venv,
    last_epoch,
    minutes,
    module_command,
    run_logged,
)

VENV = PEERS / "schnetpack"
SPK_BIN = VENV / "bin"
THIS = Path(__file__).resolve()
SCHNETPACK_VERSION = "2.1.1"
#: schnetpack's requirements less torch (the CPU wheel is installed first) and its sympy pin.
REQUIREMENTS = ["numpy>=2", "ase>=3.21", "h5py", "pyyaml", "hydra-core>=1.1",
                "pytorch-lightning>=2", "torchmetrics", "hydra-colorlog>=1.1", "rich",
                "fasteners", "dirsync", "torch-ema", "matscipy>=1.1", "tensorboard>=2.17.1",
                "tensorboardX>=2.6.2.2", "tqdm", "protobuf"]

#: PaiNN hyperparameters (see the module docstring).
MODEL = {"n_atom_basis": 64, "n_interactions": 3, "n_rbf": 20}
CUTOFF = 5.0
#: Training settings (SchNetPack's rMD17 experiment, patience scaled to the budget).
TRAINING = {"energy_weight": 0.01, "forces_weight": 0.99, "lr": 1e-3, "batch_size": 10,
            "val_batch_size": 50, "ema_decay": 0.995, "lr_factor": 0.5, "lr_patience": 10}
#: Validation metric that selects the best model (and drives the LR schedule).
MONITOR = "val_loss"
#: One-line summary for reports.
DESCRIPTION = (f"SchNetPack PaiNN ({MODEL['n_atom_basis']} features, "
               f"{MODEL['n_interactions']} interactions, r_cut {CUTOFF:g} Å)")
SETTINGS = "E:F 0.01:0.99 (MSE), EMA 0.995, ReduceLROnPlateau"


def available() -> bool:
    """Whether the schnetpack venv exists."""
    return (SPK_BIN / "spktrain").is_file()


def ensure_venv(log: Path | None = None) -> Path:
    """Create the schnetpack venv under peers/ when it is missing: the CPU torch wheel first,
    then schnetpack without its dependency pins, then its other requirements. Returns the
    venv's python."""
    python = SPK_BIN / "python"
    if available():
        return python
    log = log or PEERS / "schnetpack_install.log"
    pip = [str(python), "-m", "pip", "install"]
    torch = "torch==2.13.0"
    for cmd in ([sys.executable, "-m", "venv", str(VENV)], [*pip, torch],
                [*pip, "--no-deps", f"schnetpack=={SCHNETPACK_VERSION}"],
                [*pip, torch, *REQUIREMENTS]):
        status, _ = run_logged(["nice", "-n", "19", *cmd], log)
        if status != 0:
            raise RuntimeError(f"schnetpack venv: {shlex.join(cmd)} failed, see {log}")
    return python


def _rel(path: str) -> str:
    """``path`` relative to the repository when it lies inside it."""
    p = Path(path)
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else path


def train(run_dir: Path, train_xyz: Path, valid_xyz: Path, budget_s: float,
          seed: int = 0, model: dict[str, Any] | None = None, max_epochs: int = 100000,
          epoch_clock: Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """Train PaiNN with SchNetPack for ``budget_s`` seconds of fitting or ``max_epochs``
    epochs, whichever ends first.

    Returns {"model": best model or None, "wall_s", "status", "epochs", "epochs_to_best",
    "setup_s", "command", "config"}; reuses a finished run (``done.json``) in ``run_dir``.
    ``model`` replaces ``MODEL``; ``kwargs`` override ``TRAINING``; ``epoch_clock``: a JSON
    file for the epoch start times (:func:`scripts.benchmarks.epoch_clock.epoch_clock`).
    """
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"train_xyz": str(Path(train_xyz).resolve()),
           "valid_xyz": str(Path(valid_xyz).resolve()), "run_dir": str(run_dir),
           "max_time": minutes(budget_s), "max_epochs": max_epochs, "seed": seed,
           "cutoff": CUTOFF, "model": MODEL if model is None else model,
           "epoch_clock": None if epoch_clock is None else str(epoch_clock),
           "training": {**TRAINING, **kwargs}}
    cmd = [*module_command(SPK_BIN / "python", THIS), "train", str(run_dir / "config.json")]
    model, done = run_dir / "best_model", run_dir / "done.json"
    status, wall = 0, None
    if not done.is_file():
        (run_dir / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
        # max_time stops the fit; the timeout only catches a hang (setup, final checkpoint).
        status, wall = run_logged(cmd, run_dir / "bench.log", timeout=budget_s + 600,
                                  cwd=run_dir)
    log_csv = run_dir / "logs" / "metrics.csv"
    epochs, to_best = last_epoch(log_csv), epochs_to_best(log_csv, MONITOR)
    info = json.loads(done.read_text()) if done.is_file() else {}
    return {"model": str(model) if model.is_file() else None,
            "wall_s": None if wall is None else round(wall, 1), "status": status,
            "epochs": epochs, "epochs_to_best": to_best, "setup_s": info.get("setup_s"),
            "command": shlex.join(["peers/schnetpack/bin/python", *cmd[1:3], "train",
                                   _rel(cmd[4])]),
            "config": str(run_dir / "config.json")}


def evaluate(model: Path, test_xyz: Path, out_npz: Path, log: Path,
             batch_size: int = 50) -> dict[str, Any]:
    """Errors of a trained SchNetPack model on labelled extxyz; the predictions are made in
    the schnetpack venv (``predict`` below) and kept in ``out_npz``."""
    return evaluate_in_venv(SPK_BIN / "python", THIS, "schnetpack", model, test_xyz, out_npz, log,
                            batch_size)


# ---- below: runs in the schnetpack venv only -------------------------------------------------

def _import_schnetpack() -> Any:
    """``import schnetpack`` on torch 2.13 (schnetpack 2.1.1 imports the old name ``T_co``)."""
    import torch.utils.data.dataloader as dataloader

    if not hasattr(dataloader, "T_co"):
        dataloader.T_co = dataloader._T_co
    import schnetpack

    return schnetpack


def _database(path: Path, xyz_files: list[str]) -> list[int]:
    """Write the frames of ``xyz_files`` (REF_energy eV, REF_forces eV/Angstrom) into a new
    ``ASEAtomsData`` database at ``path``; returns the number of frames per file."""
    spk = _import_schnetpack()
    if path.exists():
        path.unlink()
    db = spk.data.ASEAtomsData.create(str(path), distance_unit="Ang",
                                      property_unit_dict={"energy": "eV", "forces": "eV/Ang"})
    counts = []
    for xyz in xyz_files:
        frames = ase.io.read(xyz, ":")
        props = [{"energy": np.array([a.info["REF_energy"]], dtype=np.float64),
                  "forces": np.asarray(a.arrays["REF_forces"], dtype=np.float64)}
                 for a in frames]
        db.add_systems(props, [ase.Atoms(a.numbers, a.positions) for a in frames])
        counts.append(len(frames))
    return counts


def train_in_venv(config_path: str) -> None:
    """Fit PaiNN with SchNetPack's AtomisticTask and a Lightning Trainer (schnetpack venv)."""
    import time

    start = time.perf_counter()
    import pytorch_lightning as pl
    import torch
    import torchmetrics
    from pytorch_lightning.callbacks import LearningRateMonitor
    from pytorch_lightning.loggers import CSVLogger

    spk = _import_schnetpack()
    cfg = json.loads(Path(config_path).read_text())
    run_dir, tr, m = Path(cfg["run_dir"]), cfg["training"], cfg["model"]
    cutoff = float(cfg["cutoff"])
    pl.seed_everything(cfg["seed"])
    torch.set_default_dtype(torch.float32)

    n_train, n_val = _database(run_dir / "data.db", [cfg["train_xyz"], cfg["valid_xyz"]])
    split = run_dir / "split.npz"
    np.savez(split, train_idx=np.arange(n_train), val_idx=np.arange(n_train, n_train + n_val),
             test_idx=np.arange(0))
    data = spk.data.AtomsDataModule(
        str(run_dir / "data.db"), batch_size=tr["batch_size"],
        val_batch_size=tr["val_batch_size"], split_file=str(split), num_workers=0,
        distance_unit="Ang", property_units={"energy": "eV", "forces": "eV/Ang"},
        transforms=[spk.transform.SubtractCenterOfMass(),
                    spk.transform.RemoveOffsets("energy", remove_mean=True),
                    spk.transform.MatScipyNeighborList(cutoff=cutoff),
                    spk.transform.CastTo32()])

    representation = spk.representation.PaiNN(
        n_atom_basis=m["n_atom_basis"], n_interactions=m["n_interactions"],
        radial_basis=spk.nn.GaussianRBF(n_rbf=m["n_rbf"], cutoff=cutoff),
        cutoff_fn=spk.nn.CosineCutoff(cutoff))
    model = spk.model.NeuralNetworkPotential(
        representation=representation,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[spk.atomistic.Atomwise(n_in=m["n_atom_basis"], output_key="energy",
                                               aggregation_mode="sum"),
                        spk.atomistic.Forces(energy_key="energy", force_key="forces")],
        postprocessors=[spk.transform.CastTo64(),
                        spk.transform.AddOffsets("energy", add_mean=True)])

    def output(name: str, weight: float) -> Any:
        return spk.task.ModelOutput(
            name=name, loss_fn=torch.nn.MSELoss(), loss_weight=weight,
            metrics={"MAE": torchmetrics.MeanAbsoluteError(),
                     "RMSE": torchmetrics.MeanSquaredError(squared=False)})

    task = spk.task.AtomisticTask(
        model=model,
        outputs=[output("energy", tr["energy_weight"]), output("forces", tr["forces_weight"])],
        optimizer_cls=torch.optim.Adam, optimizer_args={"lr": tr["lr"]},
        scheduler_cls=torch.optim.lr_scheduler.ReduceLROnPlateau,
        scheduler_args={"mode": "min", "factor": tr["lr_factor"],
                        "patience": tr["lr_patience"], "threshold": 0.0},
        scheduler_monitor=MONITOR)
    class FitStart(pl.Callback):
        """Seconds from process start to the start of the fit's training loop (setup)."""

        setup_s: float | None = None

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            FitStart.setup_s = round(time.perf_counter() - start, 1)

    callbacks = [
        spk.train.ModelCheckpoint(model_path=str(run_dir / "best_model"), monitor=MONITOR,
                                  mode="min", save_top_k=1, save_last=True,
                                  dirpath=str(run_dir / "checkpoints"), filename="best"),
        spk.train.ExponentialMovingAverage(decay=tr["ema_decay"]),
        LearningRateMonitor(logging_interval="epoch"), FitStart(),
    ]
    if cfg.get("epoch_clock"):  # bench_train: epoch start times
        from scripts.benchmarks.epoch_clock import epoch_clock

        callbacks.append(epoch_clock(cfg["epoch_clock"]))
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, precision=32, max_epochs=cfg.get("max_epochs", 100000),
        max_time=cfg["max_time"], check_val_every_n_epoch=1, num_sanity_val_steps=0,
        inference_mode=False, log_every_n_steps=50, enable_progress_bar=False,
        default_root_dir=str(run_dir), callbacks=callbacks,
        logger=CSVLogger(save_dir=str(run_dir), name="logs", version=""))
    trainer.fit(task, datamodule=data)
    print(f"parameters: {sum(p.numel() for p in model.parameters())}")
    (run_dir / "done.json").write_text(json.dumps(
        {"setup_s": FitStart.setup_s, "epochs": trainer.current_epoch,
         "best_val_loss": float(callbacks[0].best_model_score),
         "fit_s": round(time.perf_counter() - start - (FitStart.setup_s or 0), 1),
         "parameters": sum(p.numel() for p in model.parameters())}, indent=1) + "\n")


def predict(model_path: str, xyz: str, out_npz: str, batch_size: int = 50,
            dtype: str = "float32") -> None:
    """Energies (eV) and forces (eV/Angstrom) of a SchNetPack model on the frames of ``xyz``
    (schnetpack venv only): the saved model with its post-processing (energy offset, float64
    output), inputs from SchNetPack's ``AtomsConverter`` (MatScipy neighbour list); model
    weights and inputs in ``dtype`` (float32 as trained and saved, or float64)."""
    import torch

    spk = _import_schnetpack()
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    model = torch.load(model_path, map_location="cpu", weights_only=False)
    if torch_dtype != torch.float32:  # saved in float32 (float64 buffers of post-processing kept)
        model = model.to(torch_dtype)
    model.eval()
    cutoff = float(model.representation.cutoff)
    converter = spk.interfaces.AtomsConverter(
        neighbor_list=spk.transform.MatScipyNeighborList(cutoff=cutoff), dtype=torch_dtype)
    frames = ase.io.read(xyz, ":")
    energies, forces = [], []
    for i in range(0, len(frames), batch_size):
        batch = [ase.Atoms(a.numbers, a.positions) for a in frames[i:i + batch_size]]
        out = model(converter(batch))
        energies.append(out["energy"].detach().double().reshape(-1))
        forces.append(out["forces"].detach().double())
    np.savez(out_npz, energy=torch.cat(energies).numpy(), forces=torch.cat(forces).numpy())


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "predict":
        predict(*sys.argv[2:5], *(int(a) for a in sys.argv[5:6]), *sys.argv[6:7])
    elif len(sys.argv) == 3 and sys.argv[1] == "train":
        train_in_venv(sys.argv[2])
    else:
        raise SystemExit(f"usage: {sys.argv[0]} train CONFIG.json | "
                         "predict MODEL XYZ OUT.npz [BATCH] [float32|float64]")
