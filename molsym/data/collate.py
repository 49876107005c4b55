"""Batching graphs for training and evaluation: the batch of torch_geometric's
``Batch.from_data_list``, built with one ``torch.cat`` per field.

PyG's generic collate (increments and concatenation dimensions looked up per field and
graph, slice bookkeeping for ``to_data_list``) took 1.27 ms of CPU per batch of 5 aspirin
graphs, about 9% of a compiled training step on one core; this takes about 0.3 ms. The rules
are PyG's: fields whose name contains ``index`` are concatenated along their last axis with
each graph's node offset added, other tensors along the first (0-d tensors stacked), anything
else (ids) listed. The batch has ``batch``, ``ptr`` and ``num_graphs``; it has no slice
bookkeeping, so ``to_data_list`` is not available (molsym never needs it). Graphs whose
fields differ go through PyG's collate.

The batch object is made without ``Batch(**fields)``: PyG's constructor builds a new class
and inspects a signature on every call and sets each field through two ``__setattr__``
layers (0.25 ms of 0.6 ms per batch here); the fields go straight into the batch's storage
mapping instead, the state ``Batch(**fields)`` leaves (tests/data/test_collate.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch_geometric.data import Batch, Data

#: The class of a batch of ``Data`` graphs (PyG makes it on first use: ``DataBatch``).
_BATCH_CLASS = type(Batch())


def _new_batch(fields: dict) -> Batch:
    """A ``DataBatch`` holding ``fields`` (what ``Batch(**fields)`` returns)."""
    batch = _BATCH_CLASS.__new__(_BATCH_CLASS)
    Data.__init__(batch)
    batch._store._mapping.update(fields)
    return batch


def collate_graphs(graphs: Sequence[Data]) -> Batch:
    """One batch of ``graphs`` (see the module docstring)."""
    stores = [g._store._mapping for g in graphs]  # plain dicts: no per-field lookups
    names = list(stores[0])
    if any(s.keys() != stores[0].keys() for s in stores[1:]):
        return Batch.from_data_list(list(graphs))
    counts = [int(g.num_nodes) for g in graphs]
    offsets = [0] * len(counts)
    for k in range(1, len(counts)):
        offsets[k] = offsets[k - 1] + counts[k - 1]
    fields = {}
    for name in names:
        if name == "num_nodes":
            continue
        values = [s[name] for s in stores]
        if not isinstance(values[0], torch.Tensor):
            fields[name] = values
        elif "index" in name:
            fields[name] = torch.cat([v + o if o else v for v, o in zip(values, offsets,
                                                                        strict=True)], dim=-1)
        elif values[0].dim() == 0:
            fields[name] = torch.stack(values)
        else:
            fields[name] = torch.cat(values, dim=0)
    total = offsets[-1] + counts[-1]
    fields["batch"] = torch.repeat_interleave(torch.arange(len(graphs)), torch.tensor(counts),
                                              output_size=total)
    fields["ptr"] = torch.tensor([*offsets, total])
    fields["num_nodes"] = total
    return _new_batch(fields)
