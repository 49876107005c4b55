"""Timing worker for molsym models; run with the python of molsym's own venv.

Graphs come from the real path, ``molsym.data.graph.atoms_to_graph`` + PyG ``Batch``, and are
checked to hold exactly the edges the peers get. The model is called through
``molsym.models.predict_batch``. Compiled path: ``molsym.models.compiled.compile_model``.
Model options (JSON ``--model``): ``model_class`` (a key of ``MODEL_CLASSES``) and any
constructor kwargs; those the class does not take (e.g. ``l_max`` for the invariant model) are
dropped.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from scripts.benchmarks.peers._common import Adapter, Graphs, serve


class MolsymAdapter(Adapter):
    def __init__(self, graphs: Graphs, opts: dict[str, Any]):
        from molsym.models import MODEL_CLASSES

        opts = dict(opts)
        name = opts.pop("model_class", "equivariant")
        cls = MODEL_CLASSES[name]
        self.name = f"molsym:{name}"
        accepted = inspect.signature(cls.__init__).parameters
        kwargs = {k: v for k, v in opts.items() if k in accepted}
        kwargs.update(elements=list(graphs.elements), outputs=["energy", "forces"])
        if "avg_num_neighbors" in accepted:
            kwargs["avg_num_neighbors"] = graphs.avg_num_neighbors
        self.kwargs = kwargs
        self.model = cls(**kwargs)
        self.cutoff = float(kwargs.get("cutoff", self.model.cutoff))
        self.compiled_model: torch.nn.Module | None = None

    def prepare(self, batch: dict[str, Any]):
        import ase
        from torch_geometric.data import Batch

        from molsym.data.graph import atoms_to_graph

        data = []
        for k in range(batch["num_graphs"]):
            mask = (batch["batch"] == k).numpy()
            atoms = ase.Atoms(numbers=batch["z"][mask].numpy(),
                              positions=batch["pos"][mask].double().numpy())
            data.append(atoms_to_graph(atoms, self.cutoff, dtype=torch.float32))
        b = Batch.from_data_list(data)
        if not np.array_equal(b.edge_index.numpy(), batch["edge_index"].numpy()):
            raise RuntimeError("molsym graphs differ from the precomputed edges of the peers")
        b.pos = batch["pos"].to(torch.float32)  # the very same float32 positions as the peers
        return b, b.pos

    def _run(self, model: torch.nn.Module, item, training: bool):
        from molsym.models import predict_batch

        b, pos = item
        b.pos = pos.clone()  # fresh tensor each step, as from a loader
        out = predict_batch(model, b, compute_forces=True)
        return out["energy"], out["forces"]

    def forward(self, item, training: bool):
        return self._run(self.model, item, training)

    def compile(self, training: bool) -> tuple[str, torch.nn.Module] | None:
        # molsym's own compile path (predict --compile, the calculator, molsym train
        # module.compile=true): torch.compile(dynamic=True) with the Inductor workaround
        from molsym.models.compiled import INDUCTOR_OPTIONS, compile_model

        self.compiled_model = compile_model(self.model)
        how = f"molsym.models.compiled.compile_model (dynamic=True, {INDUCTOR_OPTIONS})"
        return how, self.model

    def compiled_forward(self, item, training: bool):
        return self._run(self.compiled_model, item, training)

    def versions(self) -> dict[str, str]:
        import molsym

        return {"torch": torch.__version__, "molsym": getattr(molsym, "__version__", "?")}


if __name__ == "__main__":
    serve(MolsymAdapter)
