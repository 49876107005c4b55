"""Eager training-step time of model=default against variants of it, A/B in one process.

The aspirin graphs of rMD17 (cutoff 5 Angstrom, batch 5, float32), every model built from
``model=default``'s yaml switches with the sizes of that yaml and the overrides given; one
training step = energy and forces, the Huber loss of experiment=rmd17, backward, fused Adam.
The models are timed round-robin (``--rounds`` blocks of ``--steps`` steps each, after warm-up
steps), so a change of the machine's load hits them alike; the report is the median step time
per model and its ratio to the first. Run it alone on the machine (``uptime`` first).

    python -m scripts.benchmarks.step_ab --variants default rank3_density=true
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import yaml

from scripts.benchmarks import common

#: model=default's constructor arguments that the data fills in (left to the model's defaults
#: or set from the batch here)
DATA_FILLED = ("elements", "atomic_energies", "avg_num_neighbors", "energy_scale",
               "property_mean", "property_std", "closest_pairs")


def default_options() -> dict:
    text = (common.REPO / "molsym" / "configs" / "model" / "default.yaml").read_text()
    cfg = yaml.safe_load(text)
    return {k: v for k, v in cfg.items()
            if not k.startswith("_") and k not in DATA_FILLED and not isinstance(v, str)}


def parse_variant(spec: str) -> tuple[str, dict]:
    """``default`` or ``key=value,key=value`` (yaml values) on top of model=default."""
    if spec == "default":
        return spec, {}
    pairs = [p.split("=", 1) for p in spec.split(",")]
    return spec, {k: yaml.safe_load(v) for k, v in pairs}


def build(options: dict, graphs):
    from molsym.data.statistics import compute_statistics
    from molsym.models import EquivariantModel

    stats = compute_statistics(graphs)
    kwargs = {**default_options(), **options}
    kwargs.update(cutoff=5.0, outputs=["energy", "forces"], elements=stats.elements,
                  atomic_energies=stats.atomic_energies,
                  avg_num_neighbors=stats.avg_num_neighbors, energy_scale=stats.forces_rms,
                  closest_pairs=stats.closest_pairs)
    torch.manual_seed(0)
    return EquivariantModel(**kwargs)


def stepper(model, batch):
    from molsym.models import predict_batch
    from molsym.training import Loss

    loss_fn = Loss({"energy": 100.0, "forces": 1000.0}, kind="huber")
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)

    def step():
        pred = predict_batch(model, batch, compute_forces=True)
        loss, _ = loss_fn(pred, batch)
        for p in model.parameters():
            p.grad = None
        loss.backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["default"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from torch_geometric.data import Batch

    from molsym.data.graph import atoms_to_graph
    from molsym.data.readers import read_file

    frames = read_file(common.DATA / "rmd17" / "rmd17_aspirin_train_01.npz")
    graphs = [atoms_to_graph(frames[i], 5.0) for i in range(0, 50, 10)]
    batch = Batch.from_data_list(graphs)
    steps = {}
    for spec in args.variants:
        name, options = parse_variant(spec)
        steps[name] = stepper(build(options, graphs), batch)
        for _ in range(args.warmup):
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps)
    first = statistics.median(times[args.variants[0]])
    print("#", common.env_line(common.environment(threads=args.threads)))
    for name, values in times.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{1e3 * v:.1f}" for v in values)
        print(f"{name}: {1e3 * median:.1f} ms per step (rounds {rounds}), {median / first:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
