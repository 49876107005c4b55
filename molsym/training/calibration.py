"""How well a committee's spread tells its errors: per-structure error against spread.

For each labelled structure: the energy error |E_pred - E_ref| against ``energy_std``, and
the largest per-atom force error max_i |F_pred,i - F_ref,i| against the largest per-atom
force spread max_i ``forces_std``_i. Reported per quantity: the Spearman rank correlation of
error and spread, and the share of the large errors (the worst ``top`` fraction, 10% by
default) whose spread is also among the largest ``top`` fraction ("flagged").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from molsym import keys, units
from molsym.models.ensemble import std_key


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties get their mean rank); NaN for fewer than 3 values."""
    import pandas as pd

    if len(a) < 3:
        return float("nan")
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def flagged_share(error: np.ndarray, spread: np.ndarray, top: float = 0.1) -> float:
    """Share of the ``top`` largest errors whose spread is among the ``top`` largest too."""
    k = max(1, int(round(top * len(error))))
    worst = set(np.argsort(-error)[:k].tolist())
    widest = set(np.argsort(-spread)[:k].tolist())
    return len(worst & widest) / k


def per_structure(model, graphs: Sequence[Data], batch_size: int = 32) -> dict[str, np.ndarray]:
    """Per-structure errors and spreads (meV, meV/Angstrom) of a committee on ``graphs``."""
    from molsym.models import predict_batch

    model.eval()
    rows: dict[str, list] = {}
    for batch in DataLoader(list(graphs), batch_size=batch_size, shuffle=False):
        with torch.enable_grad():
            pred = predict_batch(model, batch, compute_forces=keys.FORCES in batch)
        pred = {k: v.detach().double() for k, v in pred.items()}
        if keys.ENERGY in batch and std_key(keys.ENERGY) in pred:
            err = (pred[keys.ENERGY] - batch[keys.ENERGY].double().reshape(-1)).abs()
            rows.setdefault("energy_error", []).append(err / units.MEV)
            rows.setdefault("energy_spread", []).append(pred[std_key(keys.ENERGY)] / units.MEV)
        if keys.FORCES in batch and std_key(keys.FORCES) in pred:
            atom_err = (pred[keys.FORCES] - batch[keys.FORCES].double()).norm(dim=-1)
            for name, values in (("forces_error", atom_err),
                                 ("forces_spread", pred[std_key(keys.FORCES)])):
                largest = torch.zeros(batch.num_graphs, dtype=values.dtype).scatter_reduce(
                    0, batch[keys.BATCH], values, reduce="amax", include_self=False)
                rows.setdefault(name, []).append(largest / units.MEV)
    return {k: torch.cat(v).numpy() for k, v in rows.items()}


def calibration(values: dict[str, np.ndarray], top: float = 0.1) -> dict[str, dict]:
    """``{"energy": {...}, "forces": {...}}``: Spearman, flagged share, number of structures."""
    report = {}
    for what, unit in (("energy", "meV"), ("forces", "meV/Angstrom")):
        if f"{what}_error" not in values:
            continue
        err, spread = values[f"{what}_error"], values[f"{what}_spread"]
        report[what] = {"spearman": spearman(err, spread),
                        f"flagged_top_{int(top * 100)}pct": flagged_share(err, spread, top),
                        "structures": int(len(err)), "unit": unit,
                        "mean_error": float(err.mean()), "mean_spread": float(spread.mean())}
    return report


def calibration_plot(values: dict[str, np.ndarray], report: dict, path: Path) -> Path:
    """Error against spread per structure (log axes), one panel per quantity, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [w for w in ("energy", "forces") if w in report]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    for ax, what in zip(axes[0], names, strict=True):
        err = np.maximum(values[f"{what}_error"], 1e-6)
        spread = np.maximum(values[f"{what}_spread"], 1e-6)
        ax.scatter(spread, err, s=6, alpha=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        unit = report[what]["unit"]
        label = "largest per-atom " if what == "forces" else ""
        ax.set_xlabel(f"{label}{what} spread ({unit})")
        ax.set_ylabel(f"{label}{what} error ({unit})")
        ax.set_title(f"Spearman {report[what]['spearman']:.2f}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
