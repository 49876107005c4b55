"""Train and evaluate NequIP (nequip, the peer venv under peers/nequip) under a wall-clock budget.

Training runs nequip's own CLI, ``nequip-train``, on a Hydra config written into the run
folder (``config.yaml``); the budget is Lightning's ``trainer.max_time`` (the fit only, as
for molsym; data loading and statistics come before it), with a process timeout as a backstop.
The best checkpoint by validation error (``best.ckpt``, EMA weights) is the trained model.

Test errors are computed here, the same way as for the other peers, from predictions that
this file makes when run with the python of the nequip venv:

    peers/nequip/bin/python -m scripts.benchmarks.nequip_peer predict best.ckpt test.xyz out.npz

Model: ``NequIPGNNModel`` with the published rMD17 NequIP recipe scaled to a CPU budget
(``MODEL``): l_max 2 (published: 3), 32 features per irrep (published: 64), 4 layers
(published: 5), parity off (nequip's own presets; about 2.5x faster per step on CPU than
parity on), cutoff 5 Angstrom, 8 Bessel functions, polynomial cutoff p = 6, radial MLP
2 x 64. Training as in nequip's aspirin config (``nequip/utils/unittests/minimal_aspirin.yaml``):
MSE loss of per-atom energy and forces weighted 1:1, Adam lr 0.01, batch 5, EMA weights (decay
0.99 as in the NequIP paper), validation ``total_energy_mae + forces_mae`` picks the best
checkpoint; ReduceLROnPlateau (factor 0.8, patience 10 epochs) on that validation error.
"""

from __future__ import annotations

import re
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import ase.io
import numpy as np

from scripts.benchmarks.common import (
    PEERS,
    epochs_to_best,
    evaluate_in_venv,
    last_epoch,
    minutes,
    run_logged,
)

NEQUIP_BIN = PEERS / "nequip" / "bin"
THIS = Path(__file__).resolve()

#: NequIPGNNModel hyperparameters (see the module docstring).
MODEL = {"l_max": 2, "num_features": 32, "num_layers": 4, "parity": False,
         "radial_mlp_depth": 2, "radial_mlp_width": 64, "num_bessels": 8,
         "polynomial_cutoff_p": 6}
CUTOFF = 5.0
#: Validation metric that selects the best checkpoint (and drives the LR schedule).
MONITOR = "val0_epoch/weighted_sum"
#: One-line summary for reports.
DESCRIPTION = ("NequIP (l_max 2, 32 features, 4 layers, parity off, "
               f"r_cut {CUTOFF:g} Å)")
SETTINGS = "E:F 1:1 (per-atom E MSE), EMA 0.99, ReduceLROnPlateau"


def available() -> bool:
    """Whether the nequip venv exists."""
    return (NEQUIP_BIN / "nequip-train").is_file()


def type_names(xyz: Path) -> list[str]:
    """Chemical symbols present in ``xyz``, by atomic number (nequip's ``type_names``)."""
    from ase.data import chemical_symbols

    numbers = sorted({int(z) for atoms in ase.io.iread(xyz) for z in atoms.numbers})
    return [chemical_symbols[z] for z in numbers]


def config(run_dir: Path, train_xyz: Path, valid_xyz: Path, budget_s: float,
           types: list[str], batch_size: int = 5, lr: float = 0.01,
           forces_weight: float = 1.0, ema_decay: float = 0.99,
           seed: int = 0, model: dict[str, Any] | None = None,
           max_epochs: int = 100000,
           callbacks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ``nequip-train`` config (a plain dict, dumped to YAML by ``train``).

    ``model``: NequIPGNNModel hyperparameters instead of :data:`MODEL`; ``max_epochs``: stop
    after that many epochs (or ``budget_s``, whichever comes first); ``callbacks``: more
    Trainer callbacks (``_target_`` dicts, classes of ``lightning.pytorch``)."""
    run_dir = run_dir.resolve()
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": batch_size,
              "num_workers": 0}
    return {
        "run": ["train"],
        "hydra": {"run": {"dir": str(run_dir)}, "output_subdir": ".hydra"},
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule",
            "seed": seed,
            "train_file_path": str(Path(train_xyz).resolve()),
            "val_file_path": str(Path(valid_xyz).resolve()),
            "ase_args": {"format": "extxyz"},
            "key_mapping": {"REF_energy": "total_energy", "REF_forces": "forces"},
            "transforms": [
                {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                 "model_type_names": types},
                {"_target_": "nequip.data.transforms.NeighborListTransform",
                 "r_max": CUTOFF},
            ],
            "train_dataloader": {**loader, "shuffle": True},
            "val_dataloader": {**loader, "batch_size": 25},
            "stats_manager": {"_target_": "nequip.data.CommonDataStatisticsManager",
                              "type_names": types, "dataloader_kwargs": {"batch_size": 50}},
        },
        "trainer": {
            "_target_": "lightning.Trainer",
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": max_epochs,
            "max_time": minutes(budget_s),
            "check_val_every_n_epoch": 1,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 50,
            "enable_progress_bar": False,
            "default_root_dir": str(run_dir),
            "logger": {"_target_": "lightning.pytorch.loggers.CSVLogger",
                       "save_dir": str(run_dir), "name": "logs", "version": ""},
            "callbacks": [
                {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "monitor": MONITOR, "mode": "min", "dirpath": str(run_dir),
                 "filename": "best", "save_top_k": 1, "save_last": True},
                {"_target_": "lightning.pytorch.callbacks.LearningRateMonitor",
                 "logging_interval": "epoch"},
                *(callbacks or []),
            ],
        },
        "training_module": {
            "_target_": "nequip.train.EMALightningModule",
            "ema_decay": ema_decay,
            "loss": {"_target_": "nequip.train.EnergyForceLoss", "per_atom_energy": True,
                     "coeffs": {"total_energy": 1.0, "forces": forces_weight}},
            "val_metrics": {"_target_": "nequip.train.EnergyForceMetrics",
                            "coeffs": {"total_energy_mae": 1.0, "forces_mae": 1.0}},
            "optimizer": {"_target_": "torch.optim.Adam", "lr": lr},
            "lr_scheduler": {
                "scheduler": {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                              "factor": 0.8, "patience": 10},
                "monitor": MONITOR, "interval": "epoch", "frequency": 1,
            },
            "model": {
                "_target_": "nequip.model.NequIPGNNModel",
                "seed": seed,
                "model_dtype": "float32",
                "type_names": types,
                "r_max": CUTOFF,
                **(MODEL if model is None else model),
                "avg_num_neighbors": "${training_data_stats:per_type_num_neighbors_mean}",
                "per_type_energy_shifts": "${training_data_stats:per_atom_energy_mean}",
                "per_type_energy_scales": "${training_data_stats:per_type_forces_rms}",
            },
        },
        "global_options": {"allow_tf32": False},
    }


def train(run_dir: Path, train_xyz: Path, valid_xyz: Path, budget_s: float,
          seed: int = 0, **kwargs: Any) -> dict[str, Any]:
    """Train NequIP for ``budget_s`` seconds of fitting.

    Returns {"model": best checkpoint or None, "wall_s", "status", "epochs",
    "epochs_to_best", "command"}; reuses a finished run (``best.ckpt``) in ``run_dir``.
    """
    import yaml

    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = config(run_dir, train_xyz, valid_xyz, budget_s, type_names(train_xyz), seed=seed,
                 **kwargs)
    cmd = [str(NEQUIP_BIN / "nequip-train"), "--config-path", str(run_dir),
           "--config-name", "config"]
    model = run_dir / "best.ckpt"
    status, wall = 0, None
    if not model.is_file():
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        # max_time stops the fit; the timeout only catches a hang (setup, final checkpoint).
        status, wall = run_logged(cmd, run_dir / "bench.log", timeout=budget_s + 600,
                                  cwd=run_dir)
    log_csv = run_dir / "logs" / "metrics.csv"
    epochs, to_best = last_epoch(log_csv), epochs_to_best(log_csv, MONITOR)
    return {"model": str(model) if model.is_file() else None,
            "wall_s": None if wall is None else round(wall, 1), "status": status,
            "epochs": epochs, "epochs_to_best": to_best,
            "command": shlex.join(["nequip-train", *cmd[1:]]),
            "config": str(run_dir / "config.yaml")}


def setup_seconds(run_dir: Path) -> float | None:
    """Seconds from nequip-train's first log line to the start of its training loop (data
    loading, statistics, model build), from the time stamps of its Hydra log."""
    stamps = []
    for log in sorted(run_dir.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            match = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\]\[[^]]*\]\[\w+\] - (.*)",
                             line)
            if match:
                stamps.append((datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f"),
                               match.group(2)))
    start = next((t for t, msg in stamps if "TRAIN RUN START" in msg), None)
    return (start - stamps[0][0]).total_seconds() if stamps and start else None


def evaluate(model: Path, test_xyz: Path, out_npz: Path, log: Path,
             batch_size: int = 50) -> dict[str, Any]:
    """Errors of a trained NequIP checkpoint on labelled extxyz; the predictions are made in
    the nequip venv (``predict`` below) and kept in ``out_npz``."""
    return evaluate_in_venv(NEQUIP_BIN / "python", THIS, "nequip", model, test_xyz, out_npz, log,
                            batch_size)


def load(model_path: str, dtype: str = "float32") -> Any:
    """A nequip checkpoint's model for inference (nequip venv only; sets nequip's global state,
    TF32 off): as nequip loads it (``load_saved_model``: the EMA weights of a
    ``EMALightningModule`` checkpoint) for the ``model_dtype`` it was trained with; for another
    ``dtype`` (float32, float64) the same training module is rebuilt from the checkpoint with
    that ``model_dtype`` in its model config, which casts the stored weights and buffers on
    loading. ``float64+cg``: float64 with the Clebsch-Gordan buffers of the tensor products
    (``_w3j``, stored in the checkpoint as computed for ``model_dtype``) taken from a model
    freshly built in float64."""
    import hydra
    import torch
    from nequip.model.modify_utils import only_apply_persistent_modifiers
    from nequip.model.saved_models.load_utils import load_saved_model
    from nequip.utils.global_state import set_global_state

    set_global_state(allow_tf32=False)
    ckpt = torch.load(model_path, map_location="cpu", weights_only=False)
    hparams = ckpt["hyper_parameters"]
    model_cfg = {**hparams["model"], "model_dtype": dtype.split("+")[0]}
    if hparams["model"].get("model_dtype") == dtype:
        return load_saved_model(model_path).eval()
    cls = hydra.utils.get_class(hparams["info_dict"]["training_module"]["_target_"])
    with only_apply_persistent_modifiers(persistent_only=True):
        module = cls.load_from_checkpoint(model_path, weights_only=False, model=model_cfg)
    model = module.evaluation_model["sole_model"]
    if dtype.endswith("+cg"):
        fresh = dict(hydra.utils.instantiate(model_cfg, _convert_="all").named_buffers())
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if "_w3j" in name:
                    buf.copy_(fresh[name])
    return model.eval()


def predict(model_path: str, xyz: str, out_npz: str, batch_size: int = 50,
            dtype: str = "float32") -> None:
    """Energies and forces of a nequip checkpoint on the frames of ``xyz`` (nequip venv only).

    The model from :func:`load` in ``dtype`` (its ``model_dtype``; nequip keeps positions and
    the energy sum in float64 either way), eager, 1 thread by OMP_NUM_THREADS.
    """
    import torch
    from nequip.data import AtomicDataDict, from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform
    from nequip.nn import graph_model

    model = load(model_path, dtype)
    r_max = float(model.metadata[graph_model.R_MAX_KEY])
    types = model.metadata[graph_model.TYPE_NAMES_KEY].split(" ")
    transforms = [ChemicalSpeciesToAtomTypeMapper(model_type_names=types),
                  NeighborListTransform(r_max=r_max)]
    frames = ase.io.read(xyz, ":")
    energies, forces = [], []
    for start in range(0, len(frames), batch_size):
        data = []
        for atoms in frames[start:start + batch_size]:
            d = from_ase(ase.Atoms(atoms.numbers, atoms.positions))
            for t in transforms:
                d = t(d)
            data.append(d)
        out = model(AtomicDataDict.batched_from_list(data))
        energies.append(out[AtomicDataDict.TOTAL_ENERGY_KEY].detach().reshape(-1).double())
        forces.append(out[AtomicDataDict.FORCE_KEY].detach().double())
    np.savez(out_npz, energy=torch.cat(energies).numpy(), forces=torch.cat(forces).numpy())


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "predict":
        predict(*sys.argv[2:5], *(int(a) for a in sys.argv[5:6]), *sys.argv[6:7])
    else:
        raise SystemExit(f"usage: {sys.argv[0]} predict CHECKPOINT XYZ OUT.npz [BATCH] "
                         "[float32|float64|float64+cg]")
