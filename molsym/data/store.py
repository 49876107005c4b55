"""Graphs packed as plain tensors ("stores"): the layout of molsym's graph cache files.

A store is ``{"num_graphs": G, "fields": {name: entry}}`` where a tensor field's entry holds
``values`` (the per-graph tensors concatenated along PyG's concatenation dimension ``dim``),
``slices`` (G+1,) int64 and, when some graphs lack the field, ``present`` (G,) bool; a string
field (``id``) holds ``strings`` (a list with None where absent). Only tensors, ints, strings,
lists and dicts: ``torch.load(..., weights_only=True)`` reads it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import Data

from molsym import keys


def graphs_to_store(graphs: Sequence[Data]) -> dict:
    """Pack graphs into plain tensors: for every field its values concatenated along PyG's
    concatenation dimension, the per-graph ``slices`` (G+1,) and, when not every graph has the
    field, a ``present`` mask (G,). String fields (``id``) become lists of strings."""
    fields: dict[str, dict] = {}
    dicts = [g.to_dict() for g in graphs]  # plain dicts: far faster to query than Data
    names = sorted({k for d in dicts for k in d if k != "num_nodes"})
    for name in names:
        present = [name in d for d in dicts]
        values = [d[name] for d in dicts if name in d]
        if isinstance(values[0], str):
            fields[name] = {"strings": [d.get(name) for d in dicts]}
        else:
            dim = graphs[present.index(True)].__cat_dim__(name, values[0])
            dim = dim % values[0].dim()
            sizes = [d[name].shape[dim] if p else 0 for d, p in zip(dicts, present, strict=True)]
            entry = {
                "values": torch.cat(values, dim=dim),
                "dim": dim,
                "slices": torch.tensor(np.concatenate([[0], np.cumsum(sizes)]), dtype=torch.long),
            }
            if not all(present):
                entry["present"] = torch.tensor(present)
            fields[name] = entry
    return {"num_graphs": len(graphs), "fields": fields}


def store_to_graphs(store: dict) -> list[Data]:
    """Inverse of :func:`graphs_to_store` (tensors are views into the concatenated arrays)."""
    layout = StoreLayout(store)
    return [layout.graph(k) for k in range(layout.num_graphs)]


def concat_stores(stores: Sequence[dict]) -> dict:
    """One store holding the graphs of ``stores`` in order."""
    if len(stores) == 1:
        return stores[0]
    counts = [int(s["num_graphs"]) for s in stores]
    names = sorted({name for s in stores for name in s["fields"]})
    fields: dict[str, dict] = {}
    for name in names:
        parts = [s["fields"].get(name) for s in stores]
        ref = next(p for p in parts if p is not None)
        if "strings" in ref:
            fields[name] = {"strings": [x for p, c in zip(parts, counts, strict=True)
                                        for x in (p["strings"] if p else [None] * c)]}
            continue
        slices, present, offset = [torch.zeros(1, dtype=torch.long)], [], 0
        for p, c in zip(parts, counts, strict=True):
            sl = p["slices"] if p is not None else torch.zeros(c + 1, dtype=torch.long)
            slices.append(sl[1:] + offset)
            offset += int(sl[-1])
            mask = torch.full((c,), p is not None, dtype=torch.bool)
            present.append(p.get("present", mask) if p is not None else mask)
        entry = {"values": torch.cat([p["values"] for p in parts if p is not None], ref["dim"]),
                 "dim": ref["dim"], "slices": torch.cat(slices)}
        mask = torch.cat(present)
        if not bool(mask.all()):
            entry["present"] = mask
        fields[name] = entry
    return {"num_graphs": sum(counts), "fields": fields}


class StoreLayout:
    """Python-side index of a store (slices as lists) so single graphs are cut out quickly."""

    def __init__(self, store: dict):
        self.store = store
        self.num_graphs = int(store["num_graphs"])
        self.tensors = []
        self.strings = []
        for name, entry in store["fields"].items():
            if "strings" in entry:
                self.strings.append((name, entry["strings"]))
            else:
                present = entry.get("present")
                self.tensors.append((name, entry["values"], int(entry["dim"]),
                                     entry["slices"].tolist(),
                                     None if present is None else present.tolist()))

    def graph(self, k: int) -> Data:
        fields = {}
        for name, values, dim, sl, present in self.tensors:
            if present is None or present[k]:
                fields[name] = values.narrow(dim, sl[k], sl[k + 1] - sl[k])
        for name, strings in self.strings:
            if strings[k] is not None:
                fields[name] = strings[k]
        return Data(num_nodes=int(fields[keys.ATOMIC_NUMBERS].shape[0]), **fields)

    def has(self, name: str, k: int) -> bool:
        entry = self.store["fields"].get(name)
        if entry is None:
            return False
        if "strings" in entry:
            return entry["strings"][k] is not None
        return "present" not in entry or bool(entry["present"][k])
