"""Energy drift and temperature of an MD run as a PNG (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from molsym.atomic import atomic_path
from molsym.md.run import MDResult


def plot_md(result: MDResult, num_atoms: int, path: str | Path,
            target_temperature_K: float | None = None, title: str = "") -> Path:
    """Two panels over time (fs): total and potential energy minus their start (meV/atom),
    and the temperature (K) with the thermostat's target; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    time = np.array([r.time_fs for r in result.records])
    epot = np.array([r.potential_energy for r in result.records])
    temp = np.array([r.temperature_K for r in result.records])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(time, result.drift_meV_per_atom(num_atoms), label="total energy")
    top.plot(time, (epot - epot[0]) / num_atoms * 1e3, label="potential energy", alpha=0.6)
    top.set_ylabel("E - E(0) (meV/atom)")
    top.legend(loc="best")
    bottom.plot(time, temp, label="temperature")
    if target_temperature_K is not None:
        bottom.axhline(target_temperature_K, color="k", ls="--", lw=1, label="target")
    bottom.set_ylabel("T (K)")
    bottom.set_xlabel("time (fs)")
    bottom.legend(loc="best")
    if title:
        top.set_title(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
