"""Timing worker for mace-torch; run with the python of the mace venv (see bench_model.py).

Model: ``mace.modules.MACE`` with RealAgnosticResidualInteractionBlock (mace's default
interaction), hidden irreps ``{C}x0e+{C}x1o``, spherical harmonics up to ``l_max``,
correlation 3 (mace's default), 8 Bessel functions, radial MLP [64, 64, 64] (mace's default).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch

from scripts.benchmarks.peers._common import Adapter, Graphs, serve


class MaceAdapter(Adapter):
    name = "mace"

    def __init__(self, graphs: Graphs, opts: dict[str, Any]):
        from mace import modules

        # after mace, which sets up torch.load for the constants e3nn 0.4 loads at import
        o3 = importlib.import_module("e3nn.o3")

        c, lmax = int(opts.get("num_channels", 32)), int(opts.get("l_max", 1))
        self.elements = graphs.elements
        self.model = modules.MACE(
            r_max=float(opts.get("cutoff", 5.0)),
            num_bessel=8,
            num_polynomial_cutoff=5,
            max_ell=lmax,
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes[
                "RealAgnosticResidualInteractionBlock"
            ],
            num_interactions=int(opts.get("num_layers", 2)),
            num_elements=len(self.elements),
            hidden_irreps=o3.Irreps(f"{c}x0e+{c}x1o" if lmax > 0 else f"{c}x0e"),
            MLP_irreps=o3.Irreps("16x0e"),
            atomic_energies=np.zeros(len(self.elements)),
            avg_num_neighbors=graphs.avg_num_neighbors,
            atomic_numbers=self.elements,
            correlation=int(opts.get("correlation", 3)),
            gate=torch.nn.functional.silu,
            radial_MLP=[64, 64, 64],
        )
        self.table = torch.full((119,), -1, dtype=torch.long)
        self.table[torch.tensor(self.elements)] = torch.arange(len(self.elements))

    def prepare(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        n, b = batch["z"].shape[0], batch["num_graphs"]
        e = batch["edge_index"].shape[1]
        counts = torch.bincount(batch["batch"], minlength=b)
        # mace convention: vector = pos[edge_index[1]] - pos[edge_index[0]]; the list is
        # symmetric, so the same edges as every other model
        return {
            "positions": batch["pos"],
            "node_attrs": torch.nn.functional.one_hot(
                self.table[batch["z"]], len(self.elements)
            ).to(torch.float32),
            "edge_index": batch["edge_index"],
            "shifts": torch.zeros(e, 3),
            "unit_shifts": torch.zeros(e, 3),
            "cell": torch.zeros(3 * b, 3),
            "batch": batch["batch"],
            "ptr": torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)]),
            "weight": torch.ones(b),
            "energy_weight": torch.ones(b),
            "forces_weight": torch.ones(b),
            "head": torch.zeros(b, dtype=torch.long),
            "num_atoms": torch.tensor([n]),
        }

    def forward(self, b: dict[str, torch.Tensor], training: bool):
        data = dict(b)
        data["positions"] = b["positions"].clone()  # fresh leaf each step, as from a loader
        out = self.model(data, training=training, compute_force=True)
        return out["energy"], out["forces"]

    def compile(self, training: bool) -> tuple[str, torch.nn.Module] | None:
        return None  # mace's own compile path is for training on GPU; not measured here

    def versions(self) -> dict[str, str]:
        import e3nn
        import mace

        return {"torch": torch.__version__, "mace-torch": mace.__version__,
                "e3nn": e3nn.__version__}


if __name__ == "__main__":
    serve(MaceAdapter)
