"""Timing worker for nequip; run with the python of the nequip venv (see bench_model.py).

Model: ``nequip.model.NequIPGNNModel`` with ``num_features`` channels per irrep, ``parity=False``
(features ``{C}x0e+{C}x1o``, as in nequip's own presets), radial MLP depth 1 / width 128
(nequip defaults), 8 Bessel functions, float32. Compiled path: nequip's ``compile_mode="compile"``
(``CompileGraphModel``: make_fx + ``torch.compile(dynamic=True)``), the same weights as the eager
model. nequip's AOTInductor packaging (``nequip-compile``) needs a training checkpoint and is
not used here.
"""

from __future__ import annotations

from typing import Any

import torch

from scripts.benchmarks.peers._common import Adapter, Graphs, serve


class NequipAdapter(Adapter):
    name = "nequip"

    def __init__(self, graphs: Graphs, opts: dict[str, Any]):
        from ase.data import chemical_symbols
        from nequip.utils.global_state import set_global_state

        set_global_state()
        self.type_names = [chemical_symbols[z] for z in graphs.elements]
        self.table = torch.full((119,), -1, dtype=torch.long)
        self.table[torch.tensor(graphs.elements)] = torch.arange(len(graphs.elements))
        self.kwargs = dict(
            seed=0,
            model_dtype="float32",
            type_names=self.type_names,
            r_max=float(opts.get("cutoff", 5.0)),
            num_layers=int(opts.get("num_layers", 2)),
            l_max=int(opts.get("l_max", 1)),
            parity=False,
            num_features=int(opts.get("num_channels", 32)),
            radial_mlp_depth=1,
            radial_mlp_width=128,
            num_bessels=8,
            avg_num_neighbors=graphs.avg_num_neighbors,
        )
        self.model = self._build("eager")
        self.compiled_models: dict[bool, torch.nn.Module] = {}

    def _build(self, compile_mode: str) -> torch.nn.Module:
        from nequip.model import NequIPGNNModel

        return NequIPGNNModel(compile_mode=compile_mode, **self.kwargs)

    def prepare(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        b = batch["num_graphs"]
        return {
            "pos": batch["pos"].to(torch.float32),
            "atom_types": self.table[batch["z"]],
            "edge_index": batch["edge_index"],
            "batch": batch["batch"],
            "num_atoms": torch.bincount(batch["batch"], minlength=b),
        }

    def _run(self, model: torch.nn.Module, b: dict[str, torch.Tensor]):
        data = dict(b)
        data["pos"] = b["pos"].clone()  # fresh tensor each step, as from a loader
        out = model(data)
        return out["total_energy"].view(-1), out["forces"]

    def forward(self, b: dict[str, torch.Tensor], training: bool):
        return self._run(self.model, b)

    def compile(self, training: bool) -> tuple[str, torch.nn.Module] | None:
        model = self._build("compile").to(self.device)
        model.load_state_dict(self.model.state_dict())
        model.train(training)
        self.compiled_models[training] = model
        return "nequip compile_mode='compile' (make_fx + torch.compile, dynamic=True)", model

    def compiled_forward(self, b: dict[str, torch.Tensor], training: bool):
        return self._run(self.compiled_models[training], b)

    def versions(self) -> dict[str, str]:
        import e3nn
        import nequip

        return {"torch": torch.__version__, "nequip": nequip.__version__,
                "e3nn": e3nn.__version__}


if __name__ == "__main__":
    serve(NequipAdapter)
