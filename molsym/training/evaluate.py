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
    (flattened, reporting units) of ``model`` on labelled ``graphs``. Parity data of the
    energy per atom only when the graphs hold more than one composition.

    Raises:
        InputError: the graphs carry no label that the model predicts.
    """
    from molsym.models import predict_batch

    model.eval()
    acc = ErrorAccumulator()
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    outputs = set(getattr(model, "outputs", []))
    for batch in DataLoader(graphs, batch_size=batch_size, shuffle=False):  # lazy datasets too
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
    if len({tuple(sorted(g[keys.ATOMIC_NUMBERS].tolist())) for g in graphs}) <= 1:
        merged.pop(ENERGY_PER_ATOM, None)  # one composition: the energy over a constant
    return acc.compute(), merged


#: Targets plotted relative to their mean reference value (totals of hundreds of eV).
RELATIVE = (keys.ENERGY, ENERGY_PER_ATOM)
#: Above this many points the parity panel is a log-density hexbin instead of a scatter.
HEXBIN_ABOVE = 2000


def parity_plots(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]],
    metrics: dict[str, dict],
    out_dir: str | Path,
    stem: str,
) -> list[Path]:
    """One PNG per target, ``<out_dir>/<stem>_parity_<target>.png`` (matplotlib Agg): the
    parity panel (a scatter, or a log-density hexbin above :data:`HEXBIN_ABOVE` points;
    energies relative to the mean reference) and a histogram of the errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (ref, pred) in pairs.items():
        fig, (ax, hist) = plt.subplots(1, 2, figsize=(8.5, 4.0), dpi=100,
                                       gridspec_kw={"width_ratios": [1.15, 1]})
        _parity_panel(fig, ax, name, ref, pred, metrics[name])
        _error_panel(hist, name, pred - ref, metrics[name]["unit"])
        fig.tight_layout()
        path = out_dir / f"{stem}_parity_{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def _ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.tick_params(axis="x", labelrotation=30)


def _parity_panel(fig, ax, name: str, ref: np.ndarray, pred: np.ndarray, m: dict) -> None:
    unit = m["unit"]
    label = f"{name} ({unit})"
    if name in RELATIVE and len(ref):
        mean = float(ref.mean())
        ref, pred = ref - mean, pred - mean
        label = f"{name} - {mean:.10g} {unit} (the mean reference)"
    lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
    if len(ref) > HEXBIN_ABOVE:
        art = ax.hexbin(ref, pred, gridsize=60, bins="log", mincnt=1, cmap="viridis",
                        extent=(lo, hi, lo, hi))
        fig.colorbar(art, ax=ax, label="points per bin")
    else:
        ax.scatter(ref, pred, s=6, alpha=0.6, linewidths=0)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel(f"reference {label}", fontsize=8)
    ax.set_ylabel(f"predicted {label}", fontsize=8)
    ax.set_title(f"{name}: MAE {m['mae']:.3g}, RMSE {m['rmse']:.3g} {unit}", fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")
    _ticks(ax)


def _error_panel(ax, name: str, error: np.ndarray, unit: str) -> None:
    ax.hist(error, bins=min(60, max(10, len(error) // 20)), color="tab:blue", alpha=0.8)
    ax.axvline(0.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel(f"predicted - reference {name} ({unit})", fontsize=8)
    ax.set_ylabel("count", fontsize=8)
    ax.set_title(f"errors: mean {float(error.mean()):.3g} {unit}", fontsize=9)
    _ticks(ax)
