"""What a committee costs: energy + forces of K members against one, same process.

    python -m scripts.benchmarks.bench_ensemble --members 4 --rounds 6

Times ``predict_batch`` (forward + force gradient, float32, eager, 1 thread) on a batch of
rMD17 aspirin frames for one default flagship and for a committee of K of them, alternating
the two in blocks of CPU time (process time, so other load on the machine matters less),
and prints the median ratio. The committee finds the neighbour pairs once; graphs up to
``EnsembleModel.stack_max_edge_features`` run all members in one batched pass
(:mod:`molsym.models.stacked`), larger ones run them one after another (``--loop``: always, for
comparison). A torch.func vmap over stacked weights was tried before: 4.9-5.4x against 3.9-5.0x
for the loop at K=4 on 10 ethanol frames, CPU, so it was not kept.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch_geometric.data import Batch

from molsym.data.graph import atoms_to_graph
from molsym.data.readers import read_file
from molsym.models import EnsembleModel, EquivariantModel, predict_batch
from scripts.benchmarks.common import DATA as SHARED

DATA = SHARED / "rmd17"


def _rate(model, batch, seconds: float) -> float:
    """Calls per CPU second of this process (less sensitive to other load than wall time)."""
    calls, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        predict_batch(model, batch)
        calls += 1
    return calls / (time.process_time() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--block-s", type=float, default=3.0)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--loop", action="store_true", help="members one by one at every size")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    frames = read_file(DATA / "rmd17_aspirin_test_01.npz")[: args.frames]
    batch = Batch.from_data_list([atoms_to_graph(a, 5.0) for a in frames])
    members = []
    for seed in range(args.members):
        torch.manual_seed(seed)
        members.append(EquivariantModel(elements=[1, 6, 8]).eval())
    single, committee = members[0], EnsembleModel.from_models(members).eval()
    if args.loop:
        committee.stack_max_edge_features = 0
    for model in (single, committee):
        _rate(model, batch, 1.0)  # warm-up
    ratios = []
    for _ in range(args.rounds):
        ratios.append(_rate(single, batch, args.block_s) / _rate(committee, batch, args.block_s))
    print(f"K={args.members} committee / one member, time per call: median "
          f"{statistics.median(ratios):.2f} (rounds {min(ratios):.2f}-{max(ratios):.2f}), "
          f"{args.frames} aspirin frames per call ({batch.edge_index.shape[1]} edges), "
          f"{'loop' if args.loop else 'default'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
