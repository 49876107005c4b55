"""Chemprop 2 (PyPI ``chemprop``, in its own venv under peers/chemprop) as the SMILES peer.

Runs with the python of the chemprop venv (it imports chemprop, never molsym):

    peers/chemprop/bin/python -m scripts.benchmarks.chemprop_peer train DIR --budget-s 3000

``DIR`` holds ``train.csv``, ``val.csv`` and ``test.csv`` (columns ``smiles`` and the targets,
written by ``smiles_properties.py``). The model is Chemprop's command-line default (bond
message passing, depth 3, hidden 300, norm aggregation, one 300-wide FFN layer, batch 64,
Noam schedule 1e-4 -> 1e-3 -> 1e-4 with 2 warm-up epochs), multitask on every target column
with Chemprop's target standardisation. Chemprop has no wall-clock limit that its learning
rate schedule knows about, so the number of epochs is chosen to fit ``budget_s``: one epoch
on the training set is timed first (that epoch counts toward the budget) and then
``max_epochs`` set so the whole run fits; Lightning's ``max_time`` is the hard stop. The best
validation checkpoint predicts ``test.csv`` into ``DIR/chemprop_test_predictions.csv`` and a
JSON summary (epochs, seconds) is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _datasets(folder: Path):
    from chemprop import data, featurizers

    featurizer = featurizers.SimpleMoleculeMolGraphFeaturizer()
    frames = {name: pd.read_csv(folder / f"{name}.csv") for name in ("train", "val", "test")}
    targets = [c for c in frames["train"].columns if c not in ("smiles", "name", "id")]
    sets = {}
    for name, df in frames.items():
        ys = df[targets].to_numpy(float)
        points = [data.MoleculeDatapoint.from_smi(s, y) for s, y in zip(df["smiles"], ys,
                                                                          strict=True)]
        sets[name] = data.MoleculeDataset(points, featurizer)
    return sets, targets, frames["test"]


def _model(scaler, n_tasks: int):
    from chemprop import models, nn

    ffn = nn.RegressionFFN(n_tasks=n_tasks, hidden_dim=300, n_layers=1,
                           output_transform=nn.UnscaleTransform.from_standard_scaler(scaler))
    return models.MPNN(nn.BondMessagePassing(d_h=300, depth=3), nn.NormAggregation(norm=100),
                       ffn, batch_norm=False, metrics=[nn.metrics.MAE()])


def train(folder: Path, budget_s: float, seed: int, threads: int) -> dict:
    import lightning.pytorch as pl
    import torch
    from chemprop import data
    from lightning.pytorch.callbacks import ModelCheckpoint

    torch.set_num_threads(threads)
    pl.seed_everything(seed, workers=True)
    t_start = time.perf_counter()
    sets, targets, test_df = _datasets(folder)
    scaler = sets["train"].normalize_targets()
    sets["val"].normalize_targets(scaler)
    loaders = {name: data.build_dataloader(ds, batch_size=64, num_workers=0, seed=seed,
                                           shuffle=(name == "train"))
               for name, ds in sets.items()}
    t_featurised = time.perf_counter()
    # one timed epoch (a throwaway model with the same cost) sets the epoch count
    probe = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                       enable_checkpointing=False, enable_progress_bar=False,
                       limit_val_batches=0)
    t0 = time.perf_counter()
    probe.fit(_model(scaler, len(targets)), loaders["train"])
    epoch_s = time.perf_counter() - t0
    left = budget_s - (time.perf_counter() - t_start)
    epochs = max(1, int(left / (epoch_s * 1.08)))  # ~8% for validation
    checkpoint = ModelCheckpoint(dirpath=folder / "chemprop_ckpt", monitor="val_loss",
                                 mode="min", save_top_k=1)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                         callbacks=[checkpoint], enable_progress_bar=False,
                         max_time={"seconds": max(60, int(left))})
    model = _model(scaler, len(targets))
    t_fit = time.perf_counter()
    trainer.fit(model, loaders["train"], loaders["val"])
    fit_s = time.perf_counter() - t_fit
    preds = _predict_test(checkpoint.best_model_path, loaders["test"], targets, test_df, folder)
    summary = {"epochs_planned": epochs, "epochs_run": int(trainer.current_epoch),
               "probe_epoch_s": epoch_s, "featurise_s": t_featurised - t_start,
               "fit_s": fit_s, "total_s": time.perf_counter() - t_start,
               "n_train": len(sets["train"]), "n_val": len(sets["val"]),
               "n_test": len(sets["test"]), "targets": targets, "threads": threads,
               "finite_predictions": bool(np.isfinite(preds).all())}
    (folder / "chemprop_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _predict_test(checkpoint: str, loader, targets, test_df, folder: Path) -> np.ndarray:
    """Predictions of the checkpoint (written by this script: Chemprop's own loader) on the
    test molecules, written to ``chemprop_test_predictions.csv``."""
    import lightning.pytorch as pl
    import torch
    from chemprop import models

    best = models.MPNN.load_from_checkpoint(checkpoint)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    preds = torch.cat(trainer.predict(best, loader)).numpy()
    out = pd.DataFrame(preds, columns=targets)
    out.insert(0, "smiles", test_df["smiles"])
    out.to_csv(folder / "chemprop_test_predictions.csv", index=False)
    return preds


def predict_only(folder: Path, checkpoint: Path) -> dict:
    """Test predictions of an existing checkpoint (a run whose final step failed)."""
    from chemprop import data

    sets, targets, test_df = _datasets(folder)
    loader = data.build_dataloader(sets["test"], batch_size=64, num_workers=0, shuffle=False)
    preds = _predict_test(str(checkpoint), loader, targets, test_df, folder)
    return {"checkpoint": checkpoint.name, "n_test": len(preds),
            "finite_predictions": bool(np.isfinite(preds).all())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="chemprop_peer.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("folder", type=Path)
    t.add_argument("--budget-s", type=float, required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    q = sub.add_parser("predict")
    q.add_argument("folder", type=Path)
    q.add_argument("checkpoint", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "predict":
        print(json.dumps(predict_only(args.folder, args.checkpoint)))
        return 0
    print(json.dumps(train(args.folder, args.budget_s, args.seed, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
