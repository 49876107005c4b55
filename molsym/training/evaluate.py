"""Errors of a trained model on labelled structures: metrics and parity plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from molsym import keys
from molsym.errors import InputError
from molsym.training.losses import target_keys
from molsym.training.metrics import ENERGY_PER_ATOM, ErrorAccumulator, report_unit


def evaluate(
    model: nn.Module, graphs: Sequence[Data], batch_size: int = 32
) -> tuple[dict[str, dict], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Metrics ``{target: {"mae", "rmse", "unit"}}`` and parity data ``{target: (ref, pred)}``
    (flattened, reporting units) of ``model`` on labelled ``graphs``.

    Raises:
        InputError: the graphs carry no label that the model predicts.
    """
    from molsym.models import predict_batch

    model.eval()
    acc = ErrorAccumulator()
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    outputs = set(getattr(model, "outputs", []))
    for batch in DataLoader(list(graphs), batch_size=batch_size, shuffle=False):
        want_forces = keys.FORCES in outputs and keys.FORCES in batch
        want_stress = keys.STRESS in outputs and keys.STRESS in batch
        with torch.enable_grad():
            pred = predict_batch(model, batch, compute_forces=want_forces,
                                 compute_stress=want_stress)
        pred = {k: v.detach() for k, v in pred.items()}
        acc.update(pred, batch)
        for key in target_keys(pred, batch):
            ref = batch[key].to(pred[key].dtype)
            _, factor = report_unit(key)
            p = pred[key].reshape(ref.shape)
            pairs.setdefault(key, []).append(
                ((ref / factor).reshape(-1).numpy(), (p / factor).reshape(-1).numpy())
            )
            if key == keys.ENERGY:
                n = batch[keys.NUM_ATOMS].to(p.dtype).reshape(-1)
                pairs.setdefault(ENERGY_PER_ATOM, []).append(
                    ((ref.reshape(-1) / n / factor).numpy(), (p.reshape(-1) / n / factor).numpy())
                )
    if not acc.sums:
        raise InputError(
            f"the data have no label the model predicts (model outputs: {sorted(outputs)})"
        )
    merged = {k: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v]))
              for k, v in pairs.items()}
    return acc.compute(), merged


def parity_plots(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]],
    metrics: dict[str, dict],
    out_dir: str | Path,
    stem: str,
) -> list[Path]:
    """One PNG per target, ``<out_dir>/<stem>_parity_<target>.png`` (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (ref, pred) in pairs.items():
        unit = metrics[name]["unit"]
        fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
        ax.scatter(ref, pred, s=4, alpha=0.5, linewidths=0)
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"reference {name} ({unit})")
        ax.set_ylabel(f"predicted {name} ({unit})")
        m = metrics[name]
        ax.set_title(f"{name}: MAE {m['mae']:.3g}, RMSE {m['rmse']:.3g} {unit}", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{stem}_parity_{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
