"""Error metrics (MAE, RMSE) in the units people report: meV, meV/atom, meV/Angstrom, D.

:class:`ErrorAccumulator` sums errors over batches (and, through ``reduce``, over processes)
so that MAE and RMSE are exact over a whole data set, not averages of batch averages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from molsym import keys, units
from molsym.training.losses import target_keys

ENERGY_PER_ATOM = "energy_per_atom"

#: name -> (reporting unit, factor: reported value = internal value / factor), from
#: :mod:`molsym.units`.
REPORT_UNITS = units.REPORT_UNITS


def report_unit(name: str) -> tuple[str, float]:
    """Reporting unit and conversion factor of target ``name`` (internal unit if unknown)."""
    return REPORT_UNITS.get(name, (units.INTERNAL_UNIT.get(name, "data units"), 1.0))


class ErrorAccumulator:
    """Running sums of absolute and squared errors per target.

    ``update(pred, batch)`` takes model outputs and a labelled PyG Batch; ``compute()``
    returns ``{target: {"mae": float, "rmse": float, "unit": str}}`` in reporting units, with
    ``energy_per_atom`` added when energies are present. Forces, stress and dipoles count
    every Cartesian component.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}  # name -> tensor([sum |e|, sum e^2, count]) float64

    def reset(self) -> None:
        self.sums = {}

    def _add(self, name: str, err: Tensor) -> None:
        err = err.detach().double().reshape(-1)
        row = torch.stack([err.abs().sum(), (err * err).sum(), err.new_tensor(err.numel())])
        if name in self.sums:
            self.sums[name] = self.sums[name] + row.to(self.sums[name].device)
        else:
            self.sums[name] = row

    @torch.no_grad()
    def update(self, pred: Mapping[str, Tensor], batch) -> None:
        for key in target_keys(pred, batch):
            p = pred[key].detach()
            ref = batch[key].to(p.dtype)
            err = p.reshape(ref.shape) - ref
            self._add(key, err)
            if key == keys.ENERGY:
                n = batch[keys.NUM_ATOMS].to(p.dtype).reshape(-1)
                self._add(ENERGY_PER_ATOM, err.reshape(-1) / n)

    def compute(self, reduce: Callable[[Tensor], Tensor] | None = None) -> dict[str, dict]:
        """Metrics over everything seen; ``reduce`` sums a tensor over processes (DDP)."""
        out: dict[str, dict] = {}
        for name in sorted(self.sums):
            row = self.sums[name] if reduce is None else reduce(self.sums[name].clone())
            abs_sum, sq_sum, count = (float(v) for v in row)
            unit, factor = report_unit(name)
            count = max(count, 1.0)
            out[name] = {
                "mae": abs_sum / count / factor,
                "rmse": (sq_sum / count) ** 0.5 / factor,
                "unit": unit,
            }
        return out


def format_table(metrics: Mapping[str, Mapping], title: str | None = None) -> str:
    """A plain-text table of ``{target: {"mae", "rmse", "unit"}}``."""
    lines = [title] if title else []
    lines.append(f"{'target':<18}{'MAE':>14}{'RMSE':>14}  unit")
    for name, m in metrics.items():
        lines.append(f"{name:<18}{m['mae']:>14.4f}{m['rmse']:>14.4f}  {m['unit']}")
    return "\n".join(lines)


def flat_metrics(metrics: Mapping[str, Mapping], prefix: str) -> dict[str, float]:
    """``{"val/energy_mae_meV": ...}``-style names for loggers (units in the name)."""
    out = {}
    for name, m in metrics.items():
        unit = m["unit"].replace("/", "_per_").replace("^", "")
        out[f"{prefix}/{name}_mae_{unit}"] = m["mae"]
        out[f"{prefix}/{name}_rmse_{unit}"] = m["rmse"]
    return out
